"""Numba kernels for convolution, batch norm and max-pooling against their NumPy references.

float64: kernel and reference agree to rounding (relative 1e-10 of the largest magnitude).
float32: the kernel runs on float32 inputs; the reference runs on the same values in float64.
Tolerance: ``|kernel − reference| ≤ 1e-4·|reference| + 1e-5·max|reference|`` elementwise
(sums of up to ~10⁴ float32 products; the observed worst case is under 1e-6 of the maximum).
Max-pooling selects values, so its forward pass is compared exactly.
"""

import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from minireptile.kernels.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_reference,
    batchnorm_forward,
    batchnorm_forward_reference,
)
from minireptile.kernels.conv import (
    conv2d_backward,
    conv2d_backward_reference,
    conv2d_forward,
    conv2d_forward_reference,
    output_size_and_padding,
)
from minireptile.kernels.pool import (
    maxpool_backward,
    maxpool_backward_reference,
    maxpool_forward,
    maxpool_forward_reference,
)

from minireptile.errors import InputError

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DTYPES = [np.float32, np.float64]


def assert_matches(actual, reference, dtype):
    """Compare a kernel's output to a float64 reference with the dtype's tolerance."""
    reference = np.asarray(reference, dtype=np.float64)
    assert actual.shape == reference.shape
    assert actual.dtype == dtype
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    if dtype == np.float32:
        np.testing.assert_allclose(actual, reference, rtol=1e-4, atol=1e-5 * scale + 1e-30)
    else:
        np.testing.assert_allclose(actual, reference, rtol=1e-10, atol=1e-10 * scale + 1e-300)


def draw_array(rng, shape, dtype):
    """Standard normal values, rounded to the dtype, plus the same values in float64."""
    a = rng.standard_normal(shape).astype(dtype)
    return a, a.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# TensorFlow's padding rule


@pytest.mark.parametrize(
    "sizes, stride",
    [((28, 14, 7, 4, 2), 2)],
)
def test_same_padding_omniglot_chain(sizes, stride):
    for size, expected in zip(sizes[:-1], sizes[1:]):
        assert output_size_and_padding(size, 3, stride, "same")[0] == expected


def test_same_padding_miniimagenet_chain():
    # conv 3×3 stride 1 keeps the size; the 2×2 stride-2 max-pool halves it, rounding up.
    size = 84
    seen = [size]
    for _ in range(4):
        assert output_size_and_padding(size, 3, 1, "same") == (size, 1, 1)
        size = output_size_and_padding(size, 2, 2, "same")[0]
        seen.append(size)
    assert seen == [84, 42, 21, 11, 6]


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (28, 3, 2, (14, 0, 1)),  # odd pixel at the bottom/right
        (14, 3, 2, (7, 0, 1)),
        (7, 3, 2, (4, 1, 1)),
        (4, 3, 2, (2, 0, 1)),
        (84, 3, 1, (84, 1, 1)),
        (21, 2, 2, (11, 0, 1)),
        (42, 2, 2, (21, 0, 0)),
        (1, 3, 2, (1, 1, 1)),
        (5, 1, 2, (3, 0, 0)),
    ],
)
def test_same_padding_amounts(size, kernel, stride, expected):
    assert output_size_and_padding(size, kernel, stride, "same") == expected


def test_valid_padding_sizes_and_errors():
    assert output_size_and_padding(28, 3, 1, "valid") == (26, 0, 0)
    assert output_size_and_padding(28, 3, 2, "valid") == (13, 0, 0)
    assert output_size_and_padding(3, 3, 2, "valid") == (1, 0, 0)
    with pytest.raises(InputError, match="size 2"):
        output_size_and_padding(2, 3, 1, "valid")
    with pytest.raises(InputError, match="'full'"):
        output_size_and_padding(8, 3, 1, "full")


# ---------------------------------------------------------------------------------------------
# Convolution


