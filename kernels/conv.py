"""2-D convolution (cross-correlation, as in TensorFlow) in NHWC: forward and both gradients.

Shapes: ``x (batch, height, width, in_channels)``, ``w (kh, kw, in_channels, out_channels)``
(TensorFlow's kernel layout, so weights are exchangeable with ``tf.layers.conv2d``),
``b (out_channels,)``, ``y (batch, out_height, out_width, out_channels)``::

    forward    y[n, i, j, o] = b[o] + Σ_{a, c, ch} xp[n, i·s + a, j·s + c, ch] · w[a, c, ch, o]
    backward   dw[a, c, ch, o] = Σ_{n, i, j} xp[n, i·s + a, j·s + c, ch] · dy[n, i, j, o]
               db[o]           = Σ_{n, i, j} dy[n, i, j, o]
               dxp[n, i·s + a, j·s + c, ch] += Σ_o dy[n, i, j, o] · w[a, c, ch, o]

where ``xp`` is ``x`` zero-padded by TensorFlow's rule (:func:`output_size_and_padding`).

Method: im2col + BLAS. ``cols (batch·oh·ow, kh·kw·in)`` holds one receptive field per row,
so the forward pass is the single product ``cols @ w.reshape(kh·kw·in, out)``, the weight
gradient is ``colsᵀ @ dy`` and the input gradient is ``dy @ wᵀ`` scattered back (col2im).
Each product is one ``np.dot`` (OpenBLAS sgemm) inside a Numba function; the gather and
scatter are plain compiled loops. ``benchmarks/bench_cnn.py`` prints the GFLOP/s. Plain
loop products (as in :mod:`minireptile.kernels.dense`) lost to BLAS at every Omniglot and
Mini-ImageNet layer shape, by 2–4× forward, except the first Omniglot layer's weight gradient
(``9 × 64``: 0.12 against 0.18 ms at batch 10), too small a gain for a second code path. The
im2col matrix is kept for the backward pass (a recycled array, see :func:`recycled_empty`).

Why NHWC. (1) It is TensorFlow's layout: the kernel ``(kh, kw, in, out)`` reshapes, without a
copy, into the right-hand matrix of the product, and the product's ``(rows, out)`` result *is*
the NHWC output, so no transpose is needed on either pass, and ``Flatten`` reproduces TF's
order for free. (2) Measured (one thread, AMD EPYC / AVX2, the two variants interleaved,
medians of 300 forward+backward passes of a 3×3 stride-2 layer, 64→64 channels): an NCHW
im2col variant (``w (out, in·kh·kw) @ cols (in·kh·kw, rows)``, then a transpose of the
``(out, batch·oh·ow)`` result into ``(batch, out, oh, ow)``, and the mirror transposes
backward) does the same BLAS work plus those transposes and took 3.78 ms against NHWC's
3.01 ms at 10×14×14, 1.05 against 0.77 ms at 10×7×7 and 21.3 against 20.6 ms at 50×14×14.
(3) Per-channel batch-norm statistics in NHWC are column sums of a ``(rows, channels)``
matrix, which vectorise across channels in the inner loop.

Public functions check shapes and dtypes (float32 or float64, all alike) and return new
C-contiguous arrays (recycled from earlier calls once unreferenced: :func:`recycled_empty`);
``conv2d_backward`` can write ``dw``/``db`` into caller-provided arrays.
"""

import math
import sys
import threading
from collections import OrderedDict

import numpy as np
from numba import njit

from ..errors import InputError, describe_array

PADDINGS = ("same", "valid")

# Outputs, im2col matrices and gradients come from a per-thread pool of arrays that are handed
# out again only once nothing else references them: an array whose reference count is back to
# the pool's own references is provably unused (any view of it, a layer cache or a caller's
# variable holds a reference). Why: glibc returns freed multi-megabyte arrays to the OS, and on
# this kind of virtual machine touching them again costs a page fault per 4 KiB, measured at
# ~25 % of an Omniglot training step at batch 10 and about half of it at batch 50. Arrays under
# RECYCLE_MIN_BYTES come cheaply from malloc; at most RECYCLE_MAX_BYTES are pooled per thread.
RECYCLE_MIN_BYTES = 1 << 16
RECYCLE_MAX_BYTES = 256 << 20


class _Recycler(threading.local):
    def __init__(self):
        self.arrays = OrderedDict()  # (shape, dtype) -> list of arrays, least recent first
        self.nbytes = 0


_RECYCLER = _Recycler()


