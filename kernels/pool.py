"""Max-pooling in NHWC with TensorFlow's padding rule: forward and backward.

Shapes: ``x (batch, height, width, channels)``, ``y (batch, out_height, out_width, channels)``
with ``out`` and padding from :func:`minireptile.kernels.conv.output_size_and_padding`
(2×2, stride 2, ``same``: 21 → 11, padded by one row/column at the bottom/right)::

    forward    y[n, i, j, c] = max over the window's *real* cells of x[n, ·, ·, c]
               (padded cells never win, as in TensorFlow)
    backward   dx[n, ii, jj, c] += dy[n, i, j, c]   at the window's argmax (ii, jj) only

Ties: the argmax is the *first* maximal cell in row-major order within the window (top row
first, then left to right); the reference uses ``np.argmax``, which has the same rule.
Overlapping windows (stride < pool size) accumulate their gradients.

The forward pass stores the argmax as a flat input index (``int64``) per output, so the backward
pass is a single scatter.
"""

import numpy as np
from numba import njit

from ..errors import InputError, describe_array
from .conv import output_size_and_padding, recycled_empty


def pool_geometry(x_shape, pool_size, strides, padding):
    """``(oh, ow, pad_top, pad_left)`` for an NHWC input; checks the rank."""
    if len(x_shape) != 4:
        raise InputError(
            f"max-pool input must have shape (batch, height, width, channels), got shape "
            f"{tuple(x_shape)}"
        )
    try:
        oh, pt, _ = output_size_and_padding(x_shape[1], pool_size, strides, padding)
        ow, pl, _ = output_size_and_padding(x_shape[2], pool_size, strides, padding)
    except InputError as err:
        raise InputError(f"max-pool input of shape {tuple(x_shape)}: {err}") from None
    return oh, ow, pt, pl


@njit(cache=True)
def _forward(x, k, s, pt, pl, y, arg):
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    # Channels innermost: each window cell is one contiguous run of c values (vectorises).
    for b in range(n):
        for i in range(oh):
            i0 = max(i * s - pt, 0)
            i1 = min(i * s - pt + k, h)
            for j in range(ow):
                j0 = max(j * s - pl, 0)
                j1 = min(j * s - pl + k, w)
                first = (i0 * w + j0) * c
                for ch in range(c):
                    y[b, i, j, ch] = x[b, i0, j0, ch]
                    arg[b, i, j, ch] = first + ch
                for ii in range(i0, i1):
                    for jj in range(j0, j1):
                        if ii == i0 and jj == j0:
                            continue
                        where = (ii * w + jj) * c
                        for ch in range(c):
                            v = x[b, ii, jj, ch]
                            if v > y[b, i, j, ch]:  # strict: the first maximum keeps the tie
                                y[b, i, j, ch] = v
                                arg[b, i, j, ch] = where + ch


@njit(cache=True)
def _backward(dy, arg, dx):
    n = dx.shape[0]
    dx[...] = 0
    plane = dx.size // n
    flat = dx.reshape(dx.size)
    _, oh, ow, c = dy.shape
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    flat[b * plane + arg[b, i, j, ch]] += dy[b, i, j, ch]


def maxpool_forward(x, pool_size=2, strides=2, padding="same"):
    """Max-pooling forward pass.

    Parameters
    ----------
    x : ndarray, shape (batch, height, width, channels), float32 or float64
    pool_size, strides : int
        Square window and equal strides.
    padding : {"same", "valid"}

    Returns
    -------
    y : ndarray, shape (batch, out_height, out_width, channels)
    cache : tuple
        ``(argmax, x_shape)`` for :func:`maxpool_backward`.
    """
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise InputError(f"max-pool input must be a float32/float64 array, got {describe_array(x)}")
    oh, ow, pt, pl = pool_geometry(x.shape, pool_size, strides, padding)
    x = np.ascontiguousarray(x)
    y = recycled_empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
    arg = recycled_empty(y.shape, np.int64)
    _forward(x, pool_size, strides, pt, pl, y, arg)
    return y, (arg, x.shape)


def maxpool_backward(cache, dy):
    """Gradient of :func:`maxpool_forward`: ``dy`` routed to each window's argmax.

    Parameters
    ----------
    cache : tuple
        From :func:`maxpool_forward`.
    dy : ndarray, shape (batch, out_height, out_width, channels)

    Returns
    -------
    dx : ndarray, shape (batch, height, width, channels)
    """
    arg, x_shape = cache
    if dy.shape != arg.shape:
        raise InputError(f"max-pool dy must have shape {arg.shape}, got shape {dy.shape}")
    dx = recycled_empty(x_shape, dy.dtype)
    _backward(np.ascontiguousarray(dy), arg, dx)
    return dx


# ---------------------------------------------------------------------------------------------
# References: pad with −∞, then np.argmax over each window, one output position at a time.


def _pad_reference(x, pool_size, strides, padding):
    oh, pt, pb = output_size_and_padding(x.shape[1], pool_size, strides, padding)
    ow, pl, pr = output_size_and_padding(x.shape[2], pool_size, strides, padding)
    n, h, w, c = x.shape
    xp = np.full((n, h + pt + pb, w + pl + pr, c), -np.inf, dtype=x.dtype)
    xp[:, pt : pt + h, pl : pl + w, :] = x
    return xp, oh, ow, pt, pl


def maxpool_forward_reference(x, pool_size=2, strides=2, padding="same"):
    """NumPy reference for :func:`maxpool_forward`; returns ``y`` only."""
    xp, oh, ow, _, _ = _pad_reference(x, pool_size, strides, padding)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * strides : i * strides + pool_size, j * strides : j * strides + pool_size]
            y[:, i, j, :] = window.max(axis=(1, 2))
    return y


def maxpool_backward_reference(x, dy, pool_size=2, strides=2, padding="same"):
    """NumPy reference for :func:`maxpool_backward`; returns ``dx``."""
    xp, oh, ow, pt, pl = _pad_reference(x, pool_size, strides, padding)
    n, _, _, c = x.shape
    dxp = np.zeros_like(xp)
    batch = np.arange(n)[:, None]
    chan = np.arange(c)[None, :]
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * strides : i * strides + pool_size, j * strides : j * strides + pool_size]
            kh, kw = window.shape[1:3]
            first = np.argmax(window.reshape(n, kh * kw, c), axis=1)  # (n, c), first max wins
            rows = i * strides + first // kw
            cols = j * strides + first % kw
            np.add.at(dxp, (batch, rows, cols, chan), dy[:, i, j, :])
    return dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2], :]
