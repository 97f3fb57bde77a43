"""Element-wise activations: Tanh and ReLU, each with its derivative beside it."""

import numpy as np

from .base import Layer


class Tanh(Layer):
    """``y = tanh(x)``; ``dL/dx = dL/dy · (1 − y²)`` (computed from the saved output)."""

    def forward(self, params, x):
        y = np.tanh(x)
        return y, y

    def backward(self, params, y, dy, grads, need_dx=True):
        if not need_dx:
            return None
        return dy * (1 - y * y)


class ReLU(Layer):
    """``y = max(x, 0)``; ``dL/dx = dL/dy · [x > 0]`` (the subgradient 0 at x = 0)."""

    def forward(self, params, x):
        y = np.maximum(x, 0)
        return y, y

    def backward(self, params, y, dy, grads, need_dx=True):
        if not need_dx:
            return None
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