def _free_refcount():
    """What ``sys.getrefcount`` reports, in :func:`recycled_empty`'s loop, for an array that
    only the pool holds: 3 on CPython 3.10–3.13 (the list, the loop variable, the argument).
    Measured with the same loop rather than assumed, since interpreters count differently."""
    arrays = [np.empty(1)]
    for a in arrays:
        return sys.getrefcount(a)


_FREE_REFCOUNT = _free_refcount()


def recycled_empty(shape, dtype):
    """Like ``np.empty(shape, dtype)`` (C order), reusing a pooled array nobody holds any more."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes < RECYCLE_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    pool = _RECYCLER
    key = (shape, dtype)
    arrays = pool.arrays.get(key)
    if arrays is None:
        arrays = pool.arrays[key] = []
    pool.arrays.move_to_end(key)
    for a in arrays:
        if sys.getrefcount(a) == _FREE_REFCOUNT:  # no one outside the pool holds it
            return a
    while pool.nbytes + nbytes > RECYCLE_MAX_BYTES and len(pool.arrays) > 1:
        _, stale = pool.arrays.popitem(last=False)  # forget the least recently used shape
        pool.nbytes -= sum(a.nbytes for a in stale)
    a = np.empty(shape, dtype=dtype)
    if pool.nbytes + nbytes <= RECYCLE_MAX_BYTES:
        arrays.append(a)
        pool.nbytes += nbytes
    return a


def output_size_and_padding(size, kernel, stride, padding):
    """Output size and (before, after) padding along one axis, by TensorFlow's rule.

    ``same``: ``out = ceil(size / stride)``, total padding ``max((out − 1)·stride + kernel −
    size, 0)``, the odd pixel after (bottom/right): 28 with kernel 3, stride 2 gives 14 with
    padding (0, 1). ``valid``: ``out = floor((size − kernel) / stride) + 1``, no padding.

    Returns
    -------
    out, before, after : int

    Raises
    ------
    InputError
        ``valid`` with ``size < kernel``, or an unknown padding.
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return out, total // 2, total - total // 2
    if padding == "valid":
        if size < kernel:
            raise InputError(
                f"'valid' padding needs images at least as large as the kernel ({kernel}), "
                f"got size {size}"
            )
        return (size - kernel) // stride + 1, 0, 0
    raise InputError(f"padding must be one of {PADDINGS}, got {padding!r}")


def conv2d_geometry(x_shape, w_shape, strides, padding):
    """``(oh, ow, pad_top, pad_left)`` for an NHWC input and an HWIO kernel; checks shapes."""
    if len(x_shape) != 4:
        raise InputError(
            f"conv2d input must have shape (batch, height, width, channels), got shape "
            f"{tuple(x_shape)}"
        )
    kh, kw, cin, _ = w_shape
    if x_shape[3] != cin:
        raise InputError(
            f"conv2d input must have {cin} channels (batch, height, width, {cin}), got shape "
            f"{tuple(x_shape)}"
        )
    try:
        oh, pt, _ = output_size_and_padding(x_shape[1], kh, strides, padding)
        ow, pl, _ = output_size_and_padding(x_shape[2], kw, strides, padding)
    except InputError as err:
        raise InputError(f"conv2d input of shape {tuple(x_shape)} with a {kh}x{kw} kernel: "
                         f"{err}") from None
    return oh, ow, pt, pl


def _check_arrays(**arrays):
    dtype = None
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise InputError(f"conv2d {name} must be a float32/float64 array, got {describe_array(a)}")
        if dtype is not None and a.dtype != dtype:
            raise InputError(f"conv2d arrays must share one dtype; {name} is {a.dtype}, not {dtype}")
        dtype = a.dtype


# Both loops index x / dx as flat arrays: when a kernel row lies wholly inside the image its
# kw·c values are contiguous in NHWC, and one plain loop copies them (measured 10–40 % faster
# than a loop per pixel; the difference is largest for few channels).


@njit(cache=True)
def _im2col(x, kh, kw, s, pt, pl, oh, ow, cols):
    n, h, w, c = x.shape
    xf = x.reshape(x.size)
    span = kw * c
    row = 0
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                j0 = j * s - pl
                inside = j0 >= 0 and j0 + kw <= w
                for a in range(kh):
                    ii = i * s - pt + a
                    col = a * span
                    if ii < 0 or ii >= h:
                        for t in range(span):
                            cols[row, col + t] = 0
                    elif inside:
                        base = ((b * h + ii) * w + j0) * c
                        for t in range(span):
                            cols[row, col + t] = xf[base + t]
                    else:
                        for d in range(kw):
                            jj = j0 + d
                            if 0 <= jj < w:
                                base = ((b * h + ii) * w + jj) * c
                                for ch in range(c):
                                    cols[row, col + d * c + ch] = xf[base + ch]
                            else:
                                for ch in range(c):
                                    cols[row, col + d * c + ch] = 0
                row += 1


