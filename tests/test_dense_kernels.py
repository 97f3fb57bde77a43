"""The Numba dense kernels against their NumPy references, and the float32 rational tanh of the
fused network kernel against float64 ``np.tanh``.

Tolerance of a matrix product: a sum of k products computed in any order is within
``k·eps·Σ|aᵢbᵢ|`` of the exact value, so two implementations (loops with reassociation, BLAS,
NumPy) agree to ``2·k·eps·(|x|·|w|)`` element by element. That bound is what the comparisons
below use, in float32 (eps 1.2e-7) and float64 (eps 2.2e-16) alike; an indexing error or a lost
term is larger by many orders of magnitude.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minireptile.kernels.dense import (
    LOOP_MAX_FLOPS,
    dense_backward,
    dense_backward_reference,
    dense_forward,
    dense_forward_reference,
)
from minireptile.kernels.mlp import _tanh_inplace

from minireptile.models.model import mlp

DTYPES = (np.float32, np.float64)
FAST = settings(max_examples=35, deadline=None)


def product_bound(a, b, dtype):
    """Elementwise bound on the difference of two evaluations of ``a @ b`` (see module doc)."""
    k = a.shape[1]
    eps = np.finfo(dtype).eps
    return 2 * max(k, 1) * eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))


def assert_product_close(got, expected, bound):
    assert got.shape == expected.shape
    excess = np.abs(got.astype(np.float64) - expected.astype(np.float64)) - bound
    assert excess.max() <= 0, f"off by up to {excess.max():.3g} beyond the rounding bound"


def check_forward(x, w, b):
    dtype = x.dtype
    y = dense_forward(x, w, b)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_product_close(y, dense_forward_reference(x, w, b),
                         product_bound(x, w, dtype) + 2 * np.finfo(dtype).eps * np.abs(b))


def check_backward(x, w, dy, need_dx=True):
    dtype = x.dtype
    dw, db, dx = dense_backward(x, w, dy, need_dx=need_dx)
    rdw, rdb, rdx = dense_backward_reference(x, w, dy, need_dx=need_dx)
    assert dw.dtype == db.dtype == dtype
    assert_product_close(dw, rdw, product_bound(x.T, dy, dtype))
    assert_product_close(db, rdb, product_bound(np.ones((1, len(dy))), dy, dtype)[0])
    if need_dx:
        assert dx.dtype == dtype and dx.flags.c_contiguous
        assert_product_close(dx, rdx, product_bound(dy, w.T, dtype))
    else:
        assert dx is None


def random_problem(rng, m, k, n, dtype):
    return (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype),
            rng.standard_normal(n).astype(dtype), rng.standard_normal((m, n)).astype(dtype))


dims = st.integers(1, 80)  # m·k·n up to 512,000: both sides of LOOP_MAX_FLOPS (131,072)


@FAST
@given(m=dims, k=dims, n=dims, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_kernels_equal_references(m, k, n, dtype, seed):
    x, w, b, dy = random_problem(np.random.default_rng(seed), m, k, n, dtype)
    check_forward(x, w, b)
    check_backward(x, w, dy)
    check_backward(x, w, dy, need_dx=False)


# (m, k, n) exactly at, just below and just above the loop/BLAS crossover, and the smallest.
EDGE_SHAPES = [(1, 1, 1), (1, 1, 7), (7, 1, 1), (64, 64, 32), (64, 64, 31), (64, 64, 33),
               (1, LOOP_MAX_FLOPS, 1), (1, LOOP_MAX_FLOPS + 1, 1), (3, 5, 4), (130, 40, 50)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_edge_shapes(shape, dtype):
    m, k, n = shape
    x, w, b, dy = random_problem(np.random.default_rng(m * 10007 + k * 31 + n), m, k, n, dtype)
    check_forward(x, w, b)
    check_backward(x, w, dy)
    check_backward(x, w, dy, need_dx=False)


def test_edge_shapes_straddle_the_crossover():
    """The list above really does run both branches."""
    flops = [m * k * n for m, k, n in EDGE_SHAPES]
    assert LOOP_MAX_FLOPS in flops
    assert any(f > LOOP_MAX_FLOPS for f in flops) and any(f < LOOP_MAX_FLOPS for f in flops)


def test_one_by_one_exact():
    for dtype in DTYPES:
        x, w, b = (np.array([[3.0]], dtype), np.array([[-2.0]], dtype), np.array([0.5], dtype))
        np.testing.assert_array_equal(dense_forward(x, w, b), [[-5.5]])
        dw, db, dx = dense_backward(x, w, np.array([[4.0]], dtype))
        np.testing.assert_array_equal(dw, [[12.0]])
        np.testing.assert_array_equal(db, [4.0])
        np.testing.assert_array_equal(dx, [[-8.0]])


@st.composite
def layouts(draw):
    """An (m, k) array viewed in one of several memory layouts."""
    return draw(st.sampled_from(["c", "f", "transposed", "strided_cols", "strided_rows", "neg"]))


def as_layout(a, layout):
    """A view of ``a``'s values in the given memory layout (values unchanged)."""
    if layout == "c":
        return a
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "strided_cols":
        big = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if layout == "strided_rows":
        big = np.zeros((2 * a.shape[0], a.shape[1]), a.dtype)
        big[::2] = a
        return big[::2]
    return np.ascontiguousarray(a[::-1])[::-1]  # negative stride


