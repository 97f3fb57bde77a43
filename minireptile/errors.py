"""The one exception type the library raises for bad input.

Every message names the value received and what would have been accepted, so the command
line can print it as a single line (exit status 2) instead of a traceback.
"""


class InputError(ValueError):
    """Bad input from a caller: wrong shape, dtype, range, path or file content."""


def describe_array(a):
    """``'float32 array of shape (3, 4)'`` or the type name for a non-array (for messages)."""
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is None or dtype is None:
        return f"{type(a).__name__} {a!r}"[:80]
    return f"{dtype} array of shape {tuple(shape)}"