@njit(cache=True)
def _col2im(dcols, kh, kw, s, pt, pl, oh, ow, dx):
    n, h, w, c = dx.shape
    dx[...] = 0
    df = dx.reshape(dx.size)
    span = kw * c
    row = 0
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                j0 = j * s - pl
                inside = j0 >= 0 and j0 + kw <= w
                for a in range(kh):
                    ii = i * s - pt + a
                    if ii < 0 or ii >= h:
                        continue
                    col = a * span
                    if inside:
                        base = ((b * h + ii) * w + j0) * c
                        for t in range(span):
                            df[base + t] += dcols[row, col + t]
                    else:
                        for d in range(kw):
                            jj = j0 + d
                            if 0 <= jj < w:
                                base = ((b * h + ii) * w + jj) * c
                                for ch in range(c):
                                    df[base + ch] += dcols[row, col + d * c + ch]
                row += 1


@njit(cache=True)
def _gather_and_multiply(x, w2, b, kh, kw, s, pt, pl, oh, ow, cols, y2):
    _im2col(x, kh, kw, s, pt, pl, oh, ow, cols)
    np.dot(cols, w2, y2)
    for r in range(y2.shape[0]):
        for o in range(y2.shape[1]):
            y2[r, o] += b[o]


@njit(cache=True)
def _backward(cols, w2, dy2, db, kh, kw, s, pt, pl, oh, ow, dcols, dx, need_dx):
    total = np.zeros(db.shape[0])  # float64 accumulator: up to ~10⁵ terms
    for r in range(dy2.shape[0]):
        for o in range(dy2.shape[1]):
            total[o] += dy2[r, o]
    for o in range(db.shape[0]):
        db[o] = total[o]
    if need_dx:
        np.dot(dy2, w2.T, dcols)
        _col2im(dcols, kh, kw, s, pt, pl, oh, ow, dx)


def conv2d_forward(x, w, b, strides=1, padding="valid"):
    """Convolution forward pass.

    Parameters
    ----------
    x : ndarray, shape (batch, height, width, in_channels)
    w : ndarray, shape (kh, kw, in_channels, out_channels)
    b : ndarray, shape (out_channels,)
    strides : int
        The same stride along both axes.
    padding : {"same", "valid"}

    Returns
    -------
    y : ndarray, shape (batch, out_height, out_width, out_channels)
    cache : tuple
        What :func:`conv2d_backward` needs (the im2col matrix and the geometry).
    """
    _check_arrays(x=x, w=w, b=b)
    oh, ow, pt, pl = conv2d_geometry(x.shape, w.shape, strides, padding)
    kh, kw, cin, cout = w.shape
    n = x.shape[0]
    x = np.ascontiguousarray(x)
    w2 = np.ascontiguousarray(w).reshape(kh * kw * cin, cout)
    cols = recycled_empty((n * oh * ow, kh * kw * cin), x.dtype)
    y = recycled_empty((n, oh, ow, cout), x.dtype)
    _gather_and_multiply(
        x, w2, np.ascontiguousarray(b), kh, kw, strides, pt, pl, oh, ow, cols,
        y.reshape(n * oh * ow, cout),
    )
    return y, (cols, x.shape, strides, pt, pl, oh, ow)


def conv2d_backward(w, cache, dy, need_dx=True, dw=None, db=None):
    """Gradients of :func:`conv2d_forward` given ``dy = dL/dy``.

    Parameters
    ----------
    w : ndarray, shape (kh, kw, in_channels, out_channels)
    cache : tuple
        From :func:`conv2d_forward`.
    dy : ndarray, shape (batch, out_height, out_width, out_channels)
    need_dx : bool
        Skip the input gradient (the first layer of a network needs none).
    dw, db : ndarray, optional
        C-contiguous arrays of ``w``'s and ``(out_channels,)`` shape to write into.

    Returns
    -------
    dw : ndarray, shape (kh, kw, in_channels, out_channels)
    db : ndarray, shape (out_channels,)
    dx : ndarray, shape (batch, height, width, in_channels), or None if not ``need_dx``
    """
    cols, x_shape, s, pt, pl, oh, ow = cache
    kh, kw, cin, cout = w.shape
    expected = (x_shape[0], oh, ow, cout)
    if dy.shape != expected:
        raise InputError(f"conv2d dy must have shape {expected}, got shape {dy.shape}")
    dtype = cols.dtype
    dy2 = np.ascontiguousarray(dy, dtype=dtype).reshape(-1, cout)
    w2 = np.ascontiguousarray(w).reshape(kh * kw * cin, cout)
    dw_out, db_out = dw, db
    if dw is None or not dw.flags.c_contiguous or dw.dtype != dtype:
        dw = np.empty(w.shape, dtype=dtype)  # dw.reshape below must be a view
    if db is None or db.dtype != dtype:
        db = np.empty(cout, dtype=dtype)
    if need_dx:
        dcols = recycled_empty(cols.shape, dtype)
        dx = recycled_empty(x_shape, dtype)
    else:
        dcols = np.empty((0, 0), dtype=dtype)
        dx = np.empty((0, 0, 0, 0), dtype=dtype)
    # dw = colsᵀ·dy through NumPy's own BLAS call: for this transposed product it measured
    # 1.2–2.2× faster than np.dot inside Numba (e.g. 8.1 against 17.4 ms for the second
    # Mini-ImageNet layer at batch 10); the other two products are on par.
    np.dot(cols.T, dy2, out=dw.reshape(w2.shape))
    _backward(cols, w2, dy2, db, kh, kw, s, pt, pl, oh, ow, dcols, dx, need_dx)
    if dw_out is not None and dw_out is not dw:
        dw_out[...] = dw
        dw = dw_out
    if db_out is not None and db_out is not db:
        db_out[...] = db
        db = db_out
    return dw, db, (dx if need_dx else None)


