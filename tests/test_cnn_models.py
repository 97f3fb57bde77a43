"""The Omniglot and Mini-ImageNet CNNs: parameter counts, shapes, gradients, bad input, and
(when PyTorch is installed) agreement with an independent PyTorch transcription of the
reference's TensorFlow model given the same weights.

Parameter counts are the trainable variables ``tf.layers`` creates in the reference models:
conv kernels and biases, batch-norm gamma and beta, dense kernel and bias.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from minireptile.kernels.batchnorm import batchnorm_forward
from minireptile.kernels.pool import maxpool_forward_reference

from minireptile.errors import InputError
from minireptile.models.cnn import miniimagenet_cnn, omniglot_cnn
from minireptile.models.gradcheck import check_model, relative_error
from minireptile.nn import BatchNorm2d, Conv2d, MaxPool2d

TOLERANCE = 1e-6
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Parameter counts and shapes


@pytest.mark.parametrize(
    "make, classes, total",
    [
        # 3·3·1·64+64 + 3·(3·3·64·64+64) + 4·(64+64) + 256·5+5
        (omniglot_cnn, 5, 640 + 3 * 36_928 + 512 + 1_285),
        (omniglot_cnn, 20, 640 + 3 * 36_928 + 512 + 5_140),
        # 3·3·3·32+32 + 3·(3·3·32·32+32) + 4·(32+32) + 1152·5+5
        (miniimagenet_cnn, 5, 896 + 3 * 9_248 + 256 + 5_765),
    ],
)
def test_parameter_counts_match_reference(make, classes, total):
    model = make(classes)
    assert model.size == total
    assert model.describe().splitlines()[-1].split()[-1] == f"{total:,}"


def test_parameter_totals_stated():
    assert omniglot_cnn(5).size == 113_221
    assert omniglot_cnn(20).size == 117_076
    assert miniimagenet_cnn(5).size == 34_661


def spatial_sizes(model, layer_type):
    shape, sizes = model.input_shape, []
    for layer in model.network.layers:
        shape = layer.output_shape(shape)
        if isinstance(layer, layer_type):
            sizes.append(shape[0])
    return sizes


def test_omniglot_shapes_follow_tensorflow_same_padding():
    model = omniglot_cnn(5)
    assert spatial_sizes(model, Conv2d) == [14, 7, 4, 2]
    assert model.network.layers[-1].in_features == 256
    rng = np.random.default_rng(0)
    out = model.predict(model.init_params(rng), rng.random((3, 28, 28), dtype=np.float32))
    assert out.shape == (3, 5) and out.dtype == np.float32


def test_miniimagenet_shapes_follow_tensorflow_same_padding():
    model = miniimagenet_cnn(5)
    assert spatial_sizes(model, Conv2d) == [84, 42, 21, 11]
    assert spatial_sizes(model, MaxPool2d) == [42, 21, 11, 6]
    assert model.network.layers[-1].in_features == 6 * 6 * 32
    # The reference's block order: conv → batch norm → max-pool → ReLU, the ReLU fused into
    # the batch norm (it commutes with max-pooling).
    kinds = [type(layer) for layer in model.network.layers[:3]]
    assert kinds == [Conv2d, BatchNorm2d, MaxPool2d] and model.network.layers[1].relu
    rng = np.random.default_rng(0)
    out = model.predict(model.init_params(rng), rng.random((2, 84, 84, 3), dtype=np.float32))
    assert out.shape == (2, 5)


# ---------------------------------------------------------------------------------------------
# Gradients


def kink_margin(model, params, x):
    """Smallest distance of any ReLU input from 0 or any max-pool runner-up from its maximum."""
    margin = np.inf
    for layer, bound in zip(model.network.layers, model.network.bind(model.layout.views(params))):
        if isinstance(layer, BatchNorm2d) and layer.relu:
            z, _ = batchnorm_forward(x, bound["gamma"], bound["beta"], layer.eps)
            margin = min(margin, np.abs(z).min())
        if isinstance(layer, MaxPool2d):
            top = maxpool_forward_reference(x, layer.pool_size, layer.strides, layer.padding)
            runner_up = maxpool_forward_reference(
                np.where(np.isin(x, top), -np.inf, x), layer.pool_size, layer.strides,
                layer.padding)
            gaps = top - runner_up
            # After a ReLU, windows whose maximum is 0 pass no gradient, ties or not.
            margin = min(margin, gaps[np.isfinite(gaps) & (top > 0)].min(initial=np.inf))
        x, _ = layer.forward(bound, x)
    return margin


def perturbed_params(model, rng):
    params = model.init_params(rng)
    return params + 0.1 * rng.standard_normal(params.shape)  # no unit gammas or zero biases


@SETTINGS
@given(
    batch=st.integers(1, 3),
    image_size=st.integers(4, 12),
    classes=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_omniglot_model_gradient_small_variant(batch, image_size, classes, seed):
    rng = np.random.default_rng(seed)
    model = omniglot_cnn(classes, dtype=np.float64, image_size=image_size, filters=3)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((batch, image_size, image_size))
    y = rng.integers(0, classes, batch)
    assume(kink_margin(model, params, x) > 1e-4)
    assert check_model(model, params, x, y) <= TOLERANCE


@SETTINGS
@given(
    batch=st.integers(1, 3),
    image_size=st.integers(2, 12),
    classes=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_miniimagenet_model_gradient_small_variant(batch, image_size, classes, seed):
    rng = np.random.default_rng(seed)
    model = miniimagenet_cnn(classes, dtype=np.float64, image_size=image_size, filters=3)
    params = perturbed_params(model, rng)
    x = rng.standard_normal((batch, image_size, image_size, 3))
    y = rng.integers(0, classes, batch)
    assume(kink_margin(model, params, x) > 1e-4)
    assert check_model(model, params, x, y) <= TOLERANCE


@pytest.mark.parametrize("make, shape", [(omniglot_cnn, (2, 28, 28)), (miniimagenet_cnn, (2, 84, 84, 3))])
def test_full_size_model_gradient_along_random_directions(make, shape):
    # Full-size models have too many parameters for coordinate-wise differences; compare the
    # analytic gradient with central differences along random directions instead.
    # A step of h along a unit direction moves each activation by well under h; the first
    # seed whose kinks are all farther than 2h away is used (deterministic).
    model = make(5, dtype=np.float64)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        params = perturbed_params(model, rng)
        x = rng.standard_normal(shape)
        if kink_margin(model, params, x) > 2e-6:
            break
    else:
        pytest.fail("no seed without near-kinks")
    y = rng.integers(0, 5, shape[0])
    _, grad = model.loss_and_grad(params, x, y)
    h = 1e-6
    analytic, numeric = [], []
    for _ in range(3):
        v = rng.standard_normal(params.shape)
        v /= np.linalg.norm(v)
        plus, _ = model.loss_and_grad(params + h * v, x, y)
        minus, _ = model.loss_and_grad(params - h * v, x, y)
        analytic.append(grad @ v)
        numeric.append((plus - minus) / (2 * h))
    assert relative_error(analytic, numeric) <= TOLERANCE


def test_float32_model_agrees_with_float64():
    rng = np.random.default_rng(2)
    model32 = omniglot_cnn(5)
    model64 = omniglot_cnn(5, dtype=np.float64)
    params = model32.init_params(rng)
    x = rng.random((4, 28, 28), dtype=np.float32)
    y = rng.integers(0, 5, 4)
    loss32, grad32 = model32.loss_and_grad(params, x, y)
    loss64, grad64 = model64.loss_and_grad(params.astype(np.float64), x, y)
    assert abs(loss32 - loss64) <= 1e-5 * abs(loss64)
    assert relative_error(grad32, grad64) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "make, x, message",
    [
        (omniglot_cnn, np.zeros((2, 28, 28, 1), np.float32), r"\('batch', 28, 28\).*\(2, 28, 28, 1\)"),
        (omniglot_cnn, np.zeros((2, 28), np.float32), r"\(2, 28\)"),
        (omniglot_cnn, np.zeros((2, 28, 28), np.uint8), "uint8"),
        (miniimagenet_cnn, np.zeros((2, 84, 84, 1), np.float32), r"\('batch', 84, 84, 3\).*\(2, 84, 84, 1\)"),
        (miniimagenet_cnn, np.zeros((2, 84, 84), np.float32), r"\(2, 84, 84\)"),
    ],
)
def test_bad_input_is_rejected(make, x, message):
    model = make(5)
    params = model.init_params(np.random.default_rng(0))
    with pytest.raises(InputError, match=message):
        model.predict(params, x)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: omniglot_cnn(0), "num_classes"),
        (lambda: omniglot_cnn(5, image_size=0), "image_size"),
        (lambda: miniimagenet_cnn(5, filters=2.5), "filters"),
        (lambda: omniglot_cnn(5, dtype=np.int32), "float32 or float64"),
    ],
)
def test_bad_configuration_is_rejected(call, message):
    with pytest.raises(InputError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Cross-check against PyTorch with TensorFlow-style padding and layouts


def torch_forward(torch, params_by_name, x, model_kind):
    """The reference model written with torch ops: NCHW internally, TF weights transposed."""
    F = torch.nn.functional
    t = {name: torch.tensor(value, requires_grad=True) for name, value in params_by_name.items()}
    h = torch.tensor(x)
    h = h[:, None] if model_kind == "omniglot" else h.permute(0, 3, 1, 2)

    def same_pad(h, k, s):
        size = h.shape[2]
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return (total // 2, total - total // 2)

    for i in range(4):
        stride = 2 if model_kind == "omniglot" else 1
        top, bottom = same_pad(h, 3, stride)
        h = F.pad(h, (top, bottom, top, bottom))
        h = F.conv2d(h, t[f"conv2d{i}.weight"].permute(3, 2, 0, 1), t[f"conv2d{i}.bias"], stride)
        h = F.batch_norm(h, None, None, t[f"batchnorm2d{i}.gamma"], t[f"batchnorm2d{i}.beta"],
                         training=True, eps=1e-3)
        if model_kind == "miniimagenet":
            top, bottom = same_pad(h, 2, 2)
            h = F.pad(h, (top, bottom, top, bottom), value=-np.inf)
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(h)
    flat = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # TF's NHWC flatten order
    logits = flat @ t["linear0.weight"] + t["linear0.bias"]
    return logits, t


@pytest.mark.parametrize("kind", ["omniglot", "miniimagenet"])
def test_matches_pytorch_transcription(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    if kind == "omniglot":
        model, x = omniglot_cnn(5, dtype=np.float64), rng.random((4, 28, 28))
    else:
        model = miniimagenet_cnn(5, dtype=np.float64, image_size=30)
        x = rng.random((3, 30, 30, 3))
    y = rng.integers(0, 5, len(x))
    params = perturbed_params(model, rng)
    named = {k: v.copy() for k, v in model.layout.views(params).items()}
    logits, tensors = torch_forward(torch, named, x, kind)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    np.testing.assert_allclose(model.predict(params, x), logits.detach().numpy(), rtol=1e-9,
                               atol=1e-9)
    ours_loss, grad = model.loss_and_grad(params, x, y)
    assert abs(ours_loss - loss.item()) <= 1e-10
    ours = model.layout.views(grad)
    for name, tensor in tensors.items():
        np.testing.assert_allclose(ours[name], tensor.grad.numpy(), rtol=1e-7, atol=1e-9,
                                   err_msg=name)
