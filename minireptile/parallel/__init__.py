"""Where independent work runs: thread pools sized per process (:mod:`.threads`), and
executors that map tasks onto this machine's cores (:mod:`.executor`) or a Dask cluster
(:mod:`.dask_cluster`), all with one interface; :func:`make_executor` chooses among them.
"""

import os

from ..errors import InputError


def make_executor(workers=None, threads=None, scheduler=None):
    """A :class:`SerialExecutor` for one worker, else a :class:`ProcessExecutor`; with a
    ``scheduler``, a :class:`minireptile.parallel.dask_cluster.DaskExecutor` on its workers.

    Parameters
    ----------
    workers : int, optional
        Worker processes; default :func:`default_workers`.
    threads : int, optional
        Threads per BLAS pool in each worker (default:
        :func:`minireptile.parallel.threads.current_threads`).
    scheduler : str, optional
        Address or scheduler file of a Dask scheduler (needs the ``cluster`` extra); its
        workers replace local ones, so ``workers`` must then be None.

    Examples
    --------
    >>> with make_executor(workers=1) as executor:
    ...     executor.map(pow, [1, 2, 3], 2)
    [2, 4, 8]
    """
    from .executor import ProcessExecutor, SerialExecutor, check_workers, default_workers
    from .threads import set_threads

    if scheduler is not None:
        if workers is not None:
            raise InputError(f"workers={workers} and scheduler={scheduler!r} exclude each other: "
                             f"the cluster's workers do the work; give only the scheduler")
        from .dask_cluster import DaskExecutor

        return DaskExecutor(scheduler, threads)
    workers = default_workers() if workers is None else workers
    check_workers(workers)
    if threads is not None:
        set_threads(threads)
    if workers == 1 or os.name != "posix":
        return SerialExecutor()
    return ProcessExecutor(workers)
