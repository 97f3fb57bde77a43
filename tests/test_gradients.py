"""Every handwritten backward rule against central finite differences (float64), and the fused
dense-network kernel against the layer-by-layer path it replaces.

The finite differences come from :mod:`minireptile.models.gradcheck`; a correct gradient has a relative
error around 1e-9 there, so the bound 1e-6 fails on any wrong term (a missing factor, a
transposed weight, a lost bias gradient) while leaving room for rounding.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minireptile.models.gradcheck import check_layer, check_loss, check_model, relative_error
from minireptile.models.model import mlp
from minireptile.models.params import ParamLayout
from minireptile.nn import Linear, MeanSquaredError, ReLU, Sequential, SoftmaxCrossEntropy, Tanh

TOL = 1e-6
# Inputs to a ReLU are kept this far from its kink: far more than the finite-difference step
# (1e-6) times any input or parameter magnitude, so ±h never crosses the kink.
RELU_MARGIN = 1e-3

FAST = settings(max_examples=30, deadline=None)

seeds = st.integers(0, 2**32 - 1)
batches = st.integers(1, 5)
widths = st.integers(1, 6)


def away_from_zero(x, margin=RELU_MARGIN):
    """Shift every value away from 0 by ``margin`` (keeping its sign; 0 goes up)."""
    return np.where(x >= 0, x + margin, x - margin)


# --- single layers ----------------------------------------------------------------------------

@FAST
@given(seed=seeds, batch=batches, n_in=widths, n_out=widths, init=st.sampled_from(["torch", "glorot"]))
def test_linear_gradients(seed, batch, n_in, n_out, init):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    errors = check_layer(Linear(n_in, n_out, init=init), x, rng)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) <= TOL, errors


@FAST
@given(seed=seeds, batch=batches, width=widths)
def test_tanh_gradient(seed, batch, width):
    rng = np.random.default_rng(seed)
    # Up to |x| = 4 (derivative >= 1.3e-3): further out tanh is flat to within the
    # finite differences' rounding noise and a single saturated value could not be checked.
    x = np.clip(2 * rng.standard_normal((batch, width)), -4, 4)
    errors = check_layer(Tanh(), x, rng)
    assert errors["input"] <= TOL, errors


@FAST
@given(seed=seeds, batch=batches, width=widths)
def test_relu_gradient(seed, batch, width):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng.standard_normal((batch, width)))
    # Both sides of the kink must be exercised for the check to mean anything.
    x[0, 0] = abs(x[0, 0])
    x[-1, -1] = -abs(x[-1, -1]) if x.size > 1 else x[-1, -1]
    errors = check_layer(ReLU(), x, rng)
    assert errors["input"] <= TOL, errors


def test_relu_backward_is_zero_on_the_negative_side():
    relu = ReLU()
    x = np.array([[-2.0, -1e-3, 1e-3, 2.0]])
    y, cache = relu.forward({}, x)
    dx = relu.backward({}, cache, np.full_like(x, 5.0), {})
    np.testing.assert_array_equal(y, [[0, 0, 1e-3, 2.0]])
    np.testing.assert_array_equal(dx, [[0, 0, 5.0, 5.0]])


@st.composite
def stacks(draw):
    """A Sequential of Linear layers with activations (or not) between them."""
    sizes = draw(st.lists(widths, min_size=2, max_size=4))
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, init=draw(st.sampled_from(["torch", "glorot"]))))
        if i < len(sizes) - 2 or draw(st.booleans()):
            layers.append(draw(st.sampled_from([Tanh, ReLU]))())
    return Sequential(*layers), sizes[0]


@FAST
@given(stack=stacks(), seed=seeds, batch=batches)
def test_sequential_gradients(stack, seed, batch):
    network, n_in = stack
    rng = np.random.default_rng(seed)
    layout = ParamLayout(network.param_shapes())
    params = np.zeros(layout.size)
    network.init_params(network.bind(layout.views(params)), rng)
    params += 0.1 * rng.standard_normal(layout.size)
    x = rng.standard_normal((batch, n_in))
    # Skip the (rare) draws that put an input of a ReLU near its kink.
    h = x
    for layer, bound in zip(network.layers, network.bind(layout.views(params))):
        if isinstance(layer, ReLU):
            assume(np.abs(h).min() > RELU_MARGIN)
        h, _ = layer.forward(bound, h)
    errors = check_layer(network, x, rng, params=params)
    assert len(errors) == 1 + len(layout.names)
    assert max(errors.values()) <= TOL, errors


# --- losses -----------------------------------------------------------------------------------

@FAST
@given(seed=seeds, batch=batches, width=widths)
def test_mean_squared_error_gradient(seed, batch, width):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((batch, width))
    target = rng.standard_normal((batch, width))
    loss, _ = MeanSquaredError().forward(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2), rel=1e-12)
    assert check_loss(MeanSquaredError(), pred, target) <= TOL


def softmax_xent_reference(logits, labels):
    """Loss and gradient computed independently with scipy's logsumexp."""
    from scipy.special import logsumexp, softmax

    n = len(labels)
    loss = np.mean(logsumexp(logits, axis=1) - logits[np.arange(n), labels])
    grad = softmax(logits, axis=1)
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


