"""Batch normalisation in training mode over the channel (last) axis, with an optional fused ReLU.

Shapes: ``x (..., channels)``, usually NHWC ``(batch, height, width, channels)``; statistics
are taken over every axis but the last, ``m = batch·height·width`` values per channel::

    forward    μ = mean(x),  σ² = mean((x − μ)²)  (biased, as TensorFlow in training mode)
               x̂ = (x − μ) / √(σ² + ε),   z = γ·x̂ + β,   y = relu(z) if relu else z
    backward   g = dy · [z > 0] if relu else dy
               dβ = Σ g,   dγ = Σ g·x̂
               dx = γ / (m·√(σ² + ε)) · (m·g − dβ − x̂·dγ)

ε defaults to 1e-3, TensorFlow's ``tf.layers.batch_normalization`` default. The reference
implementation normalises with batch statistics at training *and* test time, so no running
averages are kept. With ``m = 1`` (one example of size 1×1) ``x̂ = 0`` and ``dx = 0``.

Why a fused ReLU: both CNNs apply ReLU right after batch norm. Fusing saves one pass over the
activations forward and one backward, plus the Python dispatch of a separate layer; the
ReLU mask is read from the saved output (``y > 0`` iff ``z > 0``). ``benchmarks/bench_cnn.py``
prints fused against unfused timings.

The statistics are computed in two passes (mean, then centred squares) so a large common
offset does not cancel catastrophically, and all per-channel sums accumulate in float64.
"""

import math

import numpy as np
from numba import njit

from ..errors import InputError, describe_array
from .conv import recycled_empty

EPSILON = 1e-3


@njit(cache=True)
def _forward(x, gamma, beta, eps, relu, mean, inv, y):
    m, c = x.shape
    mean[:] = 0  # float64 accumulators: sums over up to ~10⁵ float32 values
    for r in range(m):
        for k in range(c):
            mean[k] += x[r, k]
    for k in range(c):
        mean[k] /= m
    var = np.zeros(c)
    for r in range(m):
        for k in range(c):
            d = x[r, k] - mean[k]
            var[k] += d * d
    for k in range(c):
        inv[k] = 1 / math.sqrt(var[k] / m + eps)
    for r in range(m):
        for k in range(c):
            z = gamma[k] * ((x[r, k] - mean[k]) * inv[k]) + beta[k]
            if relu and z < 0:
                z = 0
            y[r, k] = z


@njit(cache=True)
def _backward(x, mean, inv, y, gamma, dy, relu, dgamma, dbeta, dx, need_dx):
    m, c = x.shape
    sum_g = np.zeros(c)  # float64 accumulators, as in the forward pass
    sum_gx = np.zeros(c)
    for r in range(m):
        for k in range(c):
            g = dy[r, k]
            if relu and not y[r, k] > 0:
                g = 0
            sum_g[k] += g
            sum_gx[k] += g * ((x[r, k] - mean[k]) * inv[k])
    for k in range(c):
        dbeta[k] = sum_g[k]
        dgamma[k] = sum_gx[k]
    if not need_dx:
        return
    scale = np.empty(c)
    for k in range(c):
        scale[k] = gamma[k] * inv[k] / m
    for r in range(m):
        for k in range(c):
            g = dy[r, k]
            if relu and not y[r, k] > 0:
                g = 0
            xhat = (x[r, k] - mean[k]) * inv[k]
            dx[r, k] = scale[k] * (m * g - sum_g[k] - xhat * sum_gx[k])


def _check(x, gamma, beta):
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64) or x.ndim < 2:
        raise InputError(
            f"batch norm input must be a float32/float64 array of shape (..., channels), "
            f"got {describe_array(x)}"
        )
    c = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if not isinstance(p, np.ndarray) or p.shape != (c,) or p.dtype != x.dtype:
            raise InputError(
                f"batch norm {name} must be a {x.dtype} array of shape ({c},), "
                f"got {describe_array(p)}"
            )


