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

from .augment import (
    DEFAULT_ROTATION,
    DEFAULT_SCALE,
    DEFAULT_SHEAR,
    DEFAULT_TRANSLATE,
    AffineAugmentation,
)
from .checkpoint import load_npz, save_npz_atomic
from .combinations import parse_combination
from .errors import InputError
from .executor import SerialExecutor, task_seeds
from .fewshot import FewShotLearner, InnerConfig, evaluate_task
from .reptile import linear_schedule, make_outer

CHECKPOINT_FILE = "checkpoint.npz"
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
    sgd: bool = False
    seed: int = 0
    outer: str = "sgd"
    combination: str = ""
    checkpoint_interval: int = 100
    # Beyond the reference: Lake's within-alphabet tasks and Koch et al.'s affine distortions
    # (see minireptile.data.alphabets and minireptile.augment).
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
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not self.meta_step > 0 or not self.meta_step_final >= 0:
            raise InputError(f"--meta-step must be > 0 and --meta-step-final >= 0, got "
                             f"{self.meta_step} and {self.meta_step_final}")
        if not 0 < self.weight_decay <= 1:
            raise InputError(f"--weight-decay is a rate in (0, 1] (1 = none), got "
                             f"{self.weight_decay}")
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
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            # On disk before any later checkpoint says this iteration is done.
            f.flush()
            os.fsync(f.fileno())


def read_checkpoint(path):
    """``(arrays, metadata)`` of a training checkpoint; raises for any other file."""
    arrays, meta = load_npz(path)
    if meta.get("kind") != "minireptile-train" or "phi" not in arrays or "config" not in meta:
        raise InputError(f"{path!r} is not a minireptile training checkpoint")
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
    return arrays, meta


def load_checkpoint(path, model):
    """Read a training checkpoint and check that it belongs to ``model``."""
    arrays, meta = read_checkpoint(path)
    return check_checkpoint(path, arrays, meta, model)


# Settings that do not change what a run computes, so a resumed run may differ in them.
RESUMABLE_CHANGES = ("checkpoint_interval",)


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
        JSON-able description of the data (sources, split options), stored in the checkpoint
        and required to be the same on ``resume``.
    executor : SerialExecutor or ProcessExecutor, optional
        Where independent work runs (default: here). With more than one worker, the
        evaluations run on a worker while training goes on, and the tasks of a meta-batch run
        in parallel when they are independent (inner SGD); the results are the same bit for
        bit either way.

    Returns the :class:`FewShotLearner` (its ``phi`` holds the trained parameters).
    """
    config.validate(train_classes, test_classes)
    if config.within_alphabet:
        from .data.alphabets import as_within_alphabet

        train_classes = as_within_alphabet(train_classes, config.classes, "training", log)
        test_classes = as_within_alphabet(test_classes, config.classes, "test", log)
    run = Run(directory)
    os.makedirs(run.directory, exist_ok=True)
    train_rng, eval_rng, _ = generators(config.seed)
    if resume:
        if not run.exists():
            raise InputError(f"nothing to resume: {run.checkpoint_path!r} does not exist; "
                             "drop --resume to start a new run")
        phi, state, rng_states, start, saved_config, meta = run.load(model)
        changed = [f"{_flag(k)} {v!r} (checkpoint: {getattr(saved_config, k)!r})"
                   for k, v in config.to_dict().items()
                   if getattr(saved_config, k) != v and k not in RESUMABLE_CHANGES]
        saved_data = meta["extra"].get("data")
        if data is not None and saved_data is not None and saved_data != data:
            changed.append(f"the data {data} (checkpoint: {saved_data})")
        if changed:
            raise InputError("--resume needs the run's original settings; changed: "
                             + ", ".join(changed))
        progress_state = meta["extra"].get("progress", {})
        learner = make_learner(model, phi.copy(), config)
        learner.load_state_dict(state)
        train_rng.bit_generator.state = rng_states[0]
        eval_rng.bit_generator.state = rng_states[1]
        run.truncate_metrics(start)
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

    def log_pending():
        while pending:
            record, evaluations = pending.pop(0)
            accuracies = [correct / config.classes for e in evaluations for correct in e.result()]
            record.update(train_accuracy=accuracies[0], test_accuracy=accuracies[1])
            run.log_metrics(record)
            if bar is not None:
                bar.set_postfix(train=f"{accuracies[0]:.2f}", test=f"{accuracies[1]:.2f}",
                                loss=f"{record['inner_loss']:.3f}", refresh=False)

    for iteration in range(start, config.meta_iters):
        step = linear_schedule(config.meta_step, config.meta_step_final, iteration,
                               config.meta_iters)
        recent_loss.append(learner.train_step(train_classes, config.classes,
                                              config.effective_train_shots, config.meta_batch,
                                              step, train_rng, executor))
        if iteration % config.eval_interval == 0:
            log_pending()
            # One task per split, from streams drawn here in a fixed order. The executor takes
            # its copy of the learner now, so Φ may move on while a worker evaluates.
            seeds = task_seeds(eval_rng, 2)
            evaluations = [executor.submit(evaluate_task, [seed], learner, split, eval_settings)
                           for split, seed in zip(shared_splits, seeds)]
            record = {"iteration": iteration, "train_accuracy": None, "test_accuracy": None,
                      "inner_loss": float(np.mean(recent_loss)), "meta_step": step,
                      "seconds": round(time.perf_counter() - started, 3)}
            pending.append((record, evaluations))
            recent_loss = []
        done = iteration + 1
        if done % config.checkpoint_interval == 0 or done == config.meta_iters:
            log_pending()  # the metrics file covers every iteration the checkpoint does
            extra = {"data": data, "progress": {
                "recent_loss": recent_loss, "seconds": time.perf_counter() - started}}
            run.save(model, learner, rngs, done, config, extra)
        if bar is not None:
            bar.update(1)
    log_pending()
    if bar is not None:
        bar.close()
    if start >= config.meta_iters:
        log(f"{run.directory} has already finished its {config.meta_iters} iterations")
    return learner