@FAST
@given(seed=seeds, batch=batches, classes=st.integers(2, 6), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_softmax_cross_entropy_gradient(seed, batch, classes, scale):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, batch)
    xent = SoftmaxCrossEntropy()
    loss, cache = xent.forward(logits, labels)
    ref_loss, ref_grad = softmax_xent_reference(logits, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(xent.backward(cache), ref_grad, rtol=1e-10, atol=1e-14)
    # Finite differences need a gradient well above their rounding noise (eps/h ≈ 1e-10): a
    # saturated softmax (e.g. logits [-5, 8], label 1: gradient 2e-6) is left to the
    # comparison with scipy above.
    if np.linalg.norm(ref_grad) > 1e-3:
        assert check_loss(xent, logits, labels) <= TOL


@FAST
@given(seed=seeds, batch=batches, classes=st.integers(2, 6))
def test_softmax_cross_entropy_is_stable_for_huge_logits(seed, batch, classes):
    """Logits near ±1000 (exp overflows at ~709): loss finite, gradient right.

    Softmax is shift invariant, so the loss and gradient at ``z ± 1000`` must equal those at
    ``z``. Rows mixing +1000 and −1000 put the label on a logit 2000 below the top.
    """
    rng = np.random.default_rng(seed)
    # Modest spread around the shift keeps every row's gradient well above the finite
    # differences' rounding noise at |z| = 1000 (ulp 1e-13).
    z = 0.5 * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, batch)
    xent = SoftmaxCrossEntropy()
    base_loss, base_cache = xent.forward(z, labels)
    for shift in (1000.0, -1000.0):
        loss, cache = xent.forward(z + shift, labels)
        assert np.isfinite(loss)
        assert loss == pytest.approx(base_loss, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(xent.backward(cache), xent.backward(base_cache), atol=1e-10)
        # At |z| = 1000 a float64 ulp is 1e-13, so a step of 1e-4 keeps rounding noise small;
        # truncation error is O(h²) = 1e-8 relative.
        assert check_loss(xent, z + shift, labels, h=1e-4) <= TOL
    mixed = z.copy()
    mixed[:, 0] += 1000
    mixed[:, 1] -= 1000
    mixed_labels = np.full(batch, 1)  # the label's probability underflows to 0
    loss, cache = xent.forward(mixed, mixed_labels)
    ref_loss, ref_grad = softmax_xent_reference(mixed, mixed_labels)
    assert np.isfinite(loss) and loss > 1990
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(xent.backward(cache), ref_grad, atol=1e-12)
    assert check_loss(xent, mixed, mixed_labels, h=1e-4) <= TOL


# --- whole networks ---------------------------------------------------------------------------

def numpy_forward(model, params, x, activation):
    """Independent NumPy forward of an ``mlp``; also returns every pre-activation."""
    views = model.layout.views(params)
    n_layers = len(model.layout.names) // 2
    h = x
    pre = []
    for i in range(n_layers):
        z = h @ views[f"linear{i}.weight"] + views[f"linear{i}.bias"]
        if i == n_layers - 1:
            return z, pre
        pre.append(z)
        h = np.tanh(z) if activation == "tanh" else np.maximum(z, 0)


@st.composite
def networks(draw, max_width=6, max_batch=5):
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=0, max_size=3))
    n_in = draw(st.integers(1, max_width))
    n_out = draw(st.integers(2 if loss == "cross_entropy" else 1, max_width))
    return {
        "sizes": [n_in] + hidden + [n_out],
        "activation": draw(st.sampled_from(["tanh", "relu"])),
        "loss": loss,
        "init": draw(st.sampled_from(["torch", "glorot"])),
        "batch": draw(st.integers(1, max_batch)),
    }


def make_problem(spec, seed, dtype, fused):
    model = mlp(spec["sizes"], spec["activation"], spec["loss"], dtype=dtype, init=spec["init"],
                fused=fused)
    rng = np.random.default_rng(seed)
    params = model.init_params(rng)
    params += (0.1 * rng.standard_normal(model.size)).astype(dtype)  # glorot biases start at 0
    x = rng.standard_normal((spec["batch"], spec["sizes"][0])).astype(dtype)
    if spec["loss"] == "mse":
        y = rng.standard_normal((spec["batch"], spec["sizes"][-1])).astype(dtype)
    else:
        y = rng.integers(0, spec["sizes"][-1], spec["batch"])
    return model, params, x, y


