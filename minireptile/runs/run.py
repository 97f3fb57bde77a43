"""One home for a run: its folder, checkpoints, resume, restore and metrics.

A run lives in one folder (the reference's ``--checkpoint``)::

    <dir>/checkpoint.npz    Φ, optimiser states, both random generators, the next iteration
                            and the configuration; rewritten atomically every
                            ``checkpoint_interval`` iterations and at the end
    <dir>/metrics.jsonl     one JSON object per evaluation (iteration, accuracies, loss, time)
    <dir>/snapshot-N/       with ``snapshot_at=N``: the checkpoint and metrics as they stood
                            after N iterations, a run folder of its own
    <dir>/pretraining.npz   with ``pretrain_steps``: the supervised pre-training's state
                            (:mod:`minireptile.problems.pretrain`), rewritten atomically as
                            it goes; kept afterwards, a record of the body meta-training began
                            from
    <dir>/evaluations/      one record per final evaluation: its progress (:mod:`.evaluation`)

Killing the process at any moment loses at most the iterations since the last checkpoint;
:func:`~minireptile.runs.training.train` with ``resume=True`` reloads it (:meth:`Run.load`,
:func:`check_resumable`), truncates the metrics to the iterations it covers and continues.
A finished run is reopened for evaluation with :func:`open_for_evaluation`.
"""

import json
import os
import shutil

import numpy as np

from ..errors import InputError
from ..guard import DivergedError, first_non_finite
from ..npzfile import load_npz, save_npz_atomic
from .config import TrainConfig, make_learner
from .rundata import recorded_render

CHECKPOINT_FILE = "checkpoint.npz"
# 1: the data described by paths; 2: by content hash, with the run's training classes.
CHECKPOINT_FORMAT = 2
METRICS_FILE = "metrics.jsonl"
PRETRAINING_FILE = "pretraining.npz"


