"""Max-pooling layer (NHWC, TensorFlow's padding rule)."""

import numpy as np

from ..errors import InputError, check_positive_int
from ..kernels.conv import PADDINGS, output_size_and_padding
from ..kernels.pool import maxpool_backward, maxpool_forward
from .base import Layer, zeros_if_none


class MaxPool2d(Layer):
    """``tf.layers.max_pooling2d(x, pool_size, strides, padding)``.

    Parameters
    ----------
    pool_size, strides : int
        Square window and equal strides (2 and 2 in the Mini-ImageNet CNN).
    padding : {"same", "valid"}
        Padded cells never win.

    Shapes: ``x (batch, height, width, channels)``, ``y (batch, out_height, out_width,
    channels)``. Forward takes each window's maximum; backward sends ``dy`` to the window's
    first maximal cell in row-major order (ties go to the top-left-most).
    """

    def __init__(self, pool_size=2, strides=2, padding="same"):
        for name, value in (("pool_size", pool_size), ("strides", strides)):
            check_positive_int(f"MaxPool2d {name}", value)
        if padding not in PADDINGS:
            raise InputError(f"MaxPool2d padding must be one of {PADDINGS}, got {padding!r}")
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise InputError(
                f"MaxPool2d expects per-example input shape (height, width, channels), got {shape}"
            )
        try:
            out = [output_size_and_padding(s, self.pool_size, self.strides, self.padding)[0]
                   for s in shape[:2]]
        except InputError as err:
            raise InputError(f"MaxPool2d on input shape {shape}: {err}") from None
        return (out[0], out[1], shape[2])

    def forward(self, params, x):
        return maxpool_forward(x, self.pool_size, self.strides, self.padding)

    def backward(self, params, cache, dy, grads, need_dx=True):
        return maxpool_backward(cache, dy) if need_dx else None

    # R-operator: the argmax is locally constant, so ry gathers rx at the argmax and rdx
    # scatters rdy back to it, exactly as backward scatters dy.
    def forward_r(self, params, vparams, x, rx):
        y, cache = maxpool_forward(x, self.pool_size, self.strides, self.padding)
        arg = cache[0]
        n = len(x)
        rx = zeros_if_none(rx, x)
        ry = np.take_along_axis(rx.reshape(n, -1), arg.reshape(n, -1), axis=1).reshape(y.shape)
        return y, ry, cache

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        if not need_dx:
            return None, None
        return maxpool_backward(cache, dy), maxpool_backward(cache, rdy)

    def __repr__(self):
        return f"MaxPool2d({self.pool_size}, strides={self.strides}, padding={self.padding!r})"
