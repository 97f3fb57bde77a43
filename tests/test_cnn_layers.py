"""Conv2d, BatchNorm2d, MaxPool2d, Flatten and Reshape: gradients against central finite
differences in float64 (relative error ≤ 1e-6), shapes, and rejection of impossible shapes.

ReLU and max-pooling have kinks; inputs are drawn so that no pre-activation sits near 0 and no
pooling window holds two values near each other (otherwise a ±h step could cross a kink).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from minireptile.kernels.batchnorm import batchnorm_forward_reference

from minireptile.errors import InputError
from minireptile.models.gradcheck import check_layer
from minireptile.models.model import Model
from minireptile.models.params import ParamLayout
from minireptile.nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Reshape, Sequential

TOLERANCE = 1e-6
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_gradients_match(errors):
    assert all(err <= TOLERANCE for err in errors.values()), errors


def layer_size(layer):
    return ParamLayout(layer.param_shapes()).size


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
    seed=st.integers(0, 2**32 - 1),
)
def test_conv2d_gradients(batch, height, width, cin, cout, kernel, stride, padding, seed):
    if padding == "valid":
        assume(min(height, width) >= kernel)
    rng = np.random.default_rng(seed)
    layer = Conv2d(cin, cout, kernel, strides=stride, padding=padding)
    x = rng.standard_normal((batch, height, width, cin))
    assert_gradients_match(check_layer(layer, x, rng))
    params = ParamLayout(layer.param_shapes()).views(np.zeros(layer_size(layer)))
    y, _ = layer.forward(params, x)
    assert y.shape == (batch,) + layer.output_shape(x.shape[1:])


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 4),
    width=st.integers(1, 4),
    channels=st.integers(1, 4),
    relu=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_batchnorm2d_gradients(batch, height, width, channels, relu, seed):
    rng = np.random.default_rng(seed)
    layer = BatchNorm2d(channels, relu=relu)
    x = rng.standard_normal((batch, height, width, channels))
    gamma = 1 + 0.3 * rng.standard_normal(channels)
    beta = 0.3 * rng.standard_normal(channels)
    if relu:
        z = batchnorm_forward_reference(x, gamma, beta)
        assume(np.abs(z).min() > 1e-4)
    params = np.concatenate([gamma, beta])
    assert_gradients_match(check_layer(layer, x, rng, params=params))


def test_batchnorm2d_relu_equals_batchnorm_then_relu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    params = {"gamma": rng.standard_normal(6), "beta": rng.standard_normal(6)}
    fused, _ = BatchNorm2d(6, relu=True).forward(params, x)
    plain, _ = BatchNorm2d(6).forward(params, x)
    np.testing.assert_allclose(fused, np.maximum(plain, 0), rtol=1e-15, atol=1e-15)


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    channels=st.integers(1, 3),
    padding=st.sampled_from(["same", "valid"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool2d_gradients(batch, height, width, channels, padding, seed):
    if padding == "valid":
        assume(min(height, width) >= 2)
    rng = np.random.default_rng(seed)
    shape = (batch, height, width, channels)
    # Distinct values at least 0.1 apart: no window has a near-tie for its maximum.
    x = 0.1 * rng.permutation(np.prod(shape)).reshape(shape) + 0.01 * rng.random(shape)
    layer = MaxPool2d(2, strides=2, padding=padding)
    assert_gradients_match(check_layer(layer, x, rng))


def test_flatten_and_reshape_gradients_and_order():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    assert_gradients_match(check_layer(Flatten(), x, rng))
    y, _ = Flatten().forward({}, x)
    # TensorFlow's NHWC flatten: channel fastest, then width, then height.
    assert y[1, (2 * 4 + 3) * 5 + 4] == x[1, 2, 3, 4]
    assert_gradients_match(check_layer(Reshape((3, 4, 5, 1)), x, rng))
    assert Reshape((28, 28, 1)).output_shape((28, 28)) == (28, 28, 1)


def test_layers_initialise_like_tensorflow():
    rng = np.random.default_rng(0)
    conv = Conv2d(64, 32, 3)
    flat = np.zeros(layer_size(conv))
    views = ParamLayout(conv.param_shapes()).views(flat)
    conv.init_params(views, rng)
    limit = np.sqrt(6 / (9 * 64 + 9 * 32))  # Glorot with the receptive field in both fans
    assert np.abs(views["weight"]).max() <= limit
    assert np.abs(views["weight"]).max() > 0.9 * limit
    assert np.all(views["bias"] == 0)
    bn = BatchNorm2d(5)
    bn_flat = np.full(10, np.nan)
    bn_views = ParamLayout(bn.param_shapes()).views(bn_flat)
    bn.init_params(bn_views, rng)
    assert np.all(bn_views["gamma"] == 1) and np.all(bn_views["beta"] == 0)


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (Conv2d(3, 8, 3), (84, 84), r"\(height, width, 3\), got \(84, 84\)"),
        (Conv2d(3, 8, 3), (84, 84, 1), r"\(height, width, 3\), got \(84, 84, 1\)"),
        (Conv2d(1, 8, 5, padding="valid"), (4, 9, 1), r"\(4, 9, 1\).*size 4"),
        (BatchNorm2d(8), (4, 4, 3), r"\(height, width, 8\), got \(4, 4, 3\)"),
        (MaxPool2d(), (4, 4), r"\(height, width, channels\), got \(4, 4\)"),
        (MaxPool2d(3, padding="valid"), (2, 5, 1), r"size 2"),
        (Reshape((28, 28, 1)), (28, 27), r"784 values, got shape \(28, 27\)"),
    ],
)
def test_output_shape_rejects_impossible_shapes(layer, shape, message):
    with pytest.raises(InputError, match=message):
        layer.output_shape(shape)


def test_model_construction_rejects_impossible_network():
    net = Sequential(Conv2d(1, 4, 3, strides=2, padding="valid"), Conv2d(4, 4, 5, padding="valid"),
                     Flatten(), Linear(4, 2))
    with pytest.raises(InputError, match=r"conv2d1.*\(4, 4, 4\)"):
        Model(net, "cross_entropy", (9, 9, 1))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Conv2d(0, 4, 3), "in_channels"),
        (lambda: Conv2d(1, 4, 3, padding="full"), "'full'"),
        (lambda: Conv2d(1, 4, 3, strides=1.5), "strides"),
        (lambda: BatchNorm2d(4, eps=0), "eps"),
        (lambda: MaxPool2d(0), "pool_size"),
        (lambda: Reshape((28, -1)), "positive"),
    ],
)
def test_bad_configuration(make, message):
    with pytest.raises(InputError, match=message):
        make()
