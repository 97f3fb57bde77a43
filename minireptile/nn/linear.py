"""Fully connected layer ``y = x @ W + b`` on the Numba matmul kernels."""

import math

from ..errors import InputError, check_positive_int
from ..kernels.dense import dense_backward, dense_forward
from .base import Layer
from .init import glorot_uniform, torch_linear_uniform

INITIALISERS = ("torch", "glorot")


class Linear(Layer):
    """Dense layer.

    Parameters
    ----------
    in_features, out_features : int
    init : {"torch", "glorot"}
        ``"torch"``: weight and bias uniform in ±1/√in_features (PyTorch's ``nn.Linear``
        default). ``"glorot"``: Glorot-uniform weight and zero bias (TensorFlow's
        ``tf.layers.dense`` default).

    Shapes: ``weight (in_features, out_features)`` (TensorFlow's layout, so ``y = x @ W``),
    ``bias (out_features,)``, ``x (batch, in_features)``, ``y (batch, out_features)``.
    """

    def __init__(self, in_features, out_features, init="torch"):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            check_positive_int(f"Linear {name}", value)
        if init not in INITIALISERS:
            raise InputError(f"Linear init must be one of {INITIALISERS}, got {init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.init = init

    def param_shapes(self):
        return [("weight", (self.in_features, self.out_features)), ("bias", (self.out_features,))]

    def init_params(self, params, rng):
        if self.init == "torch":
            bound = 1 / math.sqrt(self.in_features)
            params["weight"][...] = torch_linear_uniform(rng, params["weight"].shape, bound)
            params["bias"][...] = torch_linear_uniform(rng, params["bias"].shape, bound)
        else:
            params["weight"][...] = glorot_uniform(rng, params["weight"].shape)
            params["bias"][...] = 0

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise InputError(
                f"Linear expects per-example input shape ({self.in_features},), "
                f"got {tuple(input_shape)}"
            )
        return (self.out_features,)

    def forward(self, params, x):
        return dense_forward(x, params["weight"], params["bias"]), x

    def backward(self, params, x, dy, grads, need_dx=True):
        _, _, dx = dense_backward(
            x, params["weight"], dy, dw=grads["weight"], db=grads["bias"], need_dx=need_dx
        )
        return dx

    # R-operator of y = xW + b: ry = rx·W + x·V_W + V_b; backward rdW = rxᵀ·dy + xᵀ·rdy,
    # rdb = Σ rdy, rdx = rdy·Wᵀ + dy·V_Wᵀ.
    def forward_r(self, params, vparams, x, rx):
        y = dense_forward(x, params["weight"], params["bias"])
        ry = dense_forward(x, vparams["weight"], vparams["bias"])
        if rx is not None:
            ry += rx @ params["weight"]
        return y, ry, (x, rx)

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        x, rx = cache
        if grads is None:
            dx = dy @ params["weight"].T if need_dx else None
        else:
            _, _, dx = dense_backward(
                x, params["weight"], dy, dw=grads["weight"], db=grads["bias"], need_dx=need_dx
            )
        _, _, rdx = dense_backward(
            x, params["weight"], rdy, dw=rgrads["weight"], db=rgrads["bias"], need_dx=need_dx
        )
        if rx is not None:
            rgrads["weight"] += rx.T @ dy
        if need_dx:
            rdx += dy @ vparams["weight"].T
        return dx, rdx

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, init={self.init!r})"
