"""Batch normalisation over the channel axis in training mode, optionally fused with ReLU."""

import numpy as np

from ..errors import InputError, check_positive_int
from ..kernels.batchnorm import (
    EPSILON,
    batchnorm_backward,
    batchnorm_backward_r,
    batchnorm_forward,
    batchnorm_forward_r,
)
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

    # R-operator: formulas and kernels in minireptile.kernels.batchnorm.
    def forward_r(self, params, vparams, x, rx):
        y, cache = self.forward(params, x)
        ry, rcache = batchnorm_forward_r(cache, params["gamma"], vparams["gamma"],
                                         vparams["beta"], zeros_if_none(rx, x))
        return y, ry, (cache, rcache)

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        cache, rcache = cache
        if grads is None:  # dγ and dβ cost next to nothing; dx is needed
            grads = {"gamma": np.empty_like(params["gamma"]),
                     "beta": np.empty_like(params["beta"])}
        dx = self.backward(params, cache, dy, grads, need_dx)
        _, _, rdx = batchnorm_backward_r(params["gamma"], vparams["gamma"], cache, rcache, dy,
                                         rdy, need_dx, rdgamma=rgrads["gamma"],
                                         rdbeta=rgrads["beta"])
        return dx, rdx

    def __repr__(self):
        extra = ", relu=True" if self.relu else ""
        return f"BatchNorm2d({self.channels}, eps={self.eps:g}{extra})"