conv_cases = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 12),
        "height": st.integers(1, 30),
        "width": st.integers(1, 30),
        "cin": st.integers(1, 70),
        "cout": st.integers(1, 70),
        "kernel": st.sampled_from([1, 2, 3, 3, 4, 5]),
        "stride": st.integers(1, 2),
        "padding": st.sampled_from(["same", "valid"]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def check_conv(case, dtype):
    c = case
    if c["padding"] == "valid":
        assume(min(c["height"], c["width"]) >= c["kernel"])
    rng = np.random.default_rng(c["seed"])
    x, x64 = draw_array(rng, (c["batch"], c["height"], c["width"], c["cin"]), dtype)
    w, w64 = draw_array(rng, (c["kernel"], c["kernel"], c["cin"], c["cout"]), dtype)
    b, b64 = draw_array(rng, (c["cout"],), dtype)
    y, cache = conv2d_forward(x, w, b, c["stride"], c["padding"])
    assert_matches(y, conv2d_forward_reference(x64, w64, b64, c["stride"], c["padding"]), dtype)
    dy, dy64 = draw_array(rng, y.shape, dtype)
    dw, db, dx = conv2d_backward(w, cache, dy)
    ref = conv2d_backward_reference(x64, w64, dy64, c["stride"], c["padding"])
    for got, want in zip((dw, db, dx), ref):
        assert_matches(got, want, dtype)
    _, _, none = conv2d_backward(w, cache, dy, need_dx=False)
    assert none is None


EDGE_CONV = dict(batch=1, height=1, width=1, cin=1, cout=1, kernel=3, stride=1, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=conv_cases)
@example(case={**EDGE_CONV, "seed": 0})
@example(case={**EDGE_CONV, "stride": 2, "seed": 1})
@example(case=dict(EDGE_CONV, height=28, width=28, cout=64, stride=2, seed=2))
@example(case=dict(EDGE_CONV, batch=3, height=7, width=8, cin=5, cout=4, kernel=3, stride=2,
                   padding="valid", seed=3))
@example(case=dict(EDGE_CONV, batch=2, height=1, width=1, cin=2, kernel=1, padding="valid",
                   seed=4))
def test_conv_matches_reference(dtype, case):
    check_conv(case, dtype)


def test_conv_writes_into_given_gradient_arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    y, cache = conv2d_forward(x, w, np.zeros(4), 2, "same")
    dw, db = np.full(w.shape, np.nan), np.full(4, np.nan)
    out_dw, out_db, _ = conv2d_backward(w, cache, np.ones_like(y), dw=dw, db=db)
    assert out_dw is dw and out_db is db
    ref_dw, ref_db, _ = conv2d_backward_reference(x, w, np.ones_like(y), 2, "same")
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, ref_db)


@pytest.mark.parametrize(
    "x, w, message",
    [
        (np.zeros((2, 5, 5)), np.zeros((3, 3, 1, 4)), r"\(2, 5, 5\)"),
        (np.zeros((2, 5, 5, 2)), np.zeros((3, 3, 1, 4)), r"1 channels.*\(2, 5, 5, 2\)"),
        (np.zeros((2, 2, 5, 1)), np.zeros((3, 3, 1, 4)), r"\(2, 2, 5, 1\) with a 3x3.*size 2"),
        (np.zeros((2, 5, 5, 1), dtype=np.int64), np.zeros((3, 3, 1, 4)), r"int64"),
        (np.zeros((2, 5, 5, 1), dtype=np.float32), np.zeros((3, 3, 1, 4)), r"one dtype"),
    ],
)
def test_conv_rejects_bad_input(x, w, message):
    with pytest.raises(InputError, match=message):
        conv2d_forward(x, w, np.zeros(4, dtype=w.dtype), 1, "valid")


# ---------------------------------------------------------------------------------------------
# Batch normalisation


bn_cases = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 12),
        "height": st.integers(1, 30),
        "width": st.integers(1, 30),
        "channels": st.integers(1, 70),
        "relu": st.booleans(),
        "offset": st.sampled_from([0.0, 3.0]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def check_batchnorm(case, dtype):
    c = case
    rng = np.random.default_rng(c["seed"])
    shape = (c["batch"], c["height"], c["width"], c["channels"])
    x, x64 = draw_array(rng, shape, dtype)
    x = (x + dtype(c["offset"])).astype(dtype)
    x64 = x.astype(np.float64)
    gamma, gamma64 = draw_array(rng, (c["channels"],), dtype)
    beta, beta64 = draw_array(rng, (c["channels"],), dtype)
    y, cache = batchnorm_forward(x, gamma, beta, relu=c["relu"])
    assert_matches(y, batchnorm_forward_reference(x64, gamma64, beta64, relu=c["relu"]), dtype)
    dy, dy64 = draw_array(rng, shape, dtype)
    got = batchnorm_backward(gamma, cache, dy)
    if c["relu"] and dtype == np.float32:
        # A pre-activation within float32 rounding of 0 may land on either side of the kink;
        # take the ReLU mask from the kernel's own output (ReLU backward is dy·[y > 0]).
        want = batchnorm_backward_reference(x64, gamma64, beta64, dy64 * (y > 0))
    else:
        want = batchnorm_backward_reference(x64, gamma64, beta64, dy64, relu=c["relu"])
    for g, r in zip(got, want):
        assert_matches(g, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=bn_cases)
@example(case=dict(batch=1, height=1, width=1, channels=1, relu=False, offset=0.0, seed=0))
@example(case=dict(batch=1, height=1, width=1, channels=5, relu=True, offset=3.0, seed=1))
@example(case=dict(batch=1, height=3, width=2, channels=1, relu=True, offset=0.0, seed=2))
def test_batchnorm_matches_reference(dtype, case):
    check_batchnorm(case, dtype)


def test_batchnorm_single_value_per_channel():
    # One 1×1 example: x̂ = 0, so y = β and no gradient reaches x.
    x = np.array([[[[2.0, -1.0]]]])
    gamma, beta = np.array([1.5, 2.0]), np.array([0.25, -0.5])
    y, cache = batchnorm_forward(x, gamma, beta)
    np.testing.assert_array_equal(y.ravel(), beta)
    dgamma, dbeta, dx = batchnorm_backward(gamma, cache, np.ones_like(y))
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 1)


