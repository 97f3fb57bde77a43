"""Per-example reshapes: :class:`Reshape` (e.g. add a channel axis) and :class:`Flatten`.

Both act on everything after the batch axis and keep C order, so :class:`Flatten` of NHWC
activations gives TensorFlow's ``tf.reshape(x, (-1, h·w·c))`` order: a dense kernel trained in
TensorFlow is exchangeable. Backward reshapes ``dy`` back to the input shape.
"""

import math

from ..errors import InputError
from .base import Layer


class Reshape(Layer):
    """Reshape each example to ``shape``, e.g. ``Reshape((28, 28, 1))`` for Omniglot images.

    Shapes: ``x (batch, *in_shape)`` → ``y (batch, *shape)`` with ``prod(in_shape) ==
    prod(shape)``.
    """

    def __init__(self, shape):
        shape = tuple(shape)
        if not shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in shape):
            raise InputError(f"Reshape shape must be positive integers, got {shape!r}")
        self.shape = shape

    def output_shape(self, input_shape):
        if math.prod(input_shape) != math.prod(self.shape):
            raise InputError(
                f"Reshape to {self.shape} needs per-example input of {math.prod(self.shape)} "
                f"values, got shape {tuple(input_shape)}"
            )
        return self.shape

    def forward(self, params, x):
        return x.reshape((len(x),) + self.shape), x.shape

    def backward(self, params, in_shape, dy, grads, need_dx=True):
        return dy.reshape(in_shape) if need_dx else None

    def forward_r(self, params, vparams, x, rx):
        shape = (len(x),) + self.shape
        return x.reshape(shape), (None if rx is None else rx.reshape(shape)), x.shape

    def backward_r(self, params, vparams, in_shape, dy, rdy, grads, rgrads, need_dx=True):
        return (dy.reshape(in_shape), rdy.reshape(in_shape)) if need_dx else (None, None)

    def __repr__(self):
        return f"Reshape({self.shape})"


class Flatten(Layer):
    """``(batch, d1, d2, …) → (batch, d1·d2·…)`` in C order (TensorFlow's order for NHWC)."""

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, params, x):
        return x.reshape(len(x), -1), x.shape

    def backward(self, params, in_shape, dy, grads, need_dx=True):
        return dy.reshape(in_shape) if need_dx else None

    def forward_r(self, params, vparams, x, rx):
        return (x.reshape(len(x), -1), None if rx is None else rx.reshape(len(x), -1), x.shape)

    def backward_r(self, params, vparams, in_shape, dy, rdy, grads, rgrads, need_dx=True):
        return (dy.reshape(in_shape), rdy.reshape(in_shape)) if need_dx else (None, None)
