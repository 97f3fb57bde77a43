"""Second-order MAML: the exact meta-gradient through an inner loop of plain SGD steps.

With k mini-batches, k − 1 SGD steps ``W_i = W_{i−1} − α·s_i·∇L_i(W_{i−1})`` (``W_0 = Φ``,
``s_i`` a per-step scale: 1 for a mean loss, the batch size where the inner loop steps on the
summed loss) give ``W = U(Φ)``, and the meta-gradient is the chain rule written backwards::

    g_MAML = ∂/∂Φ L_k(U(Φ))
           = (I − α·s_1·H_1(W_0)) ⋯ (I − α·s_{k−1}·H_{k−1}(W_{k−2})) · ∇L_k(W_{k−1})

one Hessian-vector product per step (:meth:`minireptile.models.model.Model.hvp`); no Hessian is
formed. Each Jacobian ``I − α·s_i·H_i`` is symmetric, so the product needs no transposes.
With the same k, first-order MAML uses ``∇L_k(W_{k−1})`` alone and Reptile ``Σ_i g_i``.
"""

import numpy as np

from ..errors import InputError


def backpropagate_through_sgd(model, trajectory, direction, lr):
    """``(I − α·s_1·H_1(W_0)) ⋯ (I − α·s_m·H_m(W_{m−1})) · direction``.

    Parameters
    ----------
    model : Model
    trajectory : sequence of (w, x, y, scale)
        The SGD steps in the order they were taken: the weights *before* the step, its
        mini-batch and the scale of its gradient.
    direction : ndarray, shape (size,)
        The gradient with respect to the weights after the last step.
    lr : float
        α.

    Returns
    -------
    ndarray, shape (size,)
        The gradient with respect to the weights before the first step (a new array).
    """
    u = np.array(direction, copy=True)
    for w, x, y, scale in reversed(trajectory):
        u -= u.dtype.type(lr * scale) * model.hvp(w, x, y, u)
    return u


def maml_gradient(model, phi, batches, lr, scales=None):
    """The loss ``L_k(U(Φ))`` and its exact gradient, for SGD on ``batches[:-1]``.

    Parameters
    ----------
    model : Model
    phi : ndarray, shape (size,)
        Φ (not modified).
    batches : sequence of (x, y), length k ≥ 1
        Mini-batches 1 … k; the first k − 1 are stepped on, the last is the meta-objective.
    lr : float
        Inner SGD step α.
    scales : sequence of float, length k, optional
        ``s_i`` (default 1): step i moves by ``α·s_i·∇L_i`` and the meta-objective is
        ``s_k·L_k``.

    Returns
    -------
    loss : float
        ``s_k·L_k(W_{k−1})``.
    grad : ndarray, shape (size,)
        ``g_MAML``.
    """
    if len(batches) < 1:
        raise InputError("MAML needs at least one mini-batch (the meta-objective), got none")
    scales = [1.0] * len(batches) if scales is None else [float(s) for s in scales]
    if len(scales) != len(batches):
        raise InputError(f"scales must have one entry per mini-batch ({len(batches)}), "
                         f"got {len(scales)}")
    w = phi.copy()
    trajectory = []
    for (x, y), scale in zip(batches[:-1], scales[:-1]):
        trajectory.append((w.copy(), x, y, scale))
        _, grad = model.loss_and_grad(w, x, y)
        w -= w.dtype.type(lr * scale) * grad
    x, y = batches[-1]
    loss, grad = model.loss_and_grad(w, x, y)
    grad *= grad.dtype.type(scales[-1])
    return scales[-1] * loss, backpropagate_through_sgd(model, trajectory, grad, lr)