@FAST
@given(spec=networks(), seed=seeds, fused=st.booleans())
def test_mlp_gradients(spec, seed, fused):
    model, params, x, y = make_problem(spec, seed, np.float64, fused)
    out, pre = numpy_forward(model, params, x, spec["activation"])
    if spec["activation"] == "relu":
        assume(all(np.abs(z).min() > RELU_MARGIN for z in pre))
    np.testing.assert_allclose(model.predict(params, x), out, rtol=1e-12, atol=1e-12)
    assert check_model(model, params, x, y) <= TOL


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_mlp_gradients_every_combination(fused, activation, loss):
    """Each (activation, loss, path) at least once, whatever hypothesis happens to draw."""
    spec = {"sizes": [3, 5, 4, 3], "activation": activation, "loss": loss, "init": "torch",
            "batch": 4}
    for seed in range(20):
        model, params, x, y = make_problem(spec, seed, np.float64, fused)
        _, pre = numpy_forward(model, params, x, activation)
        if all(np.abs(z).min() > RELU_MARGIN for z in pre):
            break
    assert check_model(model, params, x, y) <= TOL


@pytest.mark.parametrize("fused", [True, False])
def test_mlp_cross_entropy_with_huge_logits(fused):
    """Output biases of ±1000 push the logits far past exp's overflow; the loss stays finite
    and equal to the loss without the common shift."""
    model, params, x, y = make_problem(
        {"sizes": [3, 4, 3], "activation": "tanh", "loss": "cross_entropy", "init": "torch",
         "batch": 4}, 7, np.float64, fused)
    base_loss, base_grad = model.loss_and_grad(params, x, y)
    for shift in (1000.0, -1000.0):
        shifted = params.copy()
        model.layout.views(shifted)["linear1.bias"][...] += shift
        loss, grad = model.loss_and_grad(shifted, x, y)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert loss == pytest.approx(base_loss, rel=1e-9)
        # A common shift of the output bias changes nothing, so neither does its gradient.
        np.testing.assert_allclose(grad, base_grad, atol=1e-10)
        assert check_model(model, shifted, x, y, h=1e-4) <= TOL


# --- fused kernel against the layer-by-layer path ---------------------------------------------

# float32 tolerances: the two paths differ by the order of float32 sums and by the fused path's
# rational tanh (error <= 3e-7 per activation). Over 300 random networks of these sizes the
# largest differences seen were 1.5e-7 (relative, loss), 1.1e-7 (gradient, relative to its
# largest entry) and 2.4e-7 (absolute, predictions): the bounds leave a factor of ~10.
F32_RTOL = 1e-5
F32_ATOL = 2e-6


@settings(max_examples=40, deadline=None)
@given(spec=networks(max_width=24, max_batch=12), seed=seeds)
def test_fused_equals_layer_by_layer(spec, seed):
    for dtype in (np.float64, np.float32):
        fused, params, x, y = make_problem(spec, seed, dtype, fused=True)
        plain, params2, _, _ = make_problem(spec, seed, dtype, fused=False)
        np.testing.assert_array_equal(params, params2)
        assert fused.fused is not None and plain.fused is None
        loss_f, grad_f = fused.loss_and_grad(params, x, y)
        loss_p, grad_p = plain.loss_and_grad(params, x, y)
        pred_f, pred_p = fused.predict(params, x), plain.predict(params, x)
        assert grad_f.dtype == grad_p.dtype == pred_f.dtype == pred_p.dtype == dtype
        if dtype == np.float64:
            assert loss_f == pytest.approx(loss_p, rel=1e-12, abs=1e-14)
            np.testing.assert_allclose(grad_f, grad_p, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(pred_f, pred_p, rtol=1e-12, atol=1e-13)
        else:
            assert loss_f == pytest.approx(loss_p, rel=F32_RTOL, abs=F32_ATOL)
            scale = max(1.0, float(np.abs(grad_p).max()))
            np.testing.assert_allclose(grad_f, grad_p, rtol=F32_RTOL, atol=F32_ATOL * scale)
            np.testing.assert_allclose(pred_f, pred_p, rtol=F32_RTOL, atol=F32_ATOL)


def test_fused_writes_into_out_and_ignores_stale_contents():
    spec = {"sizes": [2, 8, 3], "activation": "tanh", "loss": "cross_entropy", "init": "torch",
            "batch": 6}
    fused, params, x, y = make_problem(spec, 3, np.float64, fused=True)
    plain = mlp(spec["sizes"], "tanh", "cross_entropy", dtype=np.float64, fused=False)
    expected = plain.loss_and_grad(params, x, y)[1]
    for model in (fused, plain):
        out = np.full_like(params, np.nan)
        loss, grad = model.loss_and_grad(params, x, y, out=out)
        assert grad is out
        assert relative_error(grad, expected) < 1e-12
