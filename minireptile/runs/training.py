"""The meta-training run: iterations, periodic evaluation, metrics and exact resume.

A run lives in one folder (the reference's ``--checkpoint``)::

    <dir>/checkpoint.npz    Φ, optimiser states, both random generators, the next iteration
                            and the configuration; rewritten atomically every
                            ``checkpoint_interval`` iterations and at the end
    <dir>/metrics.jsonl     one JSON object per evaluation (iteration, accuracies, loss, time)

Killing the process at any moment loses at most the iterations since the last checkpoint;
``resume=True`` reloads it, truncates the metrics to the iterations it covers and continues,
and the final parameters are bit-identical to those of an uninterrupted run.
"""

import json
import os
import time

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..data.augment import (
    DEFAULT_ROTATION,
    DEFAULT_SCALE,
    DEFAULT_SHEAR,
    DEFAULT_TRANSLATE,
    AffineAugmentation,
)
from .npzfile import load_npz, save_npz_atomic
from ..algorithms.combinations import parse_combination
from ..errors import InputError
from ..parallel.executor import SerialExecutor, task_seeds
from ..problems.fewshot import FewShotLearner, InnerConfig, evaluate_task
from ..guard import DivergedError, check_finite, first_non_finite
from ..algorithms.meta_iteration import linear_schedule, make_outer
from .runlock import RunLock

