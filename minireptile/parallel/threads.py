"""The process's thread pools: minireptile sizes them, so the user need not.

A model loads two OpenBLAS libraries: NumPy's (for NumPy's own products) and SciPy's (which the
Numba kernels call through ``np.dot``). Left alone, each starts a pool of one busy-waiting thread
per core. At the matrix sizes of these networks a product split across threads costs more than
it gains, and two pools on the same cores spin against each other: an Omniglot training step
took 50–55 ms instead of 7–8 ms on two idle cores, and 268 ms with one other busy process.
minireptile uses the cores for independent work instead (tasks, variants: see
:mod:`minireptile.parallel.executor`), so every BLAS and OpenMP pool gets ``threads``
threads, 1 unless asked otherwise:

* :func:`set_threads` (the command line's ``--threads``) sets it;
* an explicit ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` in the
  environment is respected when nothing else is asked.

Importing :mod:`minireptile.kernels` applies the default, so merely using a model gives every
pool its size; :func:`set_threads` can be called again at any time (it also covers pools that
libraries loaded later brought in).
"""

import os

ENVIRONMENT_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_current = None


def threads_from_environment():
    """The thread count the user set in the environment, or None.

    The first of :data:`ENVIRONMENT_VARIABLES` that holds a positive integer wins, as each
    library reads its own variable but the user's intent is one number.
    """
    for name in ENVIRONMENT_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
    return None


def _load_kernel_blas():
    """Load the BLAS library the Numba kernels call, so that its pool can be sized now.

    Numba imports it lazily, at a kernel's first product; a pool loaded after the limit was
    applied would start with one thread per core.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:  # without SciPy, Numba's np.dot is unavailable anyway
        pass


def set_threads(threads=None):
    """Size every loaded BLAS and OpenMP thread pool.

    Parameters
    ----------
    threads : int, optional
        Threads per pool. Default: the environment's explicit setting
        (:func:`threads_from_environment`), else 1.

    Returns
    -------
    int
        The size applied.

    Examples
    --------
    >>> import minireptile
    >>> minireptile.set_threads(1)
    1
    """
    global _current
    from ..errors import check_positive_int

    if threads is None:
        threads = threads_from_environment() or 1
    check_positive_int("threads", threads)
    _load_kernel_blas()
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().limit(limits=int(threads))
    _current = int(threads)
    return _current


def current_threads():
    """The size last applied by :func:`set_threads` (applying the default if none was)."""
    return _current if _current is not None else set_threads()


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
