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
