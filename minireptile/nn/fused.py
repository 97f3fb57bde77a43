"""The fused path for plain dense networks (see :mod:`minireptile.kernels.mlp`).

A :class:`FusedDense` computes exactly what ``Sequential(Linear, act, Linear, …)`` followed
by a loss computes, in one compiled call. :func:`minireptile.models.model.mlp` attaches one to the
models it builds; ``Model(..., fused=None)`` (or ``mlp(..., fused=False)``) keeps the
layer-by-layer path, which is the fused path's reference in the tests.
"""

import numpy as np

from ..kernels import mlp as kernel

_ACTIVATIONS = {"tanh": kernel.TANH, "relu": kernel.RELU}
_LOSSES = {"mse": kernel.MSE, "cross_entropy": kernel.CROSS_ENTROPY}


class FusedDense:
    """Forward, loss and backward of a dense network in one kernel call.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output.
    activation : {"tanh", "relu"}
    loss : {"mse", "cross_entropy"}
    """

    def __init__(self, sizes, activation, loss):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.activation = _ACTIVATIONS[activation]
        self.loss_kind = _LOSSES[loss]
        self._no_targets = {}

    def _placeholder(self, dtype, ndim):
        key = (np.dtype(dtype), ndim)
        if key not in self._no_targets:
            self._no_targets[key] = np.zeros((0,) * ndim, dtype=dtype)
        return self._no_targets[key]

    def predict(self, params, x):
        """Network output, shape ``(batch, sizes[-1])``."""
        return kernel.mlp_predict(params, x, self.sizes, self.activation)

    def _targets_and_labels(self, y, dtype):
        if self.loss_kind == kernel.MSE:
            return np.ascontiguousarray(y, dtype=dtype), self._placeholder(np.int64, 1)
        return self._placeholder(dtype, 2), np.ascontiguousarray(y, dtype=np.int64)

    def loss_and_grad(self, params, x, y, out):
        """Mean loss; the gradient is written into ``out``."""
        targets, labels = self._targets_and_labels(y, params.dtype)
        return kernel.mlp_loss_and_grad(
            params, out, x, targets, labels, self.sizes, self.activation, self.loss_kind
        )

    def sgd_steps(self, params, x, y, indices, starts, lr):
        """SGD on each mini-batch ``indices[starts[b]:starts[b + 1]]`` of ``(x, y)`` in turn;
        returns the losses."""
        targets, labels = self._targets_and_labels(y, params.dtype)
        return kernel.mlp_sgd_steps(params, x, targets, labels, indices, starts, lr, self.sizes,
                                    self.activation, self.loss_kind)
