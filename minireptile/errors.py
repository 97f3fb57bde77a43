"""The one exception type the library raises for bad input.

Every message names the value received and what would have been accepted, so the command
line can print it as a single line (exit status 2) instead of a traceback.
"""

import numpy as np


class InputError(ValueError):
    """Bad input from a caller: wrong shape, dtype, range, path or file content."""


def check_positive_int(name, value):
    """Raise :class:`InputError` unless ``value`` is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def check_generator(rng, name="rng"):
    """Raise :class:`InputError` unless ``rng`` is a ``numpy.random.Generator``."""
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"{name} must be a numpy.random.Generator, got "
                         f"{type(rng).__name__}; make one with numpy.random.default_rng(seed)")


def describe_array(a):
    """``'float32 array of shape (3, 4)'`` or the type name for a non-array (for messages)."""
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is None or dtype is None:
        return f"{type(a).__name__} {a!r}"[:80]
    return f"{dtype} array of shape {tuple(shape)}"
