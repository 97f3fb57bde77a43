"""Batch normalisation over the channel axis in training mode, optionally fused with ReLU."""

import numpy as np

from ..errors import InputError, check_positive_int
from ..kernels.batchnorm import EPSILON, batchnorm_backward, batchnorm_forward
from .base import Layer, zeros_if_none


class BatchNorm2d(Layer):
    """``tf.layers.batch_normalization(x, training=True)`` on NHWC activations.

    Always normalises with the statistics of the batch at hand (the reference implementation
    does so at test time too), so there are no running averages.

    Parameters
    ----------
    channels : int
    eps : float
        Added to the variance; 1e-3 is TensorFlow's default.
    relu : bool
        Apply ReLU to the output in the same kernel (saves a pass each way; see
        ``benchmarks/bench_cnn.py``). ``BatchNorm2d(c, relu=True)`` equals
        ``BatchNorm2d(c)`` followed by :class:`~minireptile.nn.ReLU`.

    Shapes: ``gamma (channels,)`` (initialised to 1), ``beta (channels,)`` (initialised to 0),
    ``x`` and ``y (batch, height, width, channels)``.

    Forward ``y = γ·(x − μ)/√(σ² + ε) + β`` with per-channel batch mean ``μ`` and biased
    variance ``σ²``; backward in :mod:`minireptile.kernels.batchnorm`.
    """

    def __init__(self, channels, eps=EPSILON, relu=False):
        check_positive_int("BatchNorm2d channels", channels)
        if not isinstance(eps, (int, float)) or not eps > 0:
            raise InputError(f"BatchNorm2d eps must be a positive number, got {eps!r}")
        self.channels = channels
        self.eps = float(eps)
        self.relu = bool(relu)

    def param_shapes(self):
        return [("gamma", (self.channels,)), ("beta", (self.channels,))]

    def init_params(self, params, rng):
        params["gamma"][...] = 1
        params["beta"][...] = 0

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[2] != self.channels:
            raise InputError(
                f"BatchNorm2d expects per-example input shape (height, width, {self.channels}), "
                f"got {shape}"
            )
        return shape

    def forward(self, params, x):
        return batchnorm_forward(x, params["gamma"], params["beta"], self.eps, self.relu)

    def backward(self, params, cache, dy, grads, need_dx=True):
        _, _, dx = batchnorm_backward(
            params["gamma"], cache, dy, need_dx, dgamma=grads["gamma"], dbeta=grads["beta"]
        )
        return dx

    # R-operator, per channel with means over the m = batch·height·width rows:
    #   rx̂ = inv·(rx − mean(rx) − x̂·mean(x̂·rx)),   r(inv) = −inv·mean(x̂·rx)·inv
    #   rz = V_γ·x̂ + γ·rx̂ + V_β,   ry = [z > 0]·rz with the fused ReLU
    # and, with g = [z > 0]·dy, core = g − mean(g) − x̂·mean(g·x̂) so that dx = γ·inv·core:
    #   rdβ = Σ rg,   rdγ = Σ (rg·x̂ + g·rx̂),
    #   rdx = (V_γ·inv + γ·r(inv))·core + γ·inv·(rg − mean(rg) − rx̂·mean(g·x̂)
    #                                              − x̂·mean(rg·x̂ + g·rx̂)).
    def forward_r(self, params, vparams, x, rx):
        y, cache = self.forward(params, x)
        x2, mean, inv, y2, relu = cache
        xhat = (x2 - mean) * inv
        rx2 = zeros_if_none(rx, x).reshape(x2.shape)
        xhat_rx = (xhat * rx2).mean(axis=0)
        rxhat = inv * (rx2 - rx2.mean(axis=0) - xhat * xhat_rx)
        rz = vparams["gamma"] * xhat + params["gamma"] * rxhat + vparams["beta"]
        if relu:
            rz = np.where(y2.reshape(x2.shape) > 0, rz, 0)
        ry = rz.astype(x.dtype, copy=False).reshape(x.shape)
        return y, ry, (cache, xhat, rxhat, xhat_rx)

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        cache, xhat, rxhat, xhat_rx = cache
        x2, mean, inv, y2, relu = cache
        dx = self.backward(params, cache, dy, grads, need_dx)
        g = dy.reshape(x2.shape)
        rg = rdy.reshape(x2.shape)
        if relu:
            active = y2.reshape(x2.shape) > 0
            g = np.where(active, g, 0)
            rg = np.where(active, rg, 0)
        rg_xhat = rg * xhat + g * rxhat
        rgrads["beta"][...] = rg.sum(axis=0)
        rgrads["gamma"][...] = rg_xhat.sum(axis=0)
        if not need_dx:
            return None, None
        gamma = params["gamma"]
        g_xhat = (g * xhat).mean(axis=0)
        core = g - g.mean(axis=0) - xhat * g_xhat
        rinv = -inv * xhat_rx * inv
        rcore = rg - rg.mean(axis=0) - rxhat * g_xhat - xhat * rg_xhat.mean(axis=0)
        rdx = (vparams["gamma"] * inv + gamma * rinv) * core + gamma * inv * rcore
        return dx, rdx.astype(dy.dtype, copy=False).reshape(dx.shape)

    def __repr__(self):
        extra = ", relu=True" if self.relu else ""
        return f"BatchNorm2d({self.channels}, eps={self.eps:g}{extra})"
