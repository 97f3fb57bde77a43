"""Summaries of repeated measurements."""

import math

import numpy as np
from scipy import stats


def mean_and_interval(values, confidence=0.95):
    """Mean and the half-width of its ``confidence`` interval (Student's t).

    Returns ``(mean, half_width)``; the half-width is NaN for fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sem)
