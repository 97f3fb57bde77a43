"""Stop as soon as a number stops being finite, instead of reporting a meaningless result.

A run that diverges (too large a learning rate or meta-step) fills Φ with infinities and NaNs
within a few iterations; every prediction of such a network is the same class, so without a
check it would "evaluate" at chance level and exit successfully. :func:`check_finite` is
called on the losses, on Φ and on the optimiser states after every meta-iteration, and on the
fine-tuned weights of every evaluation task; the first non-finite value raises
:class:`DivergedError`, which the command line prints as one line with exit status
:data:`EXIT_DIVERGED`. Nothing non-finite is ever written to a checkpoint or to the metrics.
"""

EXIT_DIVERGED = 3


class DivergedError(ArithmeticError):
    """A loss, parameter or optimiser state became NaN or infinite."""


def first_non_finite(values):
    """Name of the first non-finite entry of ``values`` (dict of name -> number or array),
    or None when all are finite."""
    import numpy as np  # here: the command line imports this module before it needs NumPy

    for name, value in values.items():
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return name
    return None


def check_finite(values, cause):
    """Raise :class:`DivergedError` unless every entry of ``values`` is finite.

    Parameters
    ----------
    values : dict of str -> number or ndarray
        E.g. ``{"inner loss": 0.3, "parameters": phi}``; the message names the first bad one.
    cause : str
        The likely cause and what to change, appended to the message.
    """
    bad = first_non_finite(values)
    if bad is not None:
        raise DivergedError(f"the {bad} became NaN or infinite; {cause}")
