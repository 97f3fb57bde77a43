"""The executor interface on a Dask distributed cluster (``--scheduler ADDRESS``).

Dask (the ``cluster`` extra: ``pip install "minireptile[cluster]"``) schedules, moves data,
and re-runs the work of a worker that dies; this module only maps the executor interface of
:mod:`minireptile.parallel.executor` onto a ``distributed.Client``:

* :meth:`DaskExecutor.share` scatters an object to every worker once (``broadcast=True``),
  so a data set crosses the network once per worker;
* :meth:`DaskExecutor.submit` scatters the per-map arguments (Φ, the optimiser state) once
  per map, again to every worker, and submits chunks of items that refer to them: the
  parameters travel once per meta-iteration and per worker, never once per task;
* results come back in the order of the items, and every item carries its own random seed,
  so the numbers are the same bit for bit here, on a local pool or on one machine.

A worker lost mid-map is mostly Dask's business: the scheduler hands its unfinished chunks,
and the finished ones whose results it held, to the others (up to
``distributed.scheduler.allowed-failures`` times per chunk). Scattered data is the exception.
Dask cannot recompute it, and forgets it, with every chunk that needs it, when the last
worker holding it dies; and a broadcast does not last: the Active Memory Manager of a
scheduler (on by default) drops, every few seconds, the copies that no waiting task needs,
down to one. So this module keeps what it scattered (the per-map arguments as pickled at
submission): a chunk cancelled because its data was lost is submitted again, at most
:data:`RESUBMITS` times, after the lost data is scattered again.
"""

import os
import pickle
from concurrent.futures import CancelledError

from ..errors import InputError
from .executor import Shared, chunk_size
from .threads import current_threads, set_threads

# Items per chunk at most: results (and the progress an evaluation records) arrive steadily,
# and a lost worker takes little finished work with it.
MAX_CHUNK = 16
# How long to wait for the scheduler to answer, and then for a first worker to join it.
CONNECT_TIMEOUT = 10
INSTALL_HINT = 'pip install "minireptile[cluster]"'
# How many times a chunk is submitted again after Dask cancelled it (its scattered data
# lost with the workers that held it) before the cancellation is raised.
RESUBMITS = 3

# Worker side: the thread count this process was last set to, so it is set once per process.
_worker_threads = None


def import_distributed():
    """The ``distributed`` module, or an :class:`InputError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"scheduler needs Dask distributed, which is not installed; "
                         f"run: {INSTALL_HINT}") from None
    return distributed


def worker_name():
    """This process as a message should name it: the Dask worker's address, or host and pid."""
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        import socket

        return f"worker {socket.gethostname()} (pid {os.getpid()})"


def _run_chunk(work, threads, packed, *shared_and_items):
    """Worker side: ``[work(*args, item) for item in items]`` with the shared objects and the
    per-map arguments put back in their places."""
    global _worker_threads
    if _worker_threads != threads:
        set_threads(threads)
        _worker_threads = threads
    *shared, items = shared_and_items
    layout, values = packed
    shared = iter(shared)
    args = tuple(next(shared) if slot == "shared" else values[slot] for slot in layout)
    return [work(*args, item) for item in items]


class _Scattered:
    """Data scattered to every worker, and what it takes to scatter it again when it is lost.

    ``obj`` is kept as it is (a shared data set, which nothing changes), or, with
    ``snapshot=True``, pickled now (the per-map arguments: Φ may change in place later, and
    work submitted again must see the Φ it was first submitted with).
    """

    __slots__ = ("obj", "_pickled", "future")

    def __init__(self, client, obj, snapshot=False):
        self.obj, self._pickled, self.future = obj, None, None
        self.current(client)
        if snapshot:
            self.obj, self._pickled = None, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def current(self, client):
        """The future of the data on the workers: scattered again unless it is still there."""
        if self.future is None or self.future.status != "finished":
            obj = self.obj if self._pickled is None else pickle.loads(self._pickled)
            [self.future] = client.scatter([obj], broadcast=True, hash=False)
        return self.future


