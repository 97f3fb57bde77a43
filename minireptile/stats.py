"""Summaries of repeated measurements."""

import math

import numpy as np


def mean_and_interval(values, confidence=0.95):
    """Mean and the half-width of its ``confidence`` interval (Student's t).

    Returns ``(mean, half_width)``; the half-width is NaN for fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    # scipy.special, not scipy.stats: the same quantile without a second of imports.
    from scipy.special import stdtrit

    sem = values.std(ddof=1) / math.sqrt(len(values))
    return mean, float(stdtrit(len(values) - 1, 0.5 + confidence / 2) * sem)


def format_interval(mean, half_width, digits=4, scale=1.0, unit="", of="tasks"):
    """``"0.1234 ± 0.0056"``, or ``"0.1234 (no interval: it needs at least two tasks)"``
    when ``half_width`` is NaN (``of`` names what was averaged)."""
    text = f"{scale * mean:.{digits}f}{unit}"
    if math.isnan(half_width):
        return f"{text} (no interval: it needs at least two {of})"
    return f"{text} ± {scale * half_width:.{digits}f}{unit}"
