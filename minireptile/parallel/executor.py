"""Ordered maps over independent work: evaluation tasks, experiment variants, meta-batch tasks.

One small interface, so that the code above it never says where the work runs::

    executor = make_executor(workers=2)
    data = executor.share(classes)                  # sent to every worker once
    results = executor.map(work, items, data, phi)  # [work(classes, phi, item) for item in items]

``map`` returns the results in the order of ``items``, and every item carries what makes it
random (a seed, see :func:`task_seeds`), so the results are the same bit for bit on one
worker or many; callers reduce them in that fixed order. ``submit`` starts the same map and
returns at once (``.result()`` waits), which lets training evaluate on one core while it
trains on another.

Two executors:

* :class:`SerialExecutor` runs everything in this process, in order (``workers=1``);
* :class:`ProcessExecutor` runs chunks of items in worker processes forked from this one.
  Forking hands the workers every shared object (a data set of 100 MB included) without
  copying it: :meth:`~ProcessExecutor.share` registers an object here, and the pool is forked
  (again) when the registry has changed since the workers started. The per-map arguments
  (parameters, optimiser state: a few MB at most) are pickled once per map, at submission,
  so a later in-place update of Φ cannot leak into work already submitted.

Work functions must be module-level functions (they are sent by name). Each worker sizes its
thread pools like the parent (:mod:`minireptile.parallel.threads`), so workers × threads
never exceeds what was asked for.
"""

import itertools
import math
import os
import pickle
import signal
import threading
import time

import numpy as np

from ..errors import InputError, check_generator
from .threads import available_cores, current_threads, set_threads

# Objects shared with the workers, by key; forked workers inherit the registry.
_REGISTRY = {}
_REGISTRY_VERSION = itertools.count(1)
_registry_version = 0
# A map is cut into chunks of items: about CHUNKS_PER_WORKER per worker, to balance tasks of
# uneven cost, but at most MAX_CHUNK items, so that results (and the progress they report)
# arrive steadily and an interrupted map loses little. At most IN_FLIGHT_PER_WORKER chunks
# per worker are submitted at a time, which bounds the memory their pickled arguments take.
CHUNKS_PER_WORKER = 4
MAX_CHUNK = 8
IN_FLIGHT_PER_WORKER = 2


def chunk_size(count, workers, largest=MAX_CHUNK):
    """Items per chunk for a map of ``count`` items on ``workers`` workers (see above)."""
    return min(largest, max(1, math.ceil(count / (workers * CHUNKS_PER_WORKER))))