class DaskPending:
    """Results of a map submitted to Dask: :meth:`result` waits for all of them,
    :meth:`__iter__` yields them as they arrive, always in the order of the items.

    It holds the map's scattered arguments: they cannot be recomputed, and while the results
    are wanted a chunk that finished on a worker that then died must be able to run again.
    A chunk Dask cancelled (its scattered data lost with the workers that held it) is
    submitted again, after its data is scattered again, up to :data:`RESUBMITS` times.
    """

    def __init__(self, futures=(), resubmit=None, results=None):
        self.futures = list(futures)
        self._resubmit = resubmit  # chunk index -> a new future for that chunk
        self._results = results

    def __iter__(self):
        if self._results is not None:
            yield from self._results
            return
        done = []
        for index in range(len(self.futures)):
            chunk = self._chunk(index)
            done.extend(chunk)
            yield from chunk
        self._results, self.futures, self._resubmit = done, [], None

    def _chunk(self, index):
        for attempt in range(RESUBMITS + 1):
            try:
                return self.futures[index].result()
            except CancelledError:
                if attempt == RESUBMITS or self._resubmit is None:
                    raise
            # The chunks after this one lost the same data: send them again at once too.
            for later in range(index, len(self.futures)):
                if later == index or self.futures[later].cancelled():
                    self.futures[later] = self._resubmit(later)

    def result(self):
        if self._results is None:
            for _ in self:
                pass
        return self._results


class DaskExecutor:
    """Runs maps on the workers of a Dask scheduler.

    Parameters
    ----------
    scheduler : str
        ``tcp://host:port`` (or ``tls://``, ``host:port``) of a running ``dask scheduler``,
        or the path of its scheduler file (``dask scheduler --scheduler-file PATH``).
    threads : int, optional
        Threads per BLAS pool in each task (default: this process's,
        :func:`minireptile.parallel.threads.current_threads`).
    timeout : float
        Seconds to wait for the scheduler, then for at least one worker.
    """

    def __init__(self, scheduler, threads=None, timeout=CONNECT_TIMEOUT):
        distributed = import_distributed()
        self.threads = current_threads() if threads is None else int(threads)
        self.address = str(scheduler)
        where = {"scheduler_file": self.address} if os.path.isfile(self.address) \
            else {"address": self.address}
        try:
            self.client = distributed.Client(**where, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"cannot reach the Dask scheduler {self.address!r} within "
                             f"{timeout:g} s ({_first_line(err)}); start one with "
                             f"'dask scheduler' or give its tcp://host:port or scheduler "
                             f"file") from None
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as err:
            self.client.close()
            raise InputError(f"the Dask scheduler {self.address!r} has no workers after "
                             f"{timeout:g} s ({_first_line(err)}); start some with "
                             f"'dask worker {self.address}'") from None
        self._shared = []  # _Scattered: what this executor shared for the session

    @property
    def workers(self):
        """Workers connected to the scheduler now."""
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def share(self, obj):
        """A handle to ``obj`` on every worker: scattered once, to all of them (the same
        object shared again is not sent again)."""
        for known in self._shared:
            if known.obj is obj:
                return Shared(known)
        self._shared.append(_Scattered(self.client, obj))
        return Shared(self._shared[-1])

    def submit(self, work, items, *args):
        """Start ``[work(*args, item) for item in items]`` on the workers; a
        :class:`DaskPending`.

        The arguments other than shared handles are serialised now (a later in-place change
        of Φ does not reach work already submitted) and sent once to every worker.
        """
        items = list(items)
        if not items:
            return DaskPending(results=[])
        layout, values, shared = [], [], []
        for arg in args:
            if isinstance(arg, Shared):
                layout.append("shared")
                shared.append(arg.key)
            else:
                layout.append(len(values))
                values.append(arg)
        packed = _Scattered(self.client, (tuple(layout), tuple(values)), snapshot=True)
        size = chunk_size(len(items), self.workers, MAX_CHUNK)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]

        def submit_chunk(index):
            inputs = [data.current(self.client) for data in (packed, *shared)]
            return self.client.submit(_run_chunk, work, self.threads, *inputs, chunks[index],
                                      pure=False)

        return DaskPending([submit_chunk(i) for i in range(len(chunks))], submit_chunk)

    def map(self, work, items, *args):
        """``[work(*args, item) for item in items]``, computed on the workers, in order."""
        return list(self.imap(work, items, *args))

    def imap(self, work, items, *args):
        """:meth:`map` as an iterator, each result as soon as it and those before it are done."""
        pending = self.submit(work, items, *args)
        try:
            yield from pending
        except BaseException:  # an interrupt or a worker's error: the rest is not wanted
            self.client.cancel(pending.futures)
            raise

    def close(self):
        """Release what was scattered and disconnect (the cluster keeps running)."""
        self._shared = []
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