CHECKPOINT_FILE = "checkpoint.npz"
# 1: the data described by paths; 2: by content hash, with the run's training classes.
CHECKPOINT_FORMAT = 2
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainConfig:
    """The reference's training flags (``supervised_reptile/args.py``) and their defaults."""

    classes: int = 5
    shots: int = 5
    train_shots: int = 0
    inner_batch: int = 5
    inner_iters: int = 20
    replacement: bool = False
    learning_rate: float = 1e-3
    meta_step: float = 0.1
    meta_step_final: float = 0.1
    meta_batch: int = 1
    meta_iters: int = 400000
    eval_batch: int = 5
    eval_iters: int = 50
    eval_interval: int = 10
    weight_decay: float = 1.0
    transductive: bool = False
    foml: bool = False
    foml_tail: int = 0
    maml: bool = False
    sgd: bool = False
    seed: int = 0
    outer: str = "sgd"
    combination: str = ""
    checkpoint_interval: int = 100
    # Beyond the reference: Lake's within-alphabet tasks and Koch et al.'s affine distortions
    # (see minireptile.data.alphabets and minireptile.data.augment).
    within_alphabet: bool = False
    augment: bool = False
    augment_rotation: float = DEFAULT_ROTATION
    augment_shear: float = DEFAULT_SHEAR
    augment_scale: float = DEFAULT_SCALE
    augment_translate: float = DEFAULT_TRANSLATE

    def validate(self, train_classes=None, test_classes=None):
        """Raise :class:`InputError` for the first impossible setting."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, (int, np.integer))
                                          or isinstance(value, bool)):
                raise InputError(f"{_flag(f.name)} must be an integer, got {value!r}")
        for name in ("classes", "shots", "inner_batch", "inner_iters", "meta_batch", "meta_iters",
                     "eval_batch", "eval_iters", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise InputError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("train_shots", "foml_tail", "seed"):
            if getattr(self, name) < 0:
                raise InputError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "meta_step", "meta_step_final", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value):
                raise InputError(f"{_flag(name)} must be a finite number, got {value!r}")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not self.meta_step > 0 or not self.meta_step_final >= 0:
            raise InputError(f"--meta-step must be > 0 and --meta-step-final >= 0, got "
                             f"{self.meta_step} and {self.meta_step_final}")
        if not 0 < self.weight_decay <= 1:
            raise InputError(f"--weight-decay is a rate in (0, 1] (1 = none), got "
                             f"{self.weight_decay}")
        if self.maml:
            if self.foml or self.combination:
                raise InputError(f"--maml excludes {'--foml' if self.foml else '--combination'}"
                                 "; choose one algorithm")
            if not self.sgd or self.weight_decay != 1:
                raise InputError("--maml needs --sgd and no --weight-decay: its meta-gradient "
                                 "differentiates plain inner SGD steps, not inner Adam")
        if self.foml_tail and not self.foml:
            raise InputError("--foml-tail needs --foml")
        if self.combination:
            if self.foml:
                raise InputError("--combination and --foml exclude each other; "
                                 "--foml is the combination 'last'")
            if not self.sgd or self.weight_decay != 1:
                raise InputError("--combination needs --sgd and no --weight-decay: only then "
                                 "do the inner gradients add up to W − Φ")
            parse_combination(self.combination).coefficients(self.inner_iters)
        make_outer(self.outer)
        self.augmentation(check=True)
        for split, classes in (("training", train_classes), ("test", test_classes)):
            if classes is not None and self.classes > len(classes):
                raise InputError(f"--classes {self.classes} is more than the {len(classes)} "
                                 f"classes of the {split} split; use at most {len(classes)}")
        return self

    @property
    def effective_train_shots(self):
        """``--train-shots`` when given (non-zero), else ``--shots``, as the reference."""
        return self.train_shots or self.shots

    def augmentation(self, check=False):
        """The :class:`AffineAugmentation` of training tasks, or None without ``augment``
        (the ranges are checked either way when ``check``)."""
        if not (self.augment or check):
            return None
        ranges = AffineAugmentation(self.augment_rotation, self.augment_shear,
                                    self.augment_scale, self.augment_translate)
        return ranges if self.augment else None

    def inner(self):
        return InnerConfig(learning_rate=self.learning_rate, sgd=self.sgd, batch=self.inner_batch,
                           iters=self.inner_iters, replacement=self.replacement,
                           weight_decay=self.weight_decay)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _flag(name):
    return "--" + name.replace("_", "-")


def make_learner(model, phi, config):
    """A :class:`FewShotLearner` configured by ``config``."""
    if config.combination:
        algorithm = "combination"
    elif config.maml:
        algorithm = "maml"
    else:
        algorithm = "foml" if config.foml else "reptile"
    return FewShotLearner(
        model, phi, config.inner(), outer=make_outer(config.outer), algorithm=algorithm,
        tail_shots=config.foml_tail or None,
        combination=parse_combination(config.combination) if config.combination else None,
        augmentation=config.augmentation(),
    )


def generators(seed):
    """Independent generators for training, evaluation and the data split, from ``seed``."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


