"""Losses, each a forward value with its gradient beside it.

``loss, cache = loss_fn.forward(pred, target)`` and ``dpred = loss_fn.backward(cache)``.
Both are means over the batch, so a gradient step does not depend on the batch size.
"""

import numpy as np

from ..errors import InputError, describe_array


class MeanSquaredError:
    """``L = mean((pred − target)²)`` over every element; ``dL/dpred = 2(pred − target)/N``.

    Shapes: ``pred`` and ``target`` alike, e.g. ``(batch, outputs)``.
    """

    def check_target(self, target, batch, output_shape):
        expected = (batch,) + tuple(output_shape)
        if not isinstance(target, np.ndarray) or target.shape != expected:
            raise InputError(
                f"targets for mean squared error must have shape {expected}, "
                f"got {describe_array(target)}"
            )
        if target.dtype.kind != "f":
            raise InputError(f"targets for mean squared error must be floats, got {target.dtype}")

    def forward(self, pred, target):
        diff = pred - target
        if diff.dtype != pred.dtype:
            diff = diff.astype(pred.dtype)
        flat = diff.reshape(-1)
        # A dot product is one call where np.mean(diff**2) is several: this runs every step.
        return float(flat @ flat) / flat.size, diff

    def backward(self, diff):
        return diff * (2.0 / diff.size)

    def backward_r(self, diff, rpred):
        """Directional derivative of ``dL/dpred`` along ``rpred``: ``2·rpred/N``."""
        return rpred * (2.0 / diff.size)


class SoftmaxCrossEntropy:
    """``L = mean_i(−log softmax(logits_i)[label_i])``.

    Computed as ``logsumexp(z) − z[label]`` with the row maximum subtracted first, so it never
    overflows; ``dL/dz = (softmax(z) − onehot(label)) / batch``.
    Shapes: ``logits (batch, classes)``, ``labels (batch,)`` integers in ``[0, classes)``.
    """

    def check_target(self, labels, batch, output_shape):
        (classes,) = output_shape
        if not isinstance(labels, np.ndarray) or labels.shape != (batch,):
            raise InputError(
                f"labels must be an integer array of shape ({batch},), got {describe_array(labels)}"
            )
        if labels.dtype.kind not in "iu":
            raise InputError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise InputError(
                f"labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}"
            )

    def forward(self, logits, labels):
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = np.mean(np.log(total[:, 0]) - shifted[rows, labels])
        return float(loss), (exp / total, labels)

    def backward(self, cache):
        probs, labels = cache
        grad = probs.copy()
        grad[np.arange(len(labels)), labels] -= 1
        grad /= len(labels)
        return grad

    def backward_r(self, cache, rlogits):
        """Directional derivative of ``dL/dz`` along ``rlogits``: ``p ⊙ (rz − Σ_j p_j·rz_j) / batch``."""
        probs, labels = cache
        return probs * (rlogits - (probs * rlogits).sum(axis=1, keepdims=True)) / len(labels)