def generators(seed):
    """Independent generators for training, evaluation and the data split, from ``seed``."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


class Run:
    """A training run in ``directory`` (created if needed)."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.checkpoint_path = os.path.join(self.directory, CHECKPOINT_FILE)
        self.metrics_path = os.path.join(self.directory, METRICS_FILE)
        self.pretraining_path = os.path.join(self.directory, PRETRAINING_FILE)

    def exists(self):
        return os.path.exists(self.checkpoint_path)

    def resumable(self):
        """Whether ``resume`` has something to continue: a checkpoint, or a pre-training
        stopped before meta-training wrote its first one."""
        return self.exists() or os.path.exists(self.pretraining_path)

    def nothing_to_resume(self):
        """Why ``resume`` has nothing to continue, naming the files it looked for."""
        return (f"nothing to resume: neither {self.checkpoint_path!r} nor "
                f"{self.pretraining_path!r} exists")

    def save_pretraining(self, stage, config, extra=None):
        """Write the pre-training ``stage``'s state (atomically)."""
        os.makedirs(self.directory, exist_ok=True)
        state = stage.state_dict()
        arrays = {k: np.asarray(v) for k, v in state.items() if k != "rng"}
        metadata = {"kind": "minireptile-pretraining", "format": CHECKPOINT_FORMAT,
                    "model": stage.wide.name, "rng": state["rng"], "config": config.to_dict(),
                    "extra": extra or {}}
        save_npz_atomic(self.pretraining_path, arrays, metadata)

    def load_pretraining(self, stage):
        """Restore ``stage`` from the saved state; return ``(config, metadata)``."""
        arrays, meta = load_npz(self.pretraining_path)
        if meta.get("kind") != "minireptile-pretraining":
            raise InputError(f"{self.pretraining_path!r} is not a minireptile pre-training "
                             "state")
        if meta.get("model") != stage.wide.name:
            raise InputError(f"{self.pretraining_path!r} pre-trained a {meta.get('model')}, "
                             f"but this run builds a {stage.wide.name}; check classes, the "
                             "data and the network, or use another run folder")
        stage.load_state_dict({**arrays, "rng": meta["rng"]})
        return TrainConfig.from_dict(meta["config"]), meta

    def save(self, model, learner, rngs, next_iteration, config, extra=None):
        os.makedirs(self.directory, exist_ok=True)
        arrays = {"phi": learner.phi}
        arrays.update({f"state.{k}": np.asarray(v) for k, v in learner.state_dict().items()})
        metadata = {
            "kind": "minireptile-train",
            "format": CHECKPOINT_FORMAT,
            "model": model.name,
            "model_size": model.size,
            "dtype": str(model.dtype),
            "next_iteration": next_iteration,
            "config": config.to_dict(),
            "rng": [rng.bit_generator.state for rng in rngs],
            "extra": extra or {},
        }
        save_npz_atomic(self.checkpoint_path, arrays, metadata)

    def snapshot(self, iteration):
        """The run folder that :meth:`save_snapshot` keeps for ``iteration``."""
        return Run(os.path.join(self.directory, f"snapshot-{iteration}"))

    def save_snapshot(self, model, learner, rngs, next_iteration, config, extra=None):
        """Keep the run as it stands, after ``next_iteration`` iterations, in
        :meth:`snapshot`'s folder: the metrics so far and a checkpoint (as :meth:`save`
        writes), a run folder of its own from which a resume continues as this run does."""
        snapshot = self.snapshot(next_iteration)
        os.makedirs(snapshot.directory, exist_ok=True)
        if os.path.exists(self.metrics_path):
            shutil.copyfile(self.metrics_path, snapshot.metrics_path + ".tmp")
            os.replace(snapshot.metrics_path + ".tmp", snapshot.metrics_path)
        snapshot.save(model, learner, rngs, next_iteration, config, extra)
        return snapshot

    def load(self, model):
        """``(phi, learner_state, rng_states, next_iteration, config, metadata)``."""
        arrays, meta = load_checkpoint(self.checkpoint_path, model)
        state = {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}
        return (arrays["phi"], state, meta["rng"], meta["next_iteration"],
                TrainConfig.from_dict(meta["config"]), meta)

    def truncate_metrics(self, before_iteration):
        """Keep only the metric lines of iterations ``< before_iteration`` (atomically)."""
        if not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path, encoding="utf-8") as f:
            keep = []
            for line in f:
                try:
                    if json.loads(line)["iteration"] < before_iteration:
                        keep.append(line)
                except (ValueError, KeyError):
                    break  # a line cut short by a crash: nothing after it is trusted
        tmp = self.metrics_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, self.metrics_path)

    def log_metrics(self, record):
        os.makedirs(self.directory, exist_ok=True)  # created with the run's first output
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            # allow_nan=False: bare NaN is not JSON, and a non-finite metric is a bug upstream.
            f.write(json.dumps(record, allow_nan=False) + "\n")
            # On disk before any later checkpoint says this iteration is done.
            f.flush()
            os.fsync(f.fileno())


def read_checkpoint(path):
    """``(arrays, metadata)`` of a training checkpoint; raises for any other file."""
    arrays, meta = load_npz(path)
    if meta.get("kind") != "minireptile-train" or "phi" not in arrays or "config" not in meta:
        raise InputError(f"{path!r} is not a minireptile training checkpoint")
    version = meta.get("format", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint {path!r} has format {version!r}, newer than the "
                         f"{CHECKPOINT_FORMAT} this version of minireptile reads; upgrade "
                         "minireptile")
    return arrays, meta


def check_checkpoint(path, arrays, meta, model):
    """Raise unless the checkpoint holds ``model``; cast Φ to the model's dtype."""
    if meta["model"] != model.name or meta["model_size"] != model.size:
        raise InputError(
            f"checkpoint {path!r} holds a {meta['model']} with {meta['model_size']} parameters, "
            f"but this run builds a {model.name} with {model.size}; check classes, filters, "
            f"image size and the data set, or use another run folder"
        )
    arrays["phi"] = arrays["phi"].astype(model.dtype, copy=False)
    bad = first_non_finite({"parameters": arrays["phi"],
                            **{k: v for k, v in arrays.items() if k.startswith("state.")}})
    if bad is not None:
        raise DivergedError(f"checkpoint {path!r} holds non-finite values in {bad}: the run "
                            "diverged before it was saved; train it again with smaller step "
                            "sizes")
    return arrays, meta


