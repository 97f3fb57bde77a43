"""2-D convolution layer (NHWC, TensorFlow's kernel layout and padding rule)."""

import numpy as np

from ..errors import InputError, check_positive_int
from ..kernels.conv import (
    PADDINGS,
    conv2d_apply_cached,
    conv2d_backward,
    conv2d_forward,
    conv2d_input_gradient,
    output_size_and_padding,
)
from .base import Layer
from .init import glorot_uniform


class Conv2d(Layer):
    """Convolution with bias, ``tf.layers.conv2d`` semantics.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Square ``kernel_size × kernel_size`` kernel.
    strides : int
        Equal stride along height and width.
    padding : {"same", "valid"}
        TensorFlow's rule: ``same`` gives ``ceil(size / strides)`` outputs and puts the odd
        padding pixel at the bottom/right (see :mod:`minireptile.kernels.conv`).

    Shapes: ``weight (kernel_size, kernel_size, in_channels, out_channels)`` (TensorFlow's
    layout), ``bias (out_channels,)``, ``x (batch, height, width, in_channels)``,
    ``y (batch, out_height, out_width, out_channels)``.

    Initialisation: Glorot-uniform weight (fans multiplied by the receptive field), zero bias,
    as TensorFlow's defaults.

    Forward ``y = conv(x, weight) + bias``; backward returns ``dx`` and writes
    ``dweight = Σ patches ⊗ dy``, ``dbias = Σ dy`` (details in the kernel module).
    """

    def __init__(self, in_channels, out_channels, kernel_size, strides=1, padding="valid"):
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
            ("strides", strides),
        ):
            check_positive_int(f"Conv2d {name}", value)
        if padding not in PADDINGS:
            raise InputError(f"Conv2d padding must be one of {PADDINGS}, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding

    def param_shapes(self):
        k = self.kernel_size
        return [
            ("weight", (k, k, self.in_channels, self.out_channels)),
            ("bias", (self.out_channels,)),
        ]

    def init_params(self, params, rng):
        params["weight"][...] = glorot_uniform(rng, params["weight"].shape)
        params["bias"][...] = 0

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[2] != self.in_channels:
            raise InputError(
                f"Conv2d expects per-example input shape (height, width, {self.in_channels}), "
                f"got {shape}"
            )
        try:
            out_h = output_size_and_padding(shape[0], self.kernel_size, self.strides, self.padding)
            out_w = output_size_and_padding(shape[1], self.kernel_size, self.strides, self.padding)
        except InputError as err:
            raise InputError(f"Conv2d on input shape {shape}: {err}") from None
        return (out_h[0], out_w[0], self.out_channels)

    def forward(self, params, x):
        return conv2d_forward(x, params["weight"], params["bias"], self.strides, self.padding)

    def backward(self, params, cache, dy, grads, need_dx=True):
        _, _, dx = conv2d_backward(
            params["weight"], cache, dy, need_dx, dw=grads["weight"], db=grads["bias"]
        )
        return dx

    # R-operator (the convolution is bilinear in x and W): ry = rx ∗ W + x ∗ V_W + V_b;
    # backward rdW = cols(rx)ᵀ·dy + cols(x)ᵀ·rdy, rdb = Σ rdy, rdx = convᵀ(rdy, W) + convᵀ(dy, V_W).
    def forward_r(self, params, vparams, x, rx):
        w, b = params["weight"], params["bias"]
        y, cache = conv2d_forward(x, w, b, self.strides, self.padding)
        ry = conv2d_apply_cached(cache, vparams["weight"], vparams["bias"])
        rcache = None
        if rx is not None:
            ry_in, rcache = conv2d_forward(rx, w, np.zeros_like(b), self.strides, self.padding)
            ry += ry_in
        return y, ry, (cache, rcache)

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        cache, rcache = cache
        w = params["weight"]
        if grads is None:  # the product alone: skip the weight gradient's product
            dx = conv2d_input_gradient(w, cache, dy) if need_dx else None
        else:
            _, _, dx = conv2d_backward(w, cache, dy, need_dx, dw=grads["weight"],
                                       db=grads["bias"])
        _, _, rdx = conv2d_backward(w, cache, rdy, need_dx, dw=rgrads["weight"],
                                    db=rgrads["bias"])
        if rcache is not None:
            dy2 = np.ascontiguousarray(dy).reshape(-1, w.shape[3])
            rgrads["weight"] += np.dot(rcache[0].T, dy2).reshape(w.shape)
        if need_dx:
            rdx = rdx + conv2d_input_gradient(vparams["weight"], cache, dy)
        return dx, rdx

    def __repr__(self):
        return (
            f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
            f"strides={self.strides}, padding={self.padding!r})"
        )