def test_batchnorm_rejects_bad_input():
    with pytest.raises(InputError, match=r"int64 array of shape \(2, 3\)"):
        batchnorm_forward(np.zeros((2, 3), dtype=np.int64), np.ones(3), np.zeros(3))
    with pytest.raises(InputError, match=r"gamma must be a float64 array of shape \(3,\)"):
        batchnorm_forward(np.zeros((2, 3)), np.ones(4), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# Max-pooling


pool_cases = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 12),
        "height": st.integers(1, 30),
        "width": st.integers(1, 30),
        "channels": st.integers(1, 70),
        "pool": st.sampled_from([2, 2, 2, 1, 3]),
        "stride": st.integers(1, 2),
        "padding": st.sampled_from(["same", "valid"]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def check_pool(case, dtype):
    c = case
    if c["padding"] == "valid":
        assume(min(c["height"], c["width"]) >= c["pool"])
    rng = np.random.default_rng(c["seed"])
    shape = (c["batch"], c["height"], c["width"], c["channels"])
    x, x64 = draw_array(rng, shape, dtype)
    args = (c["pool"], c["stride"], c["padding"])
    y, cache = maxpool_forward(x, *args)
    np.testing.assert_array_equal(y, maxpool_forward_reference(x, *args))
    dy, dy64 = draw_array(rng, y.shape, dtype)
    assert_matches(maxpool_backward(cache, dy), maxpool_backward_reference(x64, dy64, *args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=pool_cases)
@example(case=dict(batch=1, height=1, width=1, channels=1, pool=2, stride=2, padding="same",
                   seed=0))
@example(case=dict(batch=2, height=21, width=21, channels=32, pool=2, stride=2, padding="same",
                   seed=1))
@example(case=dict(batch=1, height=6, width=5, channels=1, pool=2, stride=2, padding="valid",
                   seed=2))
def test_maxpool_matches_reference(dtype, case):
    check_pool(case, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_ties_go_to_first_cell_in_row_major_order(dtype):
    x = np.zeros((1, 3, 3, 2), dtype=dtype)
    x[0, 1, :, 1] = 1.0  # channel 1: ties along the second row
    y, cache = maxpool_forward(x, 2, 2, "same")
    dx = maxpool_backward(cache, np.ones_like(y))
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = expected[0, 0, 2, 0] = expected[0, 2, 0, 0] = expected[0, 2, 2, 0] = 1
    expected[0, 1, 0, 1] = expected[0, 1, 2, 1] = expected[0, 2, 0, 1] = expected[0, 2, 2, 1] = 1
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_array_equal(dx, maxpool_backward_reference(x, np.ones_like(y)))


def test_maxpool_padded_cells_never_win():
    x = -np.ones((1, 3, 3, 1))  # all negative: a zero-padded cell would win
    y, _ = maxpool_forward(x)
    np.testing.assert_array_equal(y, -1)


def test_maxpool_rejects_bad_input():
    with pytest.raises(InputError, match=r"\(4, 4, 1\)"):
        maxpool_forward(np.zeros((4, 4, 1)))
    with pytest.raises(InputError, match="int32"):
        maxpool_forward(np.zeros((1, 4, 4, 1), dtype=np.int32))
    with pytest.raises(InputError, match=r"\(1, 1, 4, 1\).*size 1"):
        maxpool_forward(np.zeros((1, 1, 4, 1)), 2, 2, "valid")


# ---------------------------------------------------------------------------------------------
# Recycled output arrays


def test_outputs_are_recycled_only_when_unreferenced():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 16, 8))
    w = rng.standard_normal((3, 3, 8, 64))
    b = np.zeros(64)
    first, _ = conv2d_forward(x, w, b, 1, "same")  # 512 KiB: pooled
    kept = first.copy()
    view = first[:, :2]
    del first
    second, _ = conv2d_forward(2 * x, w, b, 1, "same")
    second_ref = weakref.ref(second)
    np.testing.assert_array_equal(view, kept[:, :2])  # a live view pins the array
    assert not np.shares_memory(view, second)
    first_ref = weakref.ref(view.base)
    del view
    del second
    third, _ = conv2d_forward(3 * x, w, b, 1, "same")
    assert third is first_ref() or third is second_ref()  # unreferenced: handed out again
    np.testing.assert_allclose(third, conv2d_forward_reference(3 * x, w, b, 1, "same"),
                               rtol=1e-12, atol=1e-12)
    y, cache = batchnorm_forward(third, np.ones(64), np.zeros(64))
    y_again, _ = batchnorm_forward(2 * third, np.ones(64), np.zeros(64))
    assert not np.shares_memory(y, y_again)  # the first output is still referenced