def batchnorm_forward(x, gamma, beta, eps=EPSILON, relu=False):
    """Normalise ``x`` with its own per-channel statistics, scale, shift, optionally ReLU.

    Parameters
    ----------
    x : ndarray, shape (..., channels)
    gamma, beta : ndarray, shape (channels,)
    eps : float
    relu : bool
        Apply ``max(·, 0)`` to the result (fused).

    Returns
    -------
    y : ndarray, x's shape
    cache : tuple
        ``(x, mean, inv_std, y, relu)`` for :func:`batchnorm_backward`.
    """
    _check(x, gamma, beta)
    c = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    y = recycled_empty(x2.shape, x2.dtype)
    mean = np.empty(c)
    inv = np.empty(c)
    _forward(x2, gamma, beta, eps, relu, mean, inv, y)
    y = y.reshape(x.shape)
    # x̂ is recomputed from x in the backward pass rather than stored: one array fewer to
    # allocate and write, and x is kept alive by the previous layer anyway.
    return y, (x2, mean, inv, y, relu)


def batchnorm_backward(gamma, cache, dy, need_dx=True, dgamma=None, dbeta=None):
    """Gradients of :func:`batchnorm_forward` given ``dy = dL/dy``.

    Parameters
    ----------
    gamma : ndarray, shape (channels,)
    cache : tuple
        From :func:`batchnorm_forward`.
    dy : ndarray, the forward output's shape
    need_dx : bool
    dgamma, dbeta : ndarray, shape (channels,), optional
        Arrays to write into.

    Returns
    -------
    dgamma, dbeta : ndarray, shape (channels,)
    dx : ndarray, dy's shape, or None if not ``need_dx``
    """
    x2, mean, inv, y, relu = cache
    if dy.shape != y.shape:
        raise InputError(f"batch norm dy must have shape {y.shape}, got shape {dy.shape}")
    c = x2.shape[1]
    dtype = x2.dtype
    dy2 = np.ascontiguousarray(dy, dtype=dtype).reshape(-1, c)
    dgamma = np.empty(c, dtype=dtype) if dgamma is None else dgamma
    dbeta = np.empty(c, dtype=dtype) if dbeta is None else dbeta
    dx = recycled_empty(x2.shape, dtype) if need_dx else np.empty((0, 0), dtype=dtype)
    _backward(x2, mean, inv, y.reshape(-1, c), gamma, dy2, relu, dgamma, dbeta, dx, need_dx)
    return dgamma, dbeta, (dx.reshape(dy.shape) if need_dx else None)


# ---------------------------------------------------------------------------------------------
# R-operator (directional derivatives along parameters (V_γ, V_β) and input rx), for
# Hessian-vector products. Per channel, with means over the m rows:
#   rx̂ = inv·(rx − mean(rx) − x̂·mean(x̂·rx)),   r(inv) = −inv²·mean(x̂·rx)
#   rz = V_γ·x̂ + γ·rx̂ + V_β,   ry = [z > 0]·rz with the fused ReLU
# and with g = [z > 0]·dy, rg = [z > 0]·rdy, core = g − mean(g) − x̂·mean(g·x̂) (dx = γ·inv·core):
#   rdβ = Σ rg,   rdγ = Σ (rg·x̂ + g·rx̂),
#   rdx = (V_γ·inv + γ·r(inv))·core + γ·inv·(rg − mean(rg) − rx̂·mean(g·x̂) − x̂·mean(rg·x̂ + g·rx̂))


