"""The final evaluation of a run: thousands of new tasks per split, resumable.

The reference evaluates 10,000 tasks per split, which takes hours on a CPU. The progress is
kept in the run folder, in a record of its own per evaluation (``evaluations/<key>.npz``):
the number of correct queries of every task done so far, with a description of what they
were computed from (a hash of the learner's parameters and optimiser state, a hash of each
split's classes and images, the evaluation settings, the seed), whose hash names the file.
It is rewritten atomically every few seconds (or tasks), so an evaluation interrupted at any
point continues where it stopped, and ends with exactly the numbers of an uninterrupted one:
task ``i`` of a split always draws from the same stream
(:func:`~minireptile.parallel.executor.task_seeds`), wherever and whenever it runs. A finished
record answers the same evaluation again at once, and only the same one; scoring the run
another way starts a record beside it and never replaces it. A record in ``evaluation.npz``
(where one evaluation at a time was kept before) still answers its own evaluation.
"""

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict

import numpy as np

from ..errors import InputError
from ..npzfile import load_npz, save_npz_atomic
from ..parallel.executor import SerialExecutor, task_seeds
from ..problems.ensemble import Ensemble
from ..problems.fewshot import evaluate_task
from ..stats import mean_and_interval

RECORD_FOLDER = "evaluations"
# Where a run kept its one evaluation record before each evaluation had its own; read only.
LEGACY_RECORD_FILE = "evaluation.npz"
# The record is rewritten after this many seconds or tasks, whichever comes first.
SAVE_EVERY_SECONDS = 5.0
SAVE_EVERY_TASKS = 64
# An estimate of the time left is printed once this many tasks are done, for evaluations of
# at least ESTIMATE_MIN_TASKS tasks in all.
ESTIMATE_AFTER_TASKS = 20
ESTIMATE_MIN_TASKS = 200


