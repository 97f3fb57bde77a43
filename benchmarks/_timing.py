"""Timing one call again and again, shared by the benchmarks."""

import statistics
import time


def call_times(fn, repeats, warmup=3):
    """Seconds taken by each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed ones
    (compilation, caches, work arrays)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn, repeats, warmup=3):
    """The median of :func:`call_times`."""
    return statistics.median(call_times(fn, repeats, warmup))