class Run:
    """A training run in ``directory`` (created if needed)."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.checkpoint_path = os.path.join(self.directory, CHECKPOINT_FILE)
        self.metrics_path = os.path.join(self.directory, METRICS_FILE)

    def exists(self):
        return os.path.exists(self.checkpoint_path)

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
            f"but this run builds a {model.name} with {model.size}; check --classes and the "
            f"data set, or use another --checkpoint"
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
    changed = [f"{_flag(k)} {v!r} (checkpoint: {getattr(saved_config, k)!r})"
               for k, v in config.to_dict().items()
               if getattr(saved_config, k) != v and k not in RESUMABLE_CHANGES + ("meta_iters",)]
    if config.meta_iters < saved_config.meta_iters:
        changed.append(f"--meta-iters {config.meta_iters} (checkpoint: "
                       f"{saved_config.meta_iters}; it may grow, not shrink)")
    changed += _changed_data(saved_data, data)
    if changed:
        raise InputError("--resume needs the run's original settings; changed: "
                         + ", ".join(changed))


def _divergence_cause(config):
    """The likely cause of a divergence during training, and what to change."""
    return (f"the step sizes are probably too large: lower --learning-rate "
            f"({config.learning_rate}) or --meta-step ({config.meta_step}, final "
            f"{config.meta_step_final})")


def train(model, train_classes, test_classes, config, directory, resume=False, progress=True,
          log=print, data=None, executor=None):
    """Meta-train ``model`` on ``train_classes``; evaluate on both splits every
    ``eval_interval`` iterations (as the reference: one task each, accuracy = correct / N).

    Parameters
    ----------
    train_classes, test_classes : ClassSet
        With ``config.within_alphabet`` every task draws its classes from one alphabet (see
        :mod:`minireptile.data.alphabets`).
    data : dict, optional
        JSON-able description of the data (content hash, split options, sources), stored in
        the checkpoint; on ``resume`` everything but the paths must be the same.
    executor : SerialExecutor or ProcessExecutor, optional
        Where independent work runs (default: here). With more than one worker, the
        evaluations run on a worker while training goes on, and the tasks of a meta-batch run
        in parallel when they are independent (inner SGD); the results are the same bit for
        bit either way.

    Resuming with a larger ``config.meta_iters`` than the checkpoint's continues the run to
    the new total. The meta-step schedule is a function of the iteration and the total, so it
    is defined over the new total from the resumed iteration on: with a constant meta-step
    (the Omniglot default) the result is bit-identical to a run trained to the new total from
    the start; with an annealed one, the iterations already done keep the steps they had and
    the rest follow the new, longer schedule (it cannot be both, and re-annealing from the
    value reached would silently change what ``--meta-step-final`` means).

    Divergence: after every meta-iteration the inner loss, Φ and the optimiser states are
    checked, and every evaluation's fine-tuned weights and outputs; the first non-finite
    value raises :class:`~minireptile.guard.DivergedError` naming the iteration, before
    anything is logged or saved, so the last checkpoint on disk is the last good one.

    Returns the :class:`FewShotLearner` (its ``phi`` holds the trained parameters).
    """
    config.validate(train_classes, test_classes)
    if config.within_alphabet:
        from ..data.alphabets import as_within_alphabet

        train_classes = as_within_alphabet(train_classes, config.classes, "training", log)
        test_classes = as_within_alphabet(test_classes, config.classes, "test", log)
    run = Run(directory)
    if os.path.exists(run.directory) and not os.path.isdir(run.directory):
        raise InputError(f"--checkpoint {run.directory!r} is a file; give a folder for the "
                         "run (created if missing)")
    if resume and not run.exists():
        raise InputError(f"nothing to resume: {run.checkpoint_path!r} does not exist; "
                         "drop --resume to start a new run")
    with RunLock(run.directory):
        return _train_locked(model, train_classes, test_classes, config, run, resume,
                             progress, log, data, executor)


def _train_locked(model, train_classes, test_classes, config, run, resume, progress, log,
                  data, executor):
    """:func:`train`'s work, once the run folder is locked."""
    train_rng, eval_rng, _ = generators(config.seed)
    if resume:
        phi, state, rng_states, start, saved_config, meta = run.load(model)
        check_resumable(config, saved_config, start, data, meta["extra"].get("data"))
        progress_state = meta["extra"].get("progress", {})
        learner = make_learner(model, phi.copy(), config)
        learner.load_state_dict(state)
        train_rng.bit_generator.state = rng_states[0]
        eval_rng.bit_generator.state = rng_states[1]
        run.truncate_metrics(start)
        if config.meta_iters > saved_config.meta_iters:
            log(f"extending {run.directory} from {saved_config.meta_iters} to "
                f"{config.meta_iters} iterations; resuming at iteration {start}")
        else:
            log(f"resuming {run.directory} at iteration {start} of {config.meta_iters}")
    else:
        if run.exists():
            raise InputError(f"{run.checkpoint_path!r} already holds a run; pass --resume to "
                             "continue it, or choose another --checkpoint folder")
        if os.path.exists(run.metrics_path):
            os.remove(run.metrics_path)  # left by a run that never reached its first checkpoint
        learner = make_learner(model, model.init_params(train_rng), config)
        start = 0
        progress_state = {}
    rngs = (train_rng, eval_rng)
    saved_at = start if resume else None

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.meta_iters, initial=start, desc="meta-training", unit="it",
                   mininterval=0.5)
    # Carried through checkpoints so a resumed run logs exactly what an uninterrupted one does
    # (only the wall-clock seconds differ).
    recent_loss = list(progress_state.get("recent_loss", []))
    started = time.perf_counter() - progress_state.get("seconds", 0.0)
    executor = executor or SerialExecutor()
    shared_splits = (executor.share(train_classes), executor.share(test_classes))
    eval_settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                     config.transductive)
    pending = []  # evaluations submitted and not yet logged, oldest first
    cause = _divergence_cause(config)

    def diverged(iteration, err):
        kept = (f"the last good checkpoint, after {saved_at} of {config.meta_iters} "
                f"iterations, is kept in {run.checkpoint_path}"
                if saved_at is not None else "no checkpoint had been written yet")
        # Fine-tuning for the periodic evaluation may be the first to overflow when it is Φ
        # that grew: name the training step sizes too.
        also = "" if "--meta-step" in str(err) else f" (or, in training, {cause})"
        return DivergedError(f"meta-training diverged at iteration {iteration}: {err}{also}; "
                             f"{kept}")

    def log_pending():
        while pending:
            record, evaluations = pending.pop(0)
            try:
                accuracies = [correct / config.classes
                              for e in evaluations for correct in e.result()]
            except DivergedError as err:
                raise diverged(record["iteration"], err) from None
            record.update(train_accuracy=accuracies[0], test_accuracy=accuracies[1])
            run.log_metrics(record)
            if bar is not None:
                bar.set_postfix(train=f"{accuracies[0]:.2f}", test=f"{accuracies[1]:.2f}",
                                loss=f"{record['inner_loss']:.3f}", refresh=False)

    try:
        for iteration in range(start, config.meta_iters):
            step = linear_schedule(config.meta_step, config.meta_step_final, iteration,
                                   config.meta_iters)
            try:
                # Overflow warnings would only repeat, in several lines, what the check says.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss = learner.train_step(train_classes, config.classes,
                                              config.effective_train_shots, config.meta_batch,
                                              step, train_rng, executor)
                check_finite({"inner loss": loss, "parameters": learner.phi,
                              **{f"optimiser state {k}": v
                                 for k, v in learner.state_dict().items()}}, cause)
            except DivergedError as err:
                raise diverged(iteration, err) from None
            recent_loss.append(loss)
            if iteration % config.eval_interval == 0:
                log_pending()
                # One task per split, from streams drawn here in a fixed order. The executor
                # takes its copy of the learner now, so Φ may move on while a worker evaluates.
                seeds = task_seeds(eval_rng, 2)
                evaluations = [executor.submit(evaluate_task, [seed], learner, split,
                                               eval_settings)
                               for split, seed in zip(shared_splits, seeds)]
                record = {"iteration": iteration, "train_accuracy": None,
                          "test_accuracy": None, "inner_loss": float(np.mean(recent_loss)),
                          "meta_step": step,
                          "seconds": round(time.perf_counter() - started, 3)}
                pending.append((record, evaluations))
                recent_loss = []
            done = iteration + 1
            if done % config.checkpoint_interval == 0 or done == config.meta_iters:
                log_pending()  # the metrics file covers every iteration the checkpoint does
                extra = {"data": data, "progress": {
                    "recent_loss": recent_loss, "seconds": time.perf_counter() - started}}
                run.save(model, learner, rngs, done, config, extra)
                saved_at = done
            if bar is not None:
                bar.update(1)
        log_pending()
    finally:
        if bar is not None:
            bar.close()
    if start >= config.meta_iters:
        log(f"{run.directory} has already finished its {config.meta_iters} iterations")
    return learner