def learner_fingerprint(learner):
    """SHA-256 of Φ and the inner optimiser's state: what fine-tuning starts from. For an
    :class:`~minireptile.problems.ensemble.Ensemble`, of its members' fingerprints, in
    order, its fine-tunings per member and its query views."""
    if isinstance(learner, Ensemble):
        digest = hashlib.sha256(f"ensemble of {len(learner.learners)}, {learner.finetunings} "
                                f"fine-tunings each, {learner.query_views} query views"
                                .encode())
        for member in learner.learners:
            digest.update(learner_fingerprint(member).encode())
        return digest.hexdigest()
    digest = hashlib.sha256(np.ascontiguousarray(learner.phi).tobytes())
    for name, value in sorted(learner.optimizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def classes_fingerprint(classes):
    """SHA-256 of the task classes of a ClassSet: the pool's images and names, and which
    classes (with their rotations and mirror images) the split holds. A record made on other
    data or another split must not answer for this one."""
    digest = hashlib.sha256(classes.pool.content_hash().encode())
    digest.update(np.ascontiguousarray(classes.base, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(classes.turns, dtype="<i8").tobytes())
    if classes.mirrored.any():  # so that records made before mirror images keep their hash
        digest.update(np.packbits(classes.mirrored).tobytes())
    return digest.hexdigest()


def evaluate_splits(learner, splits, names, settings, num_samples, rng, executor=None,
                    record_dir=None, progress=False, log=print):
    """Mean accuracy and 95% interval on ``num_samples`` new tasks of each split in ``names``.

    Parameters
    ----------
    learner : FewShotLearner or Ensemble
    splits : dict of str to ClassSet
    names : sequence of str
        The splits to evaluate, in order; each draws its task seeds from ``rng`` in turn.
    settings : tuple
        ``(num_classes, num_shots, eval_batch, eval_iters, transductive)``.
    num_samples : int
        Tasks per split.
    rng : numpy.random.Generator
    executor : SerialExecutor or ProcessExecutor, optional
    record_dir : str, optional
        The run folder, whose ``evaluations/`` holds the record (:func:`record_path`).
        Without it nothing is recorded.

    Returns
    -------
    dict of split name to (mean, half_width, per_task accuracies)
    """
    executor = executor or SerialExecutor()
    num_classes = settings[0]
    key = {"fingerprint": learner_fingerprint(learner), "settings": list(settings),
           "num_samples": int(num_samples), "names": list(names),
           "classes": [classes_fingerprint(splits[name]) for name in names],
           "seeds": [int(s) for s in task_seeds(_copy(rng), 4)]}
    # How tasks are drawn, when not from all classes (e.g. within one alphabet).
    kinds = [getattr(splits[name], "task_kind", None) for name in names]
    if any(kinds):
        key["task_kinds"] = kinds
    # Fine-tuning on distorted support images is another evaluation (absent from older keys).
    if learner.eval_augmentation is not None:
        augmentation = asdict(learner.eval_augmentation)
        if augmentation["interpolation"] == "nearest":  # keys made before the choice existed
            del augmentation["interpolation"]
        key["eval_augmentation"] = augmentation
    path = record_path(record_dir, key) if record_dir is not None else None
    record, found_in = _read_record(path, key), path
    if not record and record_dir is not None:
        legacy = os.path.join(record_dir, LEGACY_RECORD_FILE)
        record, found_in = _read_record(legacy, key), legacy
    done_before = sum(int(np.sum(c >= 0)) for c in record.values())
    if done_before:
        log(f"resuming the evaluation recorded in {found_in}: {done_before} of "
            f"{num_samples * len(names)} tasks done")
    total_todo = num_samples * len(names) - done_before
    started, saved, finished_now, unsaved = time.perf_counter(), time.perf_counter(), 0, 0
    results = {}
    for name in names:
        seeds = task_seeds(rng, num_samples)
        correct = record.setdefault(name, np.full(num_samples, -1, dtype=np.int64))
        todo = np.flatnonzero(correct < 0)
        outcomes = executor.imap(evaluate_task, seeds[todo], learner,
                                 executor.share(splits[name]), settings)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=num_samples, initial=num_samples - len(todo),
                       desc=f"evaluating ({name})", unit="task", mininterval=0.5)
        try:
            for index, outcome in zip(todo, outcomes):
                correct[index] = outcome
                finished_now += 1
                unsaved += 1
                if bar is not None:
                    bar.update(1)
                if finished_now == ESTIMATE_AFTER_TASKS and total_todo >= ESTIMATE_MIN_TASKS:
                    per_task = (time.perf_counter() - started) / finished_now
                    log(f"evaluating {total_todo} tasks: about "
                        f"{_duration(per_task * (total_todo - finished_now))} left "
                        f"({per_task:.2f} s per task, {executor.workers} worker(s))")
                if path is not None and (unsaved >= SAVE_EVERY_TASKS
                                         or time.perf_counter() - saved > SAVE_EVERY_SECONDS):
                    _write_record(path, key, record)
                    saved, unsaved = time.perf_counter(), 0
        finally:
            if bar is not None:
                bar.close()
            if path is not None and finished_now:
                _write_record(path, key, record)
        per_task_accuracy = correct.astype(np.float64) / num_classes
        mean, half = mean_and_interval(per_task_accuracy)
        results[name] = (mean, half, per_task_accuracy)
    return results


def record_path(record_dir, key):
    """The file that keeps the record of the evaluation described by ``key`` (a JSON-able
    dict) in the run folder ``record_dir``: ``evaluations/`` and 16 hex digits of the key's
    SHA-256."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return os.path.join(record_dir, RECORD_FOLDER, f"{digest[:16]}.npz")


def _copy(rng):
    """A generator in ``rng``'s state, to peek at its next draws without advancing it."""
    twin = np.random.Generator(type(rng.bit_generator)())
    twin.bit_generator.state = rng.bit_generator.state
    return twin


def _duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _read_record(path, key):
    """The recorded correct counts per split, if the record is of this very evaluation."""
    if path is None or not os.path.exists(path):
        return {}
    try:
        arrays, meta = load_npz(path)
    except InputError as err:
        print(f"minireptile: warning: ignoring an unreadable evaluation record: {err}",
              file=sys.stderr)
        return {}
    if meta.get("key") != json.loads(json.dumps(key)):
        return {}  # another evaluation (other parameters or settings): start afresh
    return {name[len("correct."):]: value.astype(np.int64)
            for name, value in arrays.items() if name.startswith("correct.")}


def _write_record(path, key, record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_npz_atomic(path, {f"correct.{name}": value for name, value in record.items()},
                    {"kind": "minireptile-evaluation", "key": key})
