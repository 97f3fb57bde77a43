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
LOOP_MAX_FLOPS = 1 << 16

# Placeholder passed for dx when the caller does not need it (Numba needs an array).
_NO_DX = {np.dtype(t): np.empty((0, 0), dtype=t) for t in (np.float32, np.float64)}

# Reassociation lets LLVM vectorise the reductions; results differ from BLAS only by rounding.
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST)
def _matmul_loops(a, b, out):
    """``out = a @ b`` as i-p-j loops: the innermost loop runs along contiguous rows of ``b``
    and ``out``, which the compiler vectorises (a dot-product order would need a reduction).
    Four rows of ``b`` are folded into each pass so ``out`` is loaded and stored a quarter as
    often: at these sizes the stores, not the multiplications, set the pace."""
    m, k = a.shape
    n = b.shape[1]
    if n == 1:
        # A matrix-vector product: one dot product per row, summed along contiguous rows.
        for i in range(m):
            acc = a[i, 0] * 0
            for p in range(k):
                acc += a[i, p] * b[p, 0]
            out[i, 0] = acc
        return
    k4 = k - k % 4
    for i in range(m):
        for j in range(n):
            out[i, j] = 0
        for p in range(0, k4, 4):
            a0 = a[i, p]
            a1 = a[i, p + 1]
            a2 = a[i, p + 2]
            a3 = a[i, p + 3]
            for j in range(n):
                out[i, j] += a0 * b[p, j] + a1 * b[p + 1, j] + a2 * b[p + 2, j] + a3 * b[p + 3, j]
        for p in range(k4, k):
            av = a[i, p]
            for j in range(n):
                out[i, j] += av * b[p, j]


@njit(cache=True, fastmath=_FAST)
def _forward(x, w, b, out):
    m, k = x.shape
    n = w.shape[1]
    if m * k * n > LOOP_MAX_FLOPS:
        np.dot(x, w, out)
    else:
        _matmul_loops(x, w, out)
    for i in range(m):
        for j in range(n):
            out[i, j] += b[j]


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
    # Transposed copies are cheap next to the products and keep both in the vectorised order.
    _matmul_loops(np.ascontiguousarray(x.T), dy, dw)
    if need_dx:
        _matmul_loops(dy, np.ascontiguousarray(w.T), dx)


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


def dense_backward(x, w, dy, dw=None, db=None, need_dx=True):
    """Gradients of ``y = x @ w + b`` given ``dy = dL/dy``.

    Parameters
    ----------
    x : ndarray, shape (batch, in_features)
    w : ndarray, shape (in_features, out_features)
    dy : ndarray, shape (batch, out_features)
    dw : ndarray, shape (in_features, out_features), optional
        C-contiguous array to write dL/dw into (e.g. a view into a flat gradient);
        allocated when omitted.
    db : ndarray, shape (out_features,), optional
        Likewise for dL/db.
    need_dx : bool
        Skip the input gradient (e.g. for a network's first layer).

    Returns
    -------
    dw : ndarray, shape (in_features, out_features)
    db : ndarray, shape (out_features,)
    dx : ndarray, shape (batch, in_features), or None if not ``need_dx``
    """
    x, w, dy = _contiguous(x, w, dy)
    if dw is None:
        dw = np.empty_like(w)
    if db is None:
        db = np.empty(w.shape[1], dtype=w.dtype)
    dx = np.empty_like(x) if need_dx else _NO_DX[x.dtype]
    _backward(x, w, dy, dw, db, dx, need_dx)
    return dw, db, (dx if need_dx else None)


def dense_forward_reference(x, w, b):
    """NumPy reference for :func:`dense_forward`."""
    return x @ w + b


def dense_backward_reference(x, w, dy, need_dx=True):
    """NumPy reference for :func:`dense_backward`: ``(xᵀ·dy, Σᵢ dy, dy·wᵀ)``."""
    return x.T @ dy, dy.sum(axis=0), (dy @ w.T if need_dx else None)
