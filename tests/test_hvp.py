"""Hessian-vector products (Pearlmutter's R-operator) against central finite differences of
the handwritten gradients, in float64, over hypothesis-drawn shapes and directions: every
layer (forward and backward R-passes), both losses, whole MLPs and both CNNs at small size.
Relative error ≤ 1e-6 throughout. The batch-norm R-pass kernels and the two convolution helpers
the R-passes add are checked against slow NumPy references.

ReLU and max-pooling have kinks: as in the gradient tests, inputs are drawn (or filtered) so
that a step of ±h along a unit direction cannot cross one.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from minireptile.kernels.batchnorm import (
    batchnorm_backward_r,
    batchnorm_forward,
    batchnorm_forward_r,
    batchnorm_forward_reference,
    batchnorm_r_reference,
)
from minireptile.kernels.conv import (
    conv2d_apply_cached,
    conv2d_backward_reference,
    conv2d_forward,
    conv2d_forward_reference,
    conv2d_input_gradient,
)
from test_cnn_models import kink_margin, perturbed_params

from minireptile.errors import InputError
from minireptile.models.cnn import miniimagenet_cnn, omniglot_cnn
from minireptile.models.gradcheck import check_layer_hvp, check_loss_hvp, check_model_hvp
from minireptile.models.model import mlp
from minireptile.nn import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    MeanSquaredError,
    ReLU,
    Reshape,
    Sequential,
    SoftmaxCrossEntropy,
    Tanh,
)

TOLERANCE = 1e-6
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


def assert_within_tolerance(errors):
    assert all(err <= TOLERANCE for err in errors.values()), errors


# ---------------------------------------------------------------------------------------------
# Layers


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 4), n_in=st.integers(1, 6), n_out=st.integers(1, 6),
       input_direction=st.booleans())
def test_linear_hvp(seed, batch, n_in, n_out, input_direction):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    assert_within_tolerance(check_layer_hvp(Linear(n_in, n_out), x, rng,
                                            input_direction=input_direction))


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 4), width=st.integers(1, 6))
def test_tanh_hvp(seed, batch, width):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    assert_within_tolerance(check_layer_hvp(Tanh(), x, rng))


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 4), width=st.integers(1, 6))
def test_relu_hvp(seed, batch, width):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    assume(np.abs(x).min() > 1e-4)
    assert_within_tolerance(check_layer_hvp(ReLU(), x, rng))


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    cin=st.integers(1, 4),
    cout=st.integers(1, 4),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.sampled_from(["same", "valid"]),
    input_direction=st.booleans(),
    seed=SEEDS,
)
def test_conv2d_hvp(batch, height, width, cin, cout, kernel, stride, padding, input_direction,
                    seed):
    if padding == "valid":
        assume(min(height, width) >= kernel)
    rng = np.random.default_rng(seed)
    layer = Conv2d(cin, cout, kernel, strides=stride, padding=padding)
    x = rng.standard_normal((batch, height, width, cin))
    assert_within_tolerance(check_layer_hvp(layer, x, rng, input_direction=input_direction))


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 4),
    width=st.integers(1, 4),
    channels=st.integers(1, 4),
    relu=st.booleans(),
    seed=SEEDS,
)
def test_batchnorm2d_hvp(batch, height, width, channels, relu, seed):
    rng = np.random.default_rng(seed)
    layer = BatchNorm2d(channels, relu=relu)
    x = rng.standard_normal((batch, height, width, channels))
    gamma = 1 + 0.3 * rng.standard_normal(channels)
    beta = 0.3 * rng.standard_normal(channels)
    if relu:
        z = batchnorm_forward_reference(x, gamma, beta)
        assume(np.abs(z).min() > 1e-4)
    params = np.concatenate([gamma, beta])
    assert_within_tolerance(check_layer_hvp(layer, x, rng, params=params))


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    channels=st.integers(1, 3),
    pool=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["same", "valid"]),
    seed=SEEDS,
)
def test_maxpool2d_hvp(batch, height, width, channels, pool, stride, padding, seed):
    if padding == "valid":
        assume(min(height, width) >= pool)
    rng = np.random.default_rng(seed)
    shape = (batch, height, width, channels)
    # Distinct values at least 0.1 apart: no window has a near-tie for its maximum.
    x = 0.1 * rng.permutation(np.prod(shape)).reshape(shape) + 0.01 * rng.random(shape)
    layer = MaxPool2d(pool, strides=stride, padding=padding)
    assert_within_tolerance(check_layer_hvp(layer, x, rng))


@pytest.mark.parametrize("layer", [Flatten(), Reshape((3, 4, 5, 1)), Reshape((60,))])
@pytest.mark.parametrize("input_direction", [True, False])
def test_flatten_and_reshape_hvp(layer, input_direction):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    assert_within_tolerance(check_layer_hvp(layer, x, rng, input_direction=input_direction))


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 4), input_direction=st.booleans())
def test_sequential_hvp(seed, batch, input_direction):
    rng = np.random.default_rng(seed)
    stack = Sequential(Linear(3, 5), Tanh(), Linear(5, 4), Tanh(), Linear(4, 2))
    x = rng.standard_normal((batch, 3))
    assert_within_tolerance(check_layer_hvp(stack, x, rng, input_direction=input_direction))


# ---------------------------------------------------------------------------------------------
# Losses


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 5), width=st.integers(1, 4))
def test_mean_squared_error_hvp(seed, batch, width):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal((2, batch, width))
    assert check_loss_hvp(MeanSquaredError(), pred, target, rng) <= TOLERANCE


@SETTINGS
@given(seed=SEEDS, batch=st.integers(1, 5), classes=st.integers(2, 6),
       scale=st.sampled_from([0.1, 1.0, 3.0]))
def test_softmax_cross_entropy_hvp(seed, batch, classes, scale):
    rng = np.random.default_rng(seed)
    # Larger logits saturate the softmax: its Hessian shrinks like e^(−gap) and central
    # differences lose every digit to rounding, whatever the analytic value.
    logits = scale * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, batch)
    assert check_loss_hvp(SoftmaxCrossEntropy(), logits, labels, rng) <= TOLERANCE


# ---------------------------------------------------------------------------------------------
# Whole models


@SETTINGS
@given(
    seed=SEEDS,
    hidden=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    n_in=st.integers(1, 4),
    n_out=st.integers(1, 4),
    batch=st.integers(1, 6),
    activation=st.sampled_from(["tanh", "relu"]),
    loss=st.sampled_from(["mse", "cross_entropy"]),
    fused=st.booleans(),
)
def test_mlp_hvp(seed, hidden, n_in, n_out, batch, activation, loss, fused):
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        n_out = max(n_out, 2)
    model = mlp([n_in, *hidden, n_out], activation=activation, loss=loss, dtype=np.float64,
                fused=fused)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((batch, n_in))
    y = (rng.standard_normal((batch, n_out)) if loss == "mse"
         else rng.integers(0, n_out, batch))
    if activation == "relu":
        pre = x
        for layer, bound in zip(model.network.layers, model.network.bind(
                model.layout.views(params))):
            pre, _ = layer.forward(bound, pre)
            if isinstance(layer, Linear) and layer is not model.network.layers[-1]:
                assume(np.abs(pre).min() > 1e-4)
    v = rng.standard_normal(model.size)
    assert check_model_hvp(model, params, x, y, v) <= TOLERANCE


@SETTINGS
@given(batch=st.integers(1, 3), image_size=st.integers(4, 10), classes=st.integers(2, 4),
       seed=SEEDS)
def test_omniglot_model_hvp_small_variant(batch, image_size, classes, seed):
    rng = np.random.default_rng(seed)
    model = omniglot_cnn(classes, dtype=np.float64, image_size=image_size, filters=3)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((batch, image_size, image_size))
    y = rng.integers(0, classes, batch)
    assume(kink_margin(model, params, x) > 1e-4)
    assert check_model_hvp(model, params, x, y, rng.standard_normal(model.size)) <= TOLERANCE


@SETTINGS
@given(batch=st.integers(1, 3), image_size=st.integers(2, 10), classes=st.integers(2, 4),
       seed=SEEDS)
def test_miniimagenet_model_hvp_small_variant(batch, image_size, classes, seed):
    rng = np.random.default_rng(seed)
    model = miniimagenet_cnn(classes, dtype=np.float64, image_size=image_size, filters=3)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((batch, image_size, image_size, 3))
    y = rng.integers(0, classes, batch)
    assume(kink_margin(model, params, x) > 1e-4)
    assert check_model_hvp(model, params, x, y, rng.standard_normal(model.size)) <= TOLERANCE


def test_hvp_is_linear_in_v_and_symmetric():
    # vᵀ·H·u = uᵀ·H·v: a Hessian is symmetric, which a wrong R-pass would rarely keep.
    rng = np.random.default_rng(3)
    model = omniglot_cnn(3, dtype=np.float64, image_size=8, filters=4)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((4, 8, 8))
    y = rng.integers(0, 3, 4)
    u, v = rng.standard_normal((2, model.size))
    hu, hv = model.hvp(params, x, y, u), model.hvp(params, x, y, v)
    assert abs(v @ hu - u @ hv) <= 1e-10 * (abs(v @ hu) + 1e-300)
    np.testing.assert_allclose(model.hvp(params, x, y, 2 * u - v), 2 * hu - hv, rtol=1e-10,
                               atol=1e-12)


def test_float32_hvp_agrees_with_float64():
    rng = np.random.default_rng(4)
    model = omniglot_cnn(5, dtype=np.float64, image_size=12, filters=4)
    params = perturbed_params(model, rng)
    x = rng.random((5, 12, 12))
    y = rng.integers(0, 5, 5)
    v = rng.standard_normal(model.size)
    exact = model.hvp(params, x, y, v)
    single = model.hvp(params.astype(np.float32), x.astype(np.float32), y,
                       v.astype(np.float32))
    assert single.dtype == np.float32
    assert np.linalg.norm(single - exact) <= 1e-4 * np.linalg.norm(exact)


def test_hvp_rejects_a_direction_of_the_wrong_shape():
    model = mlp([2, 3, 1], dtype=np.float64)
    params = model.init_params(np.random.default_rng(0))
    with pytest.raises(InputError, match=r"direction v must be a float64 array of shape"):
        model.hvp(params, np.zeros((1, 2)), np.zeros((1, 1)), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# Convolution helpers of the R-passes, against the NumPy references


@SETTINGS
@given(
    batch=st.integers(1, 3),
    size=st.integers(1, 7),
    cin=st.integers(1, 3),
    cout=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.sampled_from(["same", "valid"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=SEEDS,
)
def test_conv_helpers_match_references(batch, size, cin, cout, kernel, stride, padding, dtype,
                                       seed):
    if padding == "valid":
        assume(size >= kernel)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, cin)).astype(dtype)
    w, v = rng.standard_normal((2, kernel, kernel, cin, cout)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    _, cache = conv2d_forward(x, w, b, stride, padding)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(conv2d_apply_cached(cache, v, b),
                               conv2d_forward_reference(x, v, b, stride, padding),
                               rtol=tol, atol=tol)
    dy = rng.standard_normal(conv2d_forward_reference(x, w, b, stride, padding).shape)
    dy = dy.astype(dtype)
    _, _, dx = conv2d_backward_reference(x, v, dy, stride, padding)
    np.testing.assert_allclose(conv2d_input_gradient(v, cache, dy), dx, rtol=tol, atol=tol)


@SETTINGS
@given(
    rows=st.integers(1, 40),
    channels=st.integers(1, 5),
    relu=st.booleans(),
    need_dx=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=SEEDS,
)
def test_batchnorm_r_kernels_match_reference(rows, channels, relu, need_dx, dtype, seed):
    rng = np.random.default_rng(seed)
    x, rx, dy, rdy = rng.standard_normal((4, 1, rows, channels)).astype(dtype)
    gamma, beta, vgamma, vbeta = (1 + rng.standard_normal((4, channels))).astype(dtype)
    _, cache = batchnorm_forward(x, gamma, beta, relu=relu)
    ry, rcache = batchnorm_forward_r(cache, gamma, vgamma, vbeta, rx)
    rdgamma, rdbeta, rdx = batchnorm_backward_r(gamma, vgamma, cache, rcache, dy, rdy, need_dx)
    expected = batchnorm_r_reference(*(a.astype(np.float64) for a in
                                       (x, gamma, beta, vgamma, vbeta, rx, dy, rdy)), relu=relu)
    tol = 2e-3 if dtype == np.float32 else 1e-9
    for name, got, want in zip(("ry", "rdgamma", "rdbeta", "rdx"),
                               (ry, rdgamma, rdbeta, rdx), expected):
        if name == "rdx" and not need_dx:
            assert got is None
            continue
        assert got.dtype == dtype, name
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=name)