def load_checkpoint(path, model):
    """Read a training checkpoint and check that it belongs to ``model``."""
    arrays, meta = read_checkpoint(path)
    return check_checkpoint(path, arrays, meta, model)


# Settings that do not change what a run computes, so a resumed run may differ in them.
RESUMABLE_CHANGES = ("checkpoint_interval",)
# Parts of the data description that are only informative (where the data was found), not
# what the run learned from: the same zip reached through another path is the same data.
DATA_NOT_COMPARED = ("sources", "train_classes")


def _changed_data(saved, given):
    """Names of the data description's entries that differ (ignoring the paths)."""
    if saved is None or given is None:
        return []
    # (Checkpoints of format 1 stored the paths and split options only: compare what both have.)
    keys = (set(saved) & set(given)) - set(DATA_NOT_COMPARED)
    out = []
    for key in sorted(keys):
        if saved.get(key) != given.get(key):
            out.append(f"the data's {key} {given.get(key)!r} (checkpoint: {saved.get(key)!r})")
    return out


def check_resumable(config, saved_config, start, data=None, saved_data=None):
    """Raise :class:`InputError` naming every setting a resume may not change.

    ``meta_iters`` may grow: the run then continues to the new total (see :func:`train`).
    """
    changed = [f"{k}={v!r} (checkpoint: {getattr(saved_config, k)!r})"
               for k, v in config.to_dict().items()
               if getattr(saved_config, k) != v and k not in RESUMABLE_CHANGES + ("meta_iters",)]
    if config.meta_iters < saved_config.meta_iters:
        changed.append(f"meta_iters={config.meta_iters} (checkpoint: "
                       f"{saved_config.meta_iters}; it may grow, not shrink)")
    changed += _changed_data(saved_data, data)
    if changed:
        raise InputError("resume=True needs the run's original settings; changed: "
                         + ", ".join(changed))


def checkpoint_file(path):
    """The checkpoint of a run folder, or ``path`` itself when it names a file."""
    return os.path.join(path, CHECKPOINT_FILE) if os.path.isdir(path) else path


def open_run(path, build_model, classes=None):
    """A run folder's (or checkpoint file's) network, arrays and metadata, read once.

    ``build_model(classes, **options)`` makes the network, ``options`` being the run's
    :meth:`~minireptile.runs.config.TrainConfig.network_options` (none for the reference
    network); ``classes``, when given, must be the number the network was trained for.
    """
    path = checkpoint_file(path)
    arrays, meta = read_checkpoint(path)
    stored_classes = int(meta["config"]["classes"])
    if classes is not None and classes != stored_classes:
        raise InputError(f"the checkpoint's network classifies {stored_classes} classes, got "
                         f"classes={classes}; omit classes or train a {classes}-way network")
    model = build_model(stored_classes,
                        **TrainConfig.from_dict(meta["config"]).network_options())
    arrays, meta = check_checkpoint(path, arrays, meta, model)
    return model, arrays, meta


def restore_learner(model, arrays, meta, config):
    """A learner holding the checkpoint's Φ and inner-optimiser state, set up by ``config``."""
    stored = TrainConfig.from_dict(meta["config"])
    learner = make_learner(model, arrays["phi"].copy(), config)
    # Evaluating with the other inner optimiser (sgd=True on an Adam run, or the reverse) starts
    # it fresh: there are no moments to carry over.
    if config.sgd == stored.sgd and config.outer == stored.outer:
        learner.load_state_dict({k[len("state."):]: v for k, v in arrays.items()
                                 if k.startswith("state.")})
    return learner


EVAL_OVERRIDES = ("shots", "inner_batch", "inner_iters", "replacement", "learning_rate",
                  "eval_batch", "eval_iters", "weight_decay", "transductive", "sgd",
                  "within_alphabet", "eval_augment", "augment_rotation", "augment_shear",
                  "augment_scale", "augment_translate")