def conv2d_apply_cached(cache, w, b):
    """:func:`conv2d_forward` of the cached input with other weights ``w`` and bias ``b``,
    reusing the cached im2col matrix (a Hessian-vector product needs ``x ∗ V_w + V_b``).

    Returns ``y``, shape (batch, out_height, out_width, out_channels), a new array.
    """
    cols, x_shape, _, _, _, oh, ow = cache
    cout = w.shape[3]
    y2 = np.dot(cols, np.ascontiguousarray(w, dtype=cols.dtype).reshape(-1, cout))
    y2 += b
    return y2.reshape(x_shape[0], oh, ow, cout)


def conv2d_input_gradient(w, cache, dy):
    """The input-gradient part of :func:`conv2d_backward` alone: ``dy`` correlated back
    through ``w`` (col2im of ``dy·wᵀ``), for a cached geometry. Returns a new array of the
    input's shape (batch, height, width, in_channels)."""
    cols, x_shape, s, pt, pl, oh, ow = cache
    kh, kw, cin, cout = w.shape
    dtype = cols.dtype
    dy2 = np.ascontiguousarray(dy, dtype=dtype).reshape(-1, cout)
    dcols = np.dot(dy2, np.ascontiguousarray(w, dtype=dtype).reshape(kh * kw * cin, cout).T)
    dx = np.empty(x_shape, dtype=dtype)
    _col2im(dcols, kh, kw, s, pt, pl, oh, ow, dx)
    return dx


# ---------------------------------------------------------------------------------------------
# References: explicit zero padding, then one small tensor contraction per output position.


def _pad_reference(x, kh, kw, strides, padding):
    oh, pt, pb = output_size_and_padding(x.shape[1], kh, strides, padding)
    ow, pl, pr = output_size_and_padding(x.shape[2], kw, strides, padding)
    n, h, wd, c = x.shape
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=x.dtype)
    xp[:, pt : pt + h, pl : pl + wd, :] = x
    return xp, oh, ow, pt, pl


def conv2d_forward_reference(x, w, b, strides=1, padding="valid"):
    """NumPy reference for :func:`conv2d_forward`; returns ``y`` only."""
    kh, kw, _, cout = w.shape
    xp, oh, ow, _, _ = _pad_reference(x, kh, kw, strides, padding)
    y = np.empty((x.shape[0], oh, ow, cout), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * strides : i * strides + kh, j * strides : j * strides + kw, :]
            # Σ over (a, c, ch): patch[n, a, c, ch] · w[a, c, ch, o]
            y[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return y


def conv2d_backward_reference(x, w, dy, strides=1, padding="valid"):
    """NumPy reference for :func:`conv2d_backward`; returns ``(dw, db, dx)``."""
    kh, kw, _, _ = w.shape
    xp, oh, ow, pt, pl = _pad_reference(x, kh, kw, strides, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(oh):
        for j in range(ow):
            rows = slice(i * strides, i * strides + kh)
            cols = slice(j * strides, j * strides + kw)
            g = dy[:, i, j, :]  # (batch, out)
            dw += np.tensordot(xp[:, rows, cols, :], g, axes=([0], [0]))
            dxp[:, rows, cols, :] += np.tensordot(g, w, axes=([1], [3]))
    db = dy.sum(axis=(0, 1, 2))
    dx = dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2], :]
    return dw, db, np.ascontiguousarray(dx)