@njit(cache=True)
def _forward_r(x, mean, inv, y, gamma, vgamma, vbeta, rx, relu, rxhat, xhat_rx, ry):
    m, c = x.shape
    sum_rx = np.zeros(c)
    sum_xrx = np.zeros(c)
    for r in range(m):
        for k in range(c):
            sum_rx[k] += rx[r, k]
            sum_xrx[k] += (x[r, k] - mean[k]) * inv[k] * rx[r, k]
    for k in range(c):
        xhat_rx[k] = sum_xrx[k] / m
    for r in range(m):
        for k in range(c):
            xh = (x[r, k] - mean[k]) * inv[k]
            rxh = inv[k] * (rx[r, k] - sum_rx[k] / m - xh * xhat_rx[k])
            rxhat[r, k] = rxh
            rz = vgamma[k] * xh + gamma[k] * rxh + vbeta[k]
            if relu and not y[r, k] > 0:
                rz = 0
            ry[r, k] = rz


@njit(cache=True)
def _backward_r(x, mean, inv, y, gamma, vgamma, rxhat, xhat_rx, dy, rdy, relu, rdgamma, rdbeta,
                rdx, need_dx):
    m, c = x.shape
    sum_g = np.zeros(c)
    sum_gx = np.zeros(c)
    sum_rg = np.zeros(c)
    sum_rgx = np.zeros(c)
    for r in range(m):
        for k in range(c):
            if relu and not y[r, k] > 0:
                continue
            xh = (x[r, k] - mean[k]) * inv[k]
            sum_g[k] += dy[r, k]
            sum_gx[k] += dy[r, k] * xh
            sum_rg[k] += rdy[r, k]
            sum_rgx[k] += rdy[r, k] * xh + dy[r, k] * rxhat[r, k]
    for k in range(c):
        rdbeta[k] = sum_rg[k]
        rdgamma[k] = sum_rgx[k]
    if not need_dx:
        return
    for k in range(c):
        sum_g[k] /= m
        sum_gx[k] /= m
        sum_rg[k] /= m
        sum_rgx[k] /= m
    for r in range(m):
        for k in range(c):
            g = dy[r, k]
            rg = rdy[r, k]
            if relu and not y[r, k] > 0:
                g = 0
                rg = 0
            xh = (x[r, k] - mean[k]) * inv[k]
            core = g - sum_g[k] - xh * sum_gx[k]
            rcore = rg - sum_rg[k] - rxhat[r, k] * sum_gx[k] - xh * sum_rgx[k]
            rinv = -inv[k] * xhat_rx[k] * inv[k]
            rdx[r, k] = ((vgamma[k] * inv[k] + gamma[k] * rinv) * core
                         + gamma[k] * inv[k] * rcore)


def batchnorm_forward_r(cache, gamma, vgamma, vbeta, rx):
    """Directional derivative of :func:`batchnorm_forward`'s output.

    Parameters
    ----------
    cache : tuple
        From :func:`batchnorm_forward` at the same ``gamma``.
    gamma, vgamma, vbeta : ndarray, shape (channels,)
        γ and the direction's (V_γ, V_β).
    rx : ndarray, the input's shape
        The input's directional derivative.

    Returns
    -------
    ry : ndarray, the input's shape
    rcache : tuple
        What :func:`batchnorm_backward_r` needs.
    """
    x2, mean, inv, y, relu = cache
    c = x2.shape[1]
    dtype = x2.dtype
    rx2 = np.ascontiguousarray(rx, dtype=dtype).reshape(-1, c)
    rxhat = recycled_empty(x2.shape, dtype)
    ry = recycled_empty(x2.shape, dtype)
    xhat_rx = np.empty(c)
    _forward_r(x2, mean, inv, y.reshape(-1, c), gamma, vgamma, vbeta, rx2, relu, rxhat, xhat_rx,
               ry)
    return ry.reshape(y.shape), (rxhat, xhat_rx)