@FAST
@given(m=st.integers(1, 70), k=st.integers(1, 70), n=st.integers(1, 70),
       lx=layouts(), lw=layouts(), ldy=layouts(), strided_b=st.booleans(),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_non_contiguous_inputs(m, k, n, lx, lw, ldy, strided_b, dtype, seed):
    x, w, b, dy = random_problem(np.random.default_rng(seed), m, k, n, dtype)
    xv, wv, dyv = as_layout(x, lx), as_layout(w, lw), as_layout(dy, ldy)
    bv = np.repeat(b, 2)[::2] if strided_b else b
    np.testing.assert_array_equal(xv, x)
    if lx != "c":
        assert not xv.flags.c_contiguous or m == 1 or k == 1
    # Same values in any layout must give the same result as the contiguous inputs, and both
    # must match the reference.
    np.testing.assert_array_equal(dense_forward(xv, wv, bv), dense_forward(x, w, b))
    for got, want in zip(dense_backward(xv, wv, dyv), dense_backward(x, w, dy)):
        np.testing.assert_array_equal(got, want)
    check_forward(xv, wv, bv)
    check_backward(xv, wv, dyv)


def test_slice_of_a_wider_array():
    """A strided input (``a[:, ::2]``) with a transposed view as the weight."""
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        a = rng.standard_normal((9, 14)).astype(dtype)
        wt = rng.standard_normal((6, 7)).astype(dtype)
        b = rng.standard_normal(6).astype(dtype)
        x, w = a[:, ::2], wt.T
        assert not x.flags.c_contiguous and not w.flags.c_contiguous
        np.testing.assert_allclose(dense_forward(x, w, b), np.ascontiguousarray(x) @ wt.T + b,
                                   rtol=1e-5 if dtype == np.float32 else 1e-12)
        check_backward(x, w, rng.standard_normal((9, 6)).astype(dtype))


@FAST
@given(m=dims, k=dims, n=dims, need_dx=st.booleans(), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_writes_into_supplied_arrays(m, k, n, need_dx, dtype, seed):
    """dw and db as views into one flat gradient vector (how Linear calls it), pre-filled with
    NaN: they are overwritten, not accumulated into, and nothing outside them is touched."""
    x, w, b, dy = random_problem(np.random.default_rng(seed), m, k, n, dtype)
    flat = np.full(2 + k * n + n + 2, np.nan, dtype)
    dw = flat[2 : 2 + k * n].reshape(k, n)
    db = flat[2 + k * n : 2 + k * n + n]
    got_dw, got_db, dx = dense_backward(x, w, dy, dw=dw, db=db, need_dx=need_dx)
    assert got_dw is dw and got_db is db
    assert np.isnan(flat[:2]).all() and np.isnan(flat[-2:]).all()
    assert (dx is None) == (not need_dx)
    rdw, rdb, rdx = dense_backward_reference(x, w, dy)
    assert_product_close(flat[2 : 2 + k * n].reshape(k, n), rdw, product_bound(x.T, dy, dtype))
    assert_product_close(flat[2 + k * n : -2], rdb,
                         product_bound(np.ones((1, m)), dy, dtype)[0])
    if need_dx:
        assert_product_close(dx, rdx, product_bound(dy, w.T, dtype))
    # A second call with the same arrays gives the same values (overwrite, not +=).
    dense_backward(x, w, dy, dw=dw, db=db, need_dx=need_dx)
    assert_product_close(dw, rdw, product_bound(x.T, dy, dtype))


# --- the fused kernel's float32 tanh ------------------------------------------------------------

TANH_MAX_ABS_ERROR = 5e-7
GRID = np.linspace(-20, 20, 400_001).astype(np.float32)  # step 1e-4


def test_rational_tanh_matches_float64_tanh():
    z = GRID.copy()
    _tanh_inplace(z, True)
    exact = np.tanh(GRID.astype(np.float64))  # of the float32 inputs: only the approximation
    error = np.abs(z.astype(np.float64) - exact)
    assert error.max() <= TANH_MAX_ABS_ERROR, f"max error {error.max():.3g} at {GRID[error.argmax()]}"
    # Odd, bounded by 1, and non-decreasing up to rounding: near the clamp (|x| ≈ 7.9) the
    # approximation wiggles by up to 3 float32 ulp (steps down of 3.6e-7 were seen), and it
    # saturates at 0.99999976 (2 ulp below 1), both within the error bound.
    np.testing.assert_array_equal(z, -z[::-1])
    assert np.abs(z).max() <= 1
    assert np.diff(z).min() >= -TANH_MAX_ABS_ERROR
    assert abs(z[0] + 1) <= TANH_MAX_ABS_ERROR and abs(z[-1] - 1) <= TANH_MAX_ABS_ERROR


def test_rational_tanh_in_a_multidimensional_array():
    z = GRID[:400_000].reshape(400, 1000).copy()
    _tanh_inplace(z, True)
    assert np.abs(z - np.tanh(GRID[:400_000].reshape(400, 1000).astype(np.float64))).max() \
        <= TANH_MAX_ABS_ERROR


@pytest.mark.parametrize("dtype,bound", [(np.float32, TANH_MAX_ABS_ERROR), (np.float64, 1e-15)])
def test_tanh_through_a_fused_network(dtype, bound):
    """A 1-1-1 network with unit weights and zero biases computes tanh(x) exactly but for the
    tanh itself; float32 runs the rational approximation, float64 the library's tanh."""
    model = mlp([1, 1, 1], activation="tanh", loss="mse", dtype=dtype, fused=True)
    assert model.fused is not None
    params = np.array([1, 0, 1, 0], dtype=dtype)  # W0, b0, W1, b1
    x = GRID[::10].astype(dtype)[:, None]
    pred = model.predict(params, x)
    assert pred.dtype == dtype
    error = np.abs(pred[:, 0].astype(np.float64) - np.tanh(x[:, 0].astype(np.float64)))
    assert error.max() <= bound
    # The float32 approximation is not the library's: it must differ somewhere (else this test
    # would not be exercising it).
    if dtype == np.float32:
        assert np.any(pred[:, 0] != np.tanh(x[:, 0]))
