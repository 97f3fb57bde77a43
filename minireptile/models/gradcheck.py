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

from ..errors import InputError


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


def check_layer_hvp(layer, x, rng, params=None, h=1e-6, input_direction=True):
    """Relative errors of a layer's R-operator (``forward_r`` / ``backward_r``) against central
    differences of its ``forward`` and ``backward``.

    Draws a direction ``(v, rx)`` for the parameters and the input (``rx`` None, i.e. zero,
    when not ``input_direction``), an upstream gradient ``dy`` and its derivative ``rdy``, and
    compares ``ry``, ``rdx`` and each parameter's ``rgrad`` with ``(f(+h) − f(−h)) / 2h`` of
    ``y``, ``dx`` and ``grad`` evaluated at ``(params ± h·v, x ± h·rx, dy ± h·rdy)``. Also
    checks that ``backward_r``'s own gradients are ``backward``'s, and that it returns the
    same products when asked for no gradient (``grads=None``).

    Returns
    -------
    dict of str to float
        ``{"output": err, "input": err, "<param name>": err, ..., "gradient": err,
        "without gradient": err}``.
    """
    from .params import ParamLayout

    layout = ParamLayout(layer.param_shapes())
    if params is None:
        params = np.zeros(layout.size)
        layer.init_params(layer.bind(layout.views(params)), rng)
        params += 0.1 * rng.standard_normal(layout.size)
    v = rng.standard_normal(layout.size)
    rx = rng.standard_normal(x.shape) if input_direction else None
    scale = np.sqrt(v @ v + (0 if rx is None else np.sum(rx * rx)))
    v /= scale
    if rx is not None:
        rx /= scale

    def bind(flat):
        return layer.bind(layout.views(flat))

    y, ry, cache = layer.forward_r(bind(params), bind(v), x, rx)
    if ry is None:  # a layer without parameters passes "no dependence" on as None
        ry = np.zeros_like(y)
    dy = rng.standard_normal(y.shape)
    rdy = rng.standard_normal(y.shape)
    grad, rgrad = np.zeros_like(params), np.zeros_like(params)
    dx, rdx = layer.backward_r(bind(params), bind(v), cache, dy, rdy, bind(grad), bind(rgrad))
    # Without the gradient (what Model.hvp asks): the same products.
    rgrad_only = np.zeros_like(params)
    dx_only, rdx_only = layer.backward_r(bind(params), bind(v), cache, dy, rdy, None,
                                         bind(rgrad_only))

    def at(t):
        shifted = params + t * v
        x_t = x if rx is None else x + t * rx
        out, c = layer.forward(bind(shifted), x_t)
        g = np.zeros_like(params)
        dx_t = layer.backward(bind(shifted), c, dy + t * rdy, bind(g), need_dx=True)
        return out, dx_t, g

    (y_p, dx_p, g_p), (y_m, dx_m, g_m) = at(h), at(-h)
    y0, dx0, g0 = at(0.0)
    errors = {
        "output": relative_error(ry, (y_p - y_m) / (2 * h)),
        "input": relative_error(rdx, (dx_p - dx_m) / (2 * h)),
        "gradient": max(relative_error(grad, g0), relative_error(dx, dx0),
                        relative_error(y, y0)),
        "without gradient": max(relative_error(rgrad_only, rgrad), relative_error(rdx_only, rdx),
                                relative_error(dx_only, dx)),
    }
    numeric = layout.views((g_p - g_m) / (2 * h))
    analytic = layout.views(rgrad)
    for name in layout.names:
        errors[name] = relative_error(analytic[name], numeric[name])
    return errors


def check_model_hvp(model, params, x, y, v, h=1e-6):
    """Relative error of ``model.hvp`` against central differences of the handwritten
    gradient, ``(∇L(θ + h·v) − ∇L(θ − h·v)) / 2h`` (``v`` normalised to unit length)."""
    v = v / np.linalg.norm(v)
    analytic = model.hvp(params, x, y, v)
    _, plus = model.loss_and_grad(params + h * v, x, y)
    _, minus = model.loss_and_grad(params - h * v, x, y)
    return relative_error(analytic, (plus - minus) / (2 * h))


def check_loss_hvp(loss, pred, target, rng, h=1e-4):
    """Relative error of a loss's ``backward_r`` against central differences of ``backward``
    along a random unit direction ``rpred``."""
    rpred = rng.standard_normal(pred.shape)
    rpred /= np.linalg.norm(rpred)
    _, cache = loss.forward(pred, target)
    analytic = loss.backward_r(cache, rpred)
    plus = loss.backward(loss.forward(pred + h * rpred, target)[1])
    minus = loss.backward(loss.forward(pred - h * rpred, target)[1])
    return relative_error(analytic, (plus - minus) / (2 * h))
