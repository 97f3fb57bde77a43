"""Matrix products of a dense (fully connected) layer ``y = x @ w + b``.

Forward, and both backward products (``dw = xᵀ·dy``, ``dx = dy·wᵀ``) with ``db = Σ dy``.

Below ``LOOP_MAX_FLOPS`` multiply-adds a product runs as plain loops compiled by Numba; above
it the kernel calls BLAS (``np.dot`` inside Numba). Tiny products are dominated by call
overhead, which the loops avoid; large ones are dominated by arithmetic, where BLAS's blocking
wins. The crossover was measured with ``benchmarks/bench_dense.py`` (its output prints it).

Public functions take arrays of one float dtype (float32 or float64), any memory layout, and
return new C-contiguous arrays.
"""

import numpy as np
from numba import njit

# m·k·n multiply-adds at or below which the loop kernels beat BLAS (benchmarks/bench_dense.py).
LOOP_MAX_FLOPS = 1 << 17

# Reassociation lets LLVM vectorise the reductions; results differ from BLAS only by rounding.
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST)
def _forward(x, w, b, out):
    m, k = x.shape
    n = w.shape[1]
    if m * k * n > LOOP_MAX_FLOPS:
        np.dot(x, w, out)
        for i in range(m):
            for j in range(n):
                out[i, j] += b[j]
        return
    for i in range(m):
        for j in range(n):
            out[i, j] = b[j]
        for p in range(k):
            xv = x[i, p]
            for j in range(n):
                out[i, j] += xv * w[p, j]


@njit(cache=True, fastmath=_FAST)
def _backward(x, w, dy, dw, db, dx, need_dx):
    m, k = x.shape
    n = w.shape[1]
    for j in range(n):
        db[j] = 0
    for i in range(m):
        for j in range(n):
            db[j] += dy[i, j]
    if m * k * n > LOOP_MAX_FLOPS:
        np.dot(x.T, dy, dw)
        if need_dx:
            np.dot(dy, w.T, dx)
        return
    for p in range(k):
        for j in range(n):
            dw[p, j] = 0
    for i in range(m):
        for p in range(k):
            xv = x[i, p]
            for j in range(n):
                dw[p, j] += xv * dy[i, j]
    if need_dx:
        for i in range(m):
            for p in range(k):
                acc = dy[i, 0] * 0
                for j in range(n):
                    acc += dy[i, j] * w[p, j]
                dx[i, p] = acc


def _contiguous(*arrays):
    return [np.ascontiguousarray(a) for a in arrays]


def dense_forward(x, w, b):
    """``y = x @ w + b``.

    Parameters
    ----------
    x : ndarray, shape (batch, in_features)
    w : ndarray, shape (in_features, out_features)
    b : ndarray, shape (out_features,)

    Returns
    -------
    y : ndarray, shape (batch, out_features)
    """
    x, w, b = _contiguous(x, w, b)
    out = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    _forward(x, w, b, out)
    return out


def dense_backward(x, w, dy, need_dx=True):
    """Gradients of ``y = x @ w + b`` given ``dy = dL/dy``.

    Parameters
    ----------
    x : ndarray, shape (batch, in_features)
    w : ndarray, shape (in_features, out_features)
    dy : ndarray, shape (batch, out_features)
    need_dx : bool
        Skip the input gradient (e.g. for a network's first layer).

    Returns
    -------
    dw : ndarray, shape (in_features, out_features)
    db : ndarray, shape (out_features,)
    dx : ndarray, shape (batch, in_features), or None if not ``need_dx``
    """
    x, w, dy = _contiguous(x, w, dy)
    dw = np.empty_like(w)
    db = np.empty(w.shape[1], dtype=w.dtype)
    dx = np.empty_like(x) if need_dx else np.empty((0, 0), dtype=x.dtype)
    _backward(x, w, dy, dw, db, dx, need_dx)
    return dw, db, (dx if need_dx else None)


def dense_forward_reference(x, w, b):
    """NumPy reference for :func:`dense_forward`."""
    return x @ w + b


def dense_backward_reference(x, w, dy, need_dx=True):
    """NumPy reference for :func:`dense_backward`."""
    return x.T @ dy, dy.sum(axis=0), (dy @ w.T if need_dx else None)
