"""Few-shot tasks: N classes × K shots, inner mini-batches, support/query splits.

The semantics are those of the reference implementation (openai/supervised-reptile,
``reptile.py``), with Python's ``random`` replaced by an explicit ``numpy.random.Generator``:

* :func:`sample_task` is ``_sample_mini_dataset``: shuffle the classes, keep the first N, draw
  K distinct images from each; labels 0..N−1 follow the drawn class order and the examples
  are grouped by class (class 0's K images, then class 1's, ...).
* :func:`mini_batch_indices` is ``_mini_batches``. Without replacement it shuffles the whole
  task (in place, so each epoch permutes the previous order) and deals it out in batches; a
  batch that is not full when an epoch ends is completed from the next epoch, and whatever is
  left after the last batch is dropped. With replacement every batch is an independent draw
  of ``batch_size`` *distinct* examples (``random.sample``), so an example can recur across
  batches but never within one.
* :func:`split_support_query` is ``_split_train_test``: for each label, the first remaining
  example moves to the query set, ``query_shots`` rounds over the labels in increasing order.
  :func:`sample_eval_task` draws K + 1 shots and splits off one query per class, as
  ``Reptile.evaluate`` does, so a query image is never in the support set.

Where the reference silently returns fewer classes or shots than asked, these functions raise
:class:`~minireptile.errors.InputError`.
"""

from typing import NamedTuple

import numpy as np

from ..errors import InputError, check_generator


class Task(NamedTuple):
    """A labelled set of examples.

    images : (n, H, W) float32 (or (n, H, W, channels) for colour data)
    labels : (n,) int64, values in 0..N−1
    """

    images: np.ndarray
    labels: np.ndarray


class EvalTask(NamedTuple):
    """An evaluation task: fine-tune on ``support``, score on ``query``.

    support : Task with N·K examples, grouped by class
    query : Task with N·query_shots examples, labels 0..N−1 in order (repeated per round)
    """

    support: Task
    query: Task


def _count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_shots(classes, num_shots, what):
    """Every class must hold ``num_shots`` images; name the smallest one otherwise."""
    sizes = np.diff(classes.pool.starts)[classes.base]
    smallest = int(np.argmin(sizes))
    if num_shots > sizes[smallest]:
        raise InputError(f"class {classes.class_name(smallest)!r} has {sizes[smallest]} "
                         f"images but {num_shots} are needed per class ({what}); use fewer "
                         "shots or drop the small classes")


def sample_task(classes, num_classes, num_shots, rng):
    """Draw a task of ``num_classes`` classes with ``num_shots`` distinct images each.

    Parameters
    ----------
    classes : minireptile.data.ClassSet
    num_classes : int
        N, at most ``len(classes)``.
    num_shots : int
        K, at most the size of the smallest class (training uses ``train_shots`` here).
    rng : numpy.random.Generator

    Returns
    -------
    Task with images (N·K, H, W) float32 and labels (N·K,) int64: class ``i`` of the draw has
    label ``i`` and occupies rows ``i·K`` to ``(i+1)·K − 1``.
    """
    check_generator(rng)
    num_classes = _count("num_classes", num_classes)
    num_shots = _count("num_shots", num_shots)
    if num_classes > len(classes):
        raise InputError(f"cannot draw {num_classes} classes from a split of {len(classes)}; "
                         f"use at most {len(classes)} classes or a larger split")
    _check_shots(classes, num_shots, f"{num_shots} shots")
    rows = classes.sample_rows(num_classes, rng)
    images = [classes.images(r, rng.choice(classes.class_size(r), num_shots, replace=False))
              for r in rows]
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), num_shots)
    return Task(np.concatenate(images), labels)


def split_support_query(task, query_shots=1):
    """Move ``query_shots`` examples of every label from ``task`` to a query set.

    Round after round, for each label in increasing order, the first remaining example of
    that label is moved (the reference's ``_split_train_test``). The support set keeps the
    remaining examples in their original order.

    Returns
    -------
    EvalTask
    """
    query_shots = _count("query_shots", query_shots)
    labels = np.asarray(task.labels)
    taken = []
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        if len(where) < query_shots:
            raise InputError(f"label {label} has {len(where)} examples, fewer than the "
                             f"{query_shots} query shots requested")
        taken.append(where[:query_shots])
    query_rows = np.stack(taken, axis=1).reshape(-1)  # round-major, labels ascending
    keep = np.ones(len(labels), dtype=bool)
    keep[query_rows] = False
    return EvalTask(Task(task.images[keep], labels[keep]),
                    Task(task.images[query_rows], labels[query_rows]))


def sample_eval_task(classes, num_classes, num_shots, rng, query_shots=1):
    """Draw an evaluation task: K support shots plus ``query_shots`` held-out per class.

    ``num_shots + query_shots`` distinct images are drawn per class, then split with
    :func:`split_support_query`; query images therefore never appear in the support set.

    Returns
    -------
    EvalTask: support images (N·K, H, W), query images (N·query_shots, H, W)
    """
    num_shots = _count("num_shots", num_shots)
    query_shots = _count("query_shots", query_shots)
    _check_shots(classes, num_shots + query_shots,
                 f"{num_shots} shots + {query_shots} held-out query")
    return split_support_query(sample_task(classes, num_classes, num_shots + query_shots, rng),
                               query_shots)


def mini_batch_indices(num_samples, batch_size, num_batches, replacement, rng):
    """Row indices of the inner-loop mini-batches (the reference's ``_mini_batches``).

    Parameters
    ----------
    num_samples : int
        Size of the task.
    batch_size : int
        Rows per batch; with ``replacement`` at most ``num_samples``, otherwise any size
        (a batch larger than the task spans several epochs).
    num_batches : int
        Number of batches (0 gives none).
    replacement : bool
    rng : numpy.random.Generator

    Yields
    ------
    (batch_size,) int64 arrays.
    """
    check_generator(rng)
    num_samples = _count("num_samples", num_samples)
    batch_size = _count("batch_size", batch_size)
    num_batches = _count("num_batches", num_batches, minimum=0)
    if replacement:
        if batch_size > num_samples:
            raise InputError(f"a mini-batch of {batch_size} distinct examples cannot be "
                             f"drawn from a task of {num_samples}; with replacement use "
                             f"inner_batch <= {num_samples}")
        for _ in range(num_batches):
            yield rng.choice(num_samples, batch_size, replace=False)
        return
    order = np.arange(num_samples, dtype=np.int64)
    pending = np.empty(0, dtype=np.int64)
    for _ in range(num_batches):
        while len(pending) < batch_size:
            rng.shuffle(order)  # in place: the next epoch permutes this one, as the reference
            pending = np.concatenate([pending, order])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def mini_batches(task, batch_size, num_batches, replacement, rng):
    """The inner-loop mini-batches of ``task``, each a :class:`Task` (see
    :func:`mini_batch_indices` for the sampling rule)."""
    for rows in mini_batch_indices(len(task.labels), batch_size, num_batches, replacement,
                                   rng):
        yield Task(task.images[rows], task.labels[rows])
