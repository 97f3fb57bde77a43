"""Numba-compiled kernels (installed as ``minireptile.kernels``).

Each module pairs its compiled kernels with a slow, obvious NumPy reference of the same
signature (suffix ``_reference``); the tests hold every kernel to its reference.

Kernels are compiled with ``cache=True``. Numba keys a cached kernel on its own source file
only, so after editing a kernel that another module's kernels call (``dense.py`` is called
from ``mlp.py``), delete ``__pycache__`` here; a fresh install always starts clean.
"""

from ..parallel.threads import current_threads

# Size the BLAS pools the kernels use before any of them runs (see minireptile.parallel.threads).
current_threads()
