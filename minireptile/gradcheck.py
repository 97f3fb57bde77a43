"""Gradient checking against central finite differences, for layers, losses and models.

Every analytic gradient in minireptile is tested with these functions in float64: perturb one
coordinate by ±h, measure the change of a scalar objective, and compare

    (f(θ + h·e_i) − f(θ − h·e_i)) / 2h    with    ∂f/∂θ_i

by the relative error ``‖a − n‖ / max(‖a‖, ‖n‖, tiny)`` over the whole gradient. Central
differences have truncation error O(h²), so in float64 with h ≈ 1e-6 the relative error of a
correct gradient is typically below 1e-8.

A layer is checked through the scalar ``L = Σ y ⊙ r`` for a fixed random ``r``, whose gradient
with respect to ``y`` is exactly ``r``: backward is then fed ``dy = r``.
"""

import numpy as np

from .errors import InputError


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar function ``f`` at ``x`` (any shape, float64).

    ``x`` is perturbed in place and restored; ``f`` must read it afresh on every call.
    """
    if x.dtype != np.float64:
        raise InputError(f"finite differences need float64, got {x.dtype}")
    grad = np.zeros_like(x)
    flat_x = x.reshape(-1)
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        plus = f()
        flat_x[i] = old - h
        minus = f()
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic, numeric):
    """``‖a − n‖₂ / max(‖a‖₂, ‖n‖₂, 1e-12)`` (0 when both vanish)."""
    a = np.asarray(analytic, dtype=np.float64).ravel()
    n = np.asarray(numeric, dtype=np.float64).ravel()
    scale = max(np.linalg.norm(a), np.linalg.norm(n), 1e-12)
    return float(np.linalg.norm(a - n) / scale)


def check_layer(layer, x, rng, params=None, h=1e-6):
    """Relative errors of a layer's input and parameter gradients.

    Parameters
    ----------
    layer : Layer
    x : ndarray, float64, shape (batch, *input_shape)
    rng : numpy.random.Generator
        Draws the parameters (if ``params`` is None) and the projection ``r``.
    params : ndarray, shape (n_params,), optional
        Flat float64 parameters; drawn with ``layer.init_params`` (plus noise, so zero biases
        and unit scales are not special points) when omitted.

    Returns
    -------
    dict of str to float
        ``{"input": err, "<param name>": err, ...}``.
    """
    from .params import ParamLayout

    layout = ParamLayout(layer.param_shapes())
    if params is None:
        params = np.zeros(layout.size)
        layer.init_params(layer.bind(layout.views(params)), rng)
        params += 0.1 * rng.standard_normal(layout.size)
    views = layer.bind(layout.views(params))
    y, cache = layer.forward(views, x)
    r = rng.standard_normal(y.shape)
    grad = np.zeros_like(params)
    dx = layer.backward(
        views, cache, r.astype(y.dtype), layer.bind(layout.views(grad)), need_dx=True
    )

    def objective():
        out, _ = layer.forward(views, x)
        return float(np.sum(out * r))

    errors = {"input": relative_error(dx, numerical_gradient(objective, x, h))}
    if layout.size:
        numeric = layout.views(numerical_gradient(objective, params, h))
        analytic = layout.views(grad)
        for name in layout.names:
            errors[name] = relative_error(analytic[name], numeric[name])
    return errors


def check_model(model, params, x, y, h=1e-6):
    """Relative error of ``model.loss_and_grad`` against finite differences of the loss.

    ``params`` must be float64 (the model computes in the dtype of its parameters).
    """
    _, analytic = model.loss_and_grad(params, x, y)
    work = params.copy()
    numeric = numerical_gradient(lambda: model.loss_and_grad(work, x, y)[0], work, h)
    return relative_error(analytic, numeric)


def check_loss(loss, pred, target, h=1e-6):
    """Relative error of a loss's ``backward`` against finite differences in ``pred``."""
    _, cache = loss.forward(pred, target)
    analytic = loss.backward(cache)
    work = pred.copy()
    numeric = numerical_gradient(lambda: loss.forward(work, target)[0], work, h)
    return relative_error(analytic, numeric)
