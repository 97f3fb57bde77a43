"""Where the dense kernels should stop looping and call BLAS.

    python benchmarks/bench_dense.py

For each product shape (batch × in × out), times the forward ``x @ w + b`` and the backward
products computed (1) by the Numba loops and (2) by BLAS through ``np.dot`` inside Numba,
and prints the medians, the faster path, and the current threshold ``LOOP_MAX_FLOPS`` with the
path the kernels take. One thread; medians of 7 rounds of repeated calls.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from minireptile.kernels import dense  # noqa: E402
from numba import njit  # noqa: E402

SHAPES = [(10, 1, 64), (10, 64, 1), (10, 16, 16), (10, 32, 32), (10, 64, 64), (25, 64, 64),
          (50, 64, 64), (10, 128, 128), (10, 256, 64), (50, 128, 128), (100, 256, 256)]


@njit(cache=True)
def _blas_forward(x, w, b, out):
    np.dot(x, w, out)
    out += b


@njit(cache=True)
def _blas_backward(x, w, dy, dw, dx):
    np.dot(x.T, dy, dw)
    np.dot(dy, w.T, dx)


@njit(cache=True)
def _loops_forward(x, w, b, out):
    dense._matmul_loops(x, w, out)
    out += b


@njit(cache=True)
def _loops_backward(x, w, dy, dw, dx):
    dense._matmul_loops(np.ascontiguousarray(x.T), dy, dw)
    dense._matmul_loops(dy, np.ascontiguousarray(w.T), dx)


def median_us(fn, *args, rounds=7):
    fn(*args)
    calls = 200
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main():
    rng = np.random.default_rng(0)
    print(f"LOOP_MAX_FLOPS = {dense.LOOP_MAX_FLOPS} multiply-adds (loops at or below, BLAS above)")
    print(f"{'m x k x n':>16} {'m·k·n':>9} | {'fwd loops':>9} {'fwd BLAS':>9} | "
          f"{'bwd loops':>9} {'bwd BLAS':>9} | faster   kernels use")
    for m, k, n in SHAPES:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        dy = rng.standard_normal((m, n)).astype(np.float32)
        out, dw, dx = np.empty((m, n), np.float32), np.empty_like(w), np.empty_like(x)
        fl = median_us(_loops_forward, x, w, b, out)
        fb = median_us(_blas_forward, x, w, b, out)
        bl = median_us(_loops_backward, x, w, dy, dw, dx)
        bb = median_us(_blas_backward, x, w, dy, dw, dx)
        faster = "loops" if fl + bl < fb + bb else "BLAS"
        used = "loops" if m * k * n <= dense.LOOP_MAX_FLOPS else "BLAS"
        print(f"{f'{m}x{k}x{n}':>16} {m * k * n:>9} | {fl:8.2f}µ {fb:8.2f}µ | "
              f"{bl:8.2f}µ {bb:8.2f}µ | {faster:<8} {used}")


if __name__ == "__main__":
    main()