class Shared:
    """A handle to an object shared with every worker (see :meth:`Executor.share`)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"Shared({self.key})"


def task_seeds(rng, count):
    """``count`` seeds for independent per-task random streams, drawn from ``rng``.

    ``rng`` advances by the same amount whatever the number of workers, and task ``i`` uses
    ``numpy.random.default_rng(seeds[i])`` wherever it runs.

    Returns
    -------
    ndarray of int64, shape (count,)
    """
    check_generator(rng)
    return rng.integers(0, np.iinfo(np.int64).max, size=int(count), dtype=np.int64)


def _resolve(args):
    return tuple(_REGISTRY[a.key] if isinstance(a, Shared) else a for a in args)


def _run_chunk(head, items):
    """Worker side: unpickle ``(work, args)`` and map ``work`` over the items."""
    work, args = pickle.loads(head)
    args = _resolve(args)
    return [work(*args, item) for item in items]


def _start_worker(threads, parent):
    # A parent killed outright (SIGKILL) cannot shut its pool down, and a forked worker holds
    # its own copy of the task pipe, so it would wait for work forever: leave with the parent.
    # Watch the pid the parent gave, from the first moment: os.getppid() read after a slow
    # start may already name the reaper that adopted this worker.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Ctrl-C goes to the whole process group; the parent decides what stops, and shuts the
    # pool down itself, so a worker must not die half-way through a chunk on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)


def _exit_with_parent(parent, poll_seconds=1.0):
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


class Pending:
    """Results of a submitted map: :meth:`result` waits for all of them, :meth:`__iter__`
    yields them one by one as they arrive, always in the order of the items.

    ``chunks`` are the payloads still to run and ``start`` submits one, returning its
    future; up to ``in_flight`` of them run at a time.
    """

    def __init__(self, chunks=None, start=None, in_flight=1, results=None):
        self._results = results
        if results is None:
            self._chunks = iter(chunks)
            self._start = start
            self._running = []
            for _ in range(in_flight):
                self._submit_next()

    def _submit_next(self):
        payload = next(self._chunks, None)
        if payload is not None:
            self._running.append(self._start(payload))

    def __iter__(self):
        if self._results is not None:
            yield from self._results
            return
        done = []
        while self._running:
            chunk = self._running.pop(0).result()
            self._submit_next()
            done.extend(chunk)
            yield from chunk
        self._results = done

    def result(self):
        if self._results is None:
            for _ in self:
                pass
        return self._results


class SerialExecutor:
    """Runs every map in this process, item after item (``workers = 1``)."""

    workers = 1

    def share(self, obj):
        """A handle to ``obj`` for the arguments of :meth:`map`, sent to each worker once
        (here, in this process, the object itself)."""
        return obj

    def map(self, work, items, *args):
        """``[work(*args, item) for item in items]``, with :class:`Shared` handles among
        ``args`` replaced by their objects."""
        return self.submit(work, items, *args).result()

    def submit(self, work, items, *args):
        """Start :meth:`map` and return a :class:`Pending` (here: already computed)."""
        args = _resolve(args)
        return Pending(results=[work(*args, item) for item in items])

    def imap(self, work, items, *args):
        """:meth:`map` as an iterator, each result as soon as it and those before it are
        done (here: one by one, lazily)."""
        args = _resolve(args)
        return (work(*args, item) for item in items)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProcessExecutor(SerialExecutor):
    """Runs maps in ``workers`` forked processes, each with ``threads`` threads per pool."""

    def __init__(self, workers, threads=None):
        check_workers(workers)
        self.workers = int(workers)
        self.threads = current_threads() if threads is None else set_threads(threads)
        self._pool = None
        self._pool_version = None
        self._keys = []  # what this executor shared, released by close()

    def share(self, obj):
        """A :class:`Shared` handle to ``obj``: workers forked from now on inherit it, and
        sharing the same object again returns the same handle."""
        global _registry_version
        for key in self._keys:
            if _REGISTRY[key] is obj:
                return Shared(key)
        key = next(_REGISTRY_VERSION)
        _REGISTRY[key] = obj
        self._keys.append(key)
        _registry_version = key
        return Shared(key)

    def _ensure_pool(self):
        if self._pool is not None and self._pool_version == _registry_version:
            return self._pool
        self._stop_pool()
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker, initargs=(self.threads, os.getpid()))
        self._pool_version = _registry_version
        return self._pool

    def submit(self, work, items, *args):
        items = list(items)
        if not items:
            return Pending(results=[])
        pool = self._ensure_pool()
        size = chunk_size(len(items), self.workers)
        # Pickled now, so that changing an argument in place later (Φ, as training goes on)
        # cannot reach work already submitted.
        head = pickle.dumps((work, args), protocol=pickle.HIGHEST_PROTOCOL)
        chunks = ((head, items[i:i + size]) for i in range(0, len(items), size))
        return Pending(chunks, lambda chunk: pool.submit(_run_chunk, *chunk),
                       in_flight=self.workers * IN_FLIGHT_PER_WORKER)

    def map(self, work, items, *args):
        return list(self.imap(work, items, *args))

    def imap(self, work, items, *args):
        pending = self.submit(work, items, *args)
        try:
            yield from pending
        except BaseException:  # an interrupt, or a worker's error: stop the others at once
            self._stop_pool(cancel=True)
            raise

    def close(self, cancel=False):
        """Stop the workers (at once with ``cancel``) and release the shared objects."""
        for key in self._keys:
            _REGISTRY.pop(key, None)
        self._keys = []
        self._stop_pool(cancel)

    def _stop_pool(self, cancel=False):
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if cancel:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=cancel)


def check_workers(workers):
    """Raise :class:`InputError` unless ``workers`` is a positive integer."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")


def default_workers():
    """The cores this process may use (:func:`os.sched_getaffinity`)."""
    return available_cores()
