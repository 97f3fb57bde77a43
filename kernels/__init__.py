"""Numba-compiled kernels (installed as ``minireptile.kernels``).

Each module pairs its compiled kernels with a slow, obvious NumPy reference of the same
signature (suffix ``_reference``); the tests hold every kernel to its reference.
"""