def open_for_evaluation(checkpoint, build_model, overrides, classes=None):
    """The network, the run's configuration with ``overrides`` laid over it, a learner
    restored from the checkpoint, and the checkpoint's metadata.

    ``overrides`` maps names of :data:`EVAL_OVERRIDES` to values (None: keep the stored one).
    Not the seed: it chose the run's character split, which evaluation must reuse.

    Examples
    --------
    Train a small run (as in :func:`~minireptile.runs.training.train`), then reopen it with
    more fine-tuning steps for evaluation:

    >>> import tempfile
    >>> from minireptile import ClassSet, ImagePool, TrainConfig, omniglot_cnn
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((8, 4, 16, 16)) < 0.3).astype(np.uint8)   # 8 classes of 4
    >>> pool = ImagePool.from_classes([f"c{i}" for i in range(8)], list(images))
    >>> train_classes = ClassSet(pool, base=range(5))     # meta-train on 5 classes,
    >>> test_classes = ClassSet(pool, base=range(5, 8))   # hold 3 out
    >>> config = TrainConfig(classes=3, shots=1, inner_iters=2, meta_iters=4, eval_interval=2,
    ...                      checkpoint_interval=2)
    >>> from minireptile import train
    >>> def network(num_classes):
    ...     return omniglot_cnn(num_classes, image_size=16, filters=8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     trained = train(network(3), train_classes, test_classes, config, folder,
    ...                     progress=False)
    ...     model, config, learner, meta = open_for_evaluation(folder, network,
    ...                                                        {"eval_iters": 100})
    >>> np.array_equal(learner.phi, trained.phi), config.eval_iters, meta["next_iteration"]
    (True, 100, 4)
    """
    model, arrays, meta = open_run(checkpoint, build_model, classes)
    stored = dict(meta["config"])
    stored.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(stored).validate()
    return model, config, restore_learner(model, arrays, meta, config), meta


def open_ensemble(learner, config, member_checkpoints, build_model, overrides, finetunings=1,
                  query_views=0, data=None):
    """``learner`` joined by the networks of other runs, fine-tuned ``finetunings`` times
    each and classifying ``query_views`` distorted copies of the queries besides them: an
    :class:`~minireptile.problems.ensemble.Ensemble`, or ``learner`` itself when there is one
    network fine-tuned once and no query view.

    Parameters
    ----------
    learner : FewShotLearner
        The first member (its run decides the data, the split and the evaluation settings).
    config : TrainConfig
        ``learner``'s configuration, as :func:`open_for_evaluation` returned it.
    member_checkpoints : sequence of str
        Run folders (or checkpoint files) of the other members; each is opened with the
        same ``overrides`` and keeps its own inner-loop settings otherwise.
    build_model, overrides
        As for :func:`open_for_evaluation`.
    finetunings, query_views : int
    data : dict, optional
        ``learner``'s data record: every member must have been trained on images rendered
        the same way (see :func:`~minireptile.runs.rundata.recorded_render`) and of the
        same size.

    Returns
    -------
    (FewShotLearner or Ensemble, list of the other members' checkpoint metadata)
    """
    from ..problems.ensemble import Ensemble

    learners, metas = [learner], []
    render = recorded_render(data)
    for checkpoint in member_checkpoints:
        _, member_config, member, meta = open_for_evaluation(checkpoint, build_model, overrides)
        if member_config.classes != config.classes:
            raise InputError(f"ensemble member {checkpoint!r} is a {member_config.classes}-way "
                             f"network, the evaluated run a {config.classes}-way one; every "
                             "member must classify the same number of classes")
        if member.model.input_shape != learner.model.input_shape:
            raise InputError(f"ensemble member {checkpoint!r} takes images of shape "
                             f"{member.model.input_shape}, the evaluated run "
                             f"{learner.model.input_shape}; every member must see the images "
                             "it was trained on")
        member_render = recorded_render(meta["extra"].get("data"))
        if member_render != render:
            raise InputError(f"ensemble member {checkpoint!r} was trained on images rendered "
                             f"{member_render!r}, the evaluated run on {render!r}; every "
                             "member must see the images it was trained on")
        learners.append(member)
        metas.append(meta)
    if len(learners) == 1 and finetunings == 1 and query_views == 0:
        return learner, metas
    return Ensemble(learners, finetunings, query_views), metas
