"""Element-wise activations: Tanh and ReLU, each with its derivative beside it."""

import numpy as np

from .base import Layer, zeros_if_none


class Tanh(Layer):
    """``y = tanh(x)``; ``dL/dx = dL/dy · (1 − y²)`` (computed from the saved output)."""

    def forward(self, params, x):
        y = np.tanh(x)
        return y, y

    def backward(self, params, y, dy, grads, need_dx=True):
        if not need_dx:
            return None
        return dy * (1 - y * y)

    # R-operator: ry = (1 − y²)·rx; rdx = rdy·(1 − y²) − 2·dy·y·ry.
    def forward_r(self, params, vparams, x, rx):
        y = np.tanh(x)
        ry = (1 - y * y) * zeros_if_none(rx, x)
        return y, ry, (y, ry)

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        if not need_dx:
            return None, None
        y, ry = cache
        slope = 1 - y * y
        return dy * slope, rdy * slope - 2 * dy * y * ry


class ReLU(Layer):
    """``y = max(x, 0)``; ``dL/dx = dL/dy · [x > 0]`` (the subgradient 0 at x = 0)."""

    def forward(self, params, x):
        y = np.maximum(x, 0)
        return y, y

    def backward(self, params, y, dy, grads, need_dx=True):
        if not need_dx:
            return None
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)

    # R-operator: the mask is locally constant, so ry = [x > 0]·rx and rdx = [x > 0]·rdy.
    def forward_r(self, params, vparams, x, rx):
        mask = x > 0
        y = np.where(mask, x, 0).astype(x.dtype, copy=False)
        ry = np.where(mask, zeros_if_none(rx, x), 0).astype(x.dtype, copy=False)
        return y, ry, mask

    def backward_r(self, params, vparams, mask, dy, rdy, grads, rgrads, need_dx=True):
        if not need_dx:
            return None, None
        return (np.where(mask, dy, 0).astype(dy.dtype, copy=False),
                np.where(mask, rdy, 0).astype(rdy.dtype, copy=False))