def batchnorm_backward_r(gamma, vgamma, cache, rcache, dy, rdy, need_dx=True, rdgamma=None,
                         rdbeta=None):
    """Directional derivatives of :func:`batchnorm_backward`'s gradients, given ``dy`` and
    its derivative ``rdy``.

    Returns
    -------
    rdgamma, rdbeta : ndarray, shape (channels,)
    rdx : ndarray, dy's shape, or None if not ``need_dx``
    """
    x2, mean, inv, y, relu = cache
    rxhat, xhat_rx = rcache
    c = x2.shape[1]
    dtype = x2.dtype
    dy2 = np.ascontiguousarray(dy, dtype=dtype).reshape(-1, c)
    rdy2 = np.ascontiguousarray(rdy, dtype=dtype).reshape(-1, c)
    rdgamma = np.empty(c, dtype=dtype) if rdgamma is None else rdgamma
    rdbeta = np.empty(c, dtype=dtype) if rdbeta is None else rdbeta
    rdx = recycled_empty(x2.shape, dtype) if need_dx else np.empty((0, 0), dtype=dtype)
    _backward_r(x2, mean, inv, y.reshape(-1, c), gamma, vgamma, rxhat, xhat_rx, dy2, rdy2, relu,
                rdgamma, rdbeta, rdx, need_dx)
    return rdgamma, rdbeta, (rdx.reshape(dy.shape) if need_dx else None)


# ---------------------------------------------------------------------------------------------
# References: the textbook graph, differentiated step by step through μ and σ².


def batchnorm_forward_reference(x, gamma, beta, eps=EPSILON, relu=False):
    """NumPy reference for :func:`batchnorm_forward`; returns ``y`` only."""
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)
    var = ((x - mu) ** 2).mean(axis=axes)
    z = gamma * (x - mu) / np.sqrt(var + eps) + beta
    return np.maximum(z, 0) if relu else z


def batchnorm_backward_reference(x, gamma, beta, dy, eps=EPSILON, relu=False):
    """NumPy reference for :func:`batchnorm_backward`; returns ``(dgamma, dbeta, dx)``."""
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    mu = x.mean(axis=axes)
    var = ((x - mu) ** 2).mean(axis=axes)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    z = gamma * xhat + beta
    g = np.where(z > 0, dy, 0) if relu else dy
    dgamma = (g * xhat).sum(axis=axes)
    dbeta = g.sum(axis=axes)
    dxhat = g * gamma
    dvar = (dxhat * (x - mu)).sum(axis=axes) * -0.5 * std**-3
    dmu = -(dxhat / std).sum(axis=axes) + dvar * (-2 * (x - mu)).sum(axis=axes) / m
    dx = dxhat / std + dvar * 2 * (x - mu) / m + dmu / m
    return dgamma, dbeta, dx


def batchnorm_r_reference(x, gamma, beta, vgamma, vbeta, rx, dy, rdy, eps=EPSILON, relu=False):
    """NumPy reference for :func:`batchnorm_forward_r` and :func:`batchnorm_backward_r`: the
    formulas above with whole-array operations. Returns ``(ry, rdgamma, rdbeta, rdx)``."""
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)
    inv = 1 / np.sqrt(((x - mu) ** 2).mean(axis=axes) + eps)
    xhat = (x - mu) * inv
    active = (gamma * xhat + beta > 0) if relu else np.ones(x.shape, dtype=bool)
    xhat_rx = (xhat * rx).mean(axis=axes)
    rxhat = inv * (rx - rx.mean(axis=axes) - xhat * xhat_rx)
    ry = np.where(active, vgamma * xhat + gamma * rxhat + vbeta, 0)
    g = np.where(active, dy, 0)
    rg = np.where(active, rdy, 0)
    rg_xhat = rg * xhat + g * rxhat
    g_xhat = (g * xhat).mean(axis=axes)
    core = g - g.mean(axis=axes) - xhat * g_xhat
    rcore = rg - rg.mean(axis=axes) - rxhat * g_xhat - xhat * rg_xhat.mean(axis=axes)
    rinv = -inv * xhat_rx * inv
    rdx = (vgamma * inv + gamma * rinv) * core + gamma * inv * rcore
    return ry, rg_xhat.sum(axis=axes), rg.sum(axis=axes), rdx
