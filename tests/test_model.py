"""The Model API: parameter table, initialisation, dtypes, SGD steps, and errors on bad input."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minireptile.errors import InputError
from minireptile.models.model import Model, mlp
from minireptile.nn import Linear, Sequential, Tanh
from minireptile.problems import sine

# --- describe -----------------------------------------------------------------------------------

def test_sine_model_describe():
    model = sine.sine_model()
    text = model.describe()
    lines = text.splitlines()
    assert model.size == 4353 == 64 + 64 + 64 * 64 + 64 + 64 + 1
    assert "input (1,) -> output (1,)" in lines[0]
    expected = [("linear0.weight", (1, 64), 64), ("linear0.bias", (64,), 64),
                ("linear1.weight", (64, 64), 4096), ("linear1.bias", (64,), 64),
                ("linear2.weight", (64, 1), 64), ("linear2.bias", (1,), 1)]
    body = lines[2:-1]
    assert len(body) == len(expected)
    for line, (name, shape, count) in zip(body, expected):
        assert line.split()[0] == name
        assert str(shape) in line
        assert line.split()[-1] == f"{count:,}"
    assert lines[-1].split() == ["total", "4,353"]


def test_describe_of_another_network():
    model = mlp([3, 7, 2], activation="relu", loss="cross_entropy")
    assert model.size == 3 * 7 + 7 + 7 * 2 + 2
    assert model.describe().splitlines()[-1].split() == ["total", f"{model.size:,}"]
    assert model.layout.names == ["linear0.weight", "linear0.bias", "linear1.weight",
                                  "linear1.bias"]


# --- initialisation ---------------------------------------------------------------------------

def test_init_params_is_deterministic_per_seed():
    model = sine.sine_model()
    a = model.init_params(np.random.default_rng(42))
    b = model.init_params(np.random.default_rng(42))
    c = model.init_params(np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_init_params_matches_pytorch_default_bounds():
    """PyTorch's nn.Linear draws weight and bias from U(−1/√fan_in, 1/√fan_in)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = sine.sine_model()
    views = model.layout.views(model.init_params(np.random.default_rng(0)))
    for i, (fan_in, fan_out) in enumerate([(1, 64), (64, 64), (64, 1)]):
        bound = 1 / math.sqrt(fan_in)
        reference = torch.nn.Linear(fan_in, fan_out)
        for ours, theirs in ((views[f"linear{i}.weight"], reference.weight),
                             (views[f"linear{i}.bias"], reference.bias)):
            theirs = theirs.detach().numpy()
            assert ours.size == theirs.size
            assert np.abs(theirs).max() <= bound            # the bound is PyTorch's …
            assert np.abs(ours).max() <= bound              # … and ours respects it
            if ours.size >= 64:
                # … and fills it, as a uniform distribution does (not a narrower one).
                assert np.abs(ours).max() > 0.9 * bound
                assert stats.kstest(ours.ravel(), stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
                # Same spread as PyTorch's draw (uniform std = bound/√3).
                assert ours.std() == pytest.approx(theirs.std(), rel=0.25)


def test_glorot_init():
    model = mlp([20, 30, 5], init="glorot")
    views = model.layout.views(model.init_params(np.random.default_rng(0)))
    for name, (fan_in, fan_out) in (("linear0", (20, 30)), ("linear1", (30, 5))):
        limit = math.sqrt(6 / (fan_in + fan_out))
        w = views[f"{name}.weight"]
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
        np.testing.assert_array_equal(views[f"{name}.bias"], 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", [True, False])
def test_dtypes(dtype, fused):
    model = mlp([2, 5, 1], dtype=dtype, fused=fused)
    params = model.init_params(np.random.default_rng(0))
    assert params.dtype == dtype and params.shape == (model.size,)
    x = np.ones((3, 2), np.float64)  # float64 inputs are accepted and follow params' dtype
    loss, grad = model.loss_and_grad(params, x, np.zeros((3, 1), np.float32))
    assert isinstance(loss, float) and grad.dtype == dtype
    assert model.predict(params, x).dtype == dtype


def test_default_dtype_is_float32():
    assert sine.sine_model().init_params(np.random.default_rng(0)).dtype == np.float32
    assert sine.sine_model(np.float64).init_params(np.random.default_rng(0)).dtype == np.float64


def test_float32_and_float64_agree():
    m32, m64 = mlp([2, 6, 3], loss="mse"), mlp([2, 6, 3], loss="mse", dtype=np.float64)
    p64 = m64.init_params(np.random.default_rng(1))
    p32 = p64.astype(np.float32)
    x = np.random.default_rng(2).standard_normal((4, 2))
    y = np.random.default_rng(3).standard_normal((4, 3))
    l32, g32 = m32.loss_and_grad(p32, x, y)
    l64, g64 = m64.loss_and_grad(p64, x, y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)


def test_init_rejects_a_legacy_random_state():
    with pytest.raises(InputError, match="Generator, got RandomState"):
        sine.sine_model().init_params(np.random.RandomState(0))


# --- sgd_steps ---------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), loss=st.sampled_from(["mse", "cross_entropy"]),
       activation=st.sampled_from(["tanh", "relu"]), n_batches=st.integers(0, 6),
       batch=st.integers(1, 8))
def test_sgd_steps_equal_the_explicit_loop(seed, loss, activation, n_batches, batch):
    rng = np.random.default_rng(seed)
    sizes = [3, 9, 4]
    x = rng.standard_normal((20, 3))
    y = rng.standard_normal((20, 4)) if loss == "mse" else rng.integers(0, 4, 20)
    batches = [rng.choice(20, batch, replace=False) for _ in range(n_batches)]
    for dtype, rtol, atol in ((np.float64, 1e-11, 1e-13), (np.float32, 1e-5, 1e-6)):
        reference = mlp(sizes, activation, loss, dtype=dtype, fused=False)
        start = reference.init_params(np.random.default_rng(seed))
        expected = start.copy()
        expected_losses = []
        for idx in batches:  # the loop the docstring promises, written out
            value, grad = reference.loss_and_grad(expected, x[idx], y[idx])
            expected -= dtype(0.1) * grad
            expected_losses.append(value)
        for fused in (True, False):
            model = mlp(sizes, activation, loss, dtype=dtype, fused=fused)
            params = start.copy()
            losses = model.sgd_steps(params, x, y, batches, 0.1)
            assert losses.shape == (n_batches,)
            np.testing.assert_allclose(losses, expected_losses, rtol=rtol, atol=atol)
            np.testing.assert_allclose(params, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("batches", [[np.array([], dtype=np.int64)], [np.array([0, 20])],
                                     [np.array([-1])], [np.array([0.0, 1.0])]],
                         ids=["empty", "too-large", "negative", "float"])
def test_sgd_steps_reject_bad_batches(fused, batches):
    model = mlp([1, 4, 1], fused=fused)
    params = model.init_params(np.random.default_rng(0))
    before = params.copy()
    with pytest.raises(InputError, match=r"mini-batches must be non-empty integer indices in \[0, 20\)"):
        model.sgd_steps(params, np.zeros((20, 1)), np.zeros((20, 1)), batches, 0.1)
    np.testing.assert_array_equal(params, before)


# --- bad input -------------------------------------------------------------------------------

F32 = np.float32


def problem(loss="mse", fused=True):
    model = mlp([3, 4, 5], loss=loss, fused=fused)
    params = model.init_params(np.random.default_rng(0))
    x = np.zeros((2, 3), F32)
    y = np.zeros((2, 5), F32) if loss == "mse" else np.array([0, 4])
    return model, params, x, y


def expect_error(call, *fragments):
    """``call`` raises InputError whose message contains every fragment (literally)."""
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
class TestBadInput:
    def calls(self, model, params, y):
        """loss_and_grad and predict, as functions of (params, x)."""
        return [lambda p, x: model.loss_and_grad(p, x, y), lambda p, x: model.predict(p, x)]

    def test_wrong_x_shape(self, loss, fused):
        model, params, x, y = problem(loss, fused)
        for call in self.calls(model, params, y):
            expect_error(lambda: call(params, np.zeros((2, 4), F32)), "shape (2, 4)", "3)")
            expect_error(lambda: call(params, np.zeros((2, 3, 1), F32)), "shape (2, 3, 1)", "3)")
            expect_error(lambda: call(params, np.zeros(3, F32)), "shape (3,)", "3)")
            expect_error(lambda: call(params, [[0.0, 0.0, 0.0]]), "list", "3)")
            expect_error(lambda: call(params, np.zeros((0, 3), F32)), "(0, 3)", "at least one")

    @pytest.mark.parametrize("bad", [np.int64, np.int32, np.complex128, np.bool_])
    def test_wrong_x_dtype(self, loss, fused, bad):
        model, params, x, y = problem(loss, fused)
        for call in self.calls(model, params, y):
            expect_error(lambda: call(params, x.astype(bad)), str(np.dtype(bad)),
                         "float32 or float64")

    def test_wrong_params(self, loss, fused):
        model, params, x, y = problem(loss, fused)
        size = model.size
        for call in self.calls(model, params, y):
            expect_error(lambda: call(params[:-1], x), f"{size} values", f"shape ({size - 1},)")
            expect_error(lambda: call(np.zeros(size + 1, F32), x), f"shape ({size + 1},)")
            expect_error(lambda: call(params.reshape(1, -1), x), f"shape (1, {size})")
            expect_error(lambda: call(params.astype(np.int64), x), "int64", "float32 or float64")
            expect_error(lambda: call(params.astype(np.float16), x), "float16",
                         "float32 or float64")
            expect_error(lambda: call(list(params), x), "list", f"{size} values")

    def test_wrong_out(self, loss, fused):
        model, params, x, y = problem(loss, fused)
        expect_error(lambda: model.loss_and_grad(params, x, y, out=np.zeros(3, F32)),
                     "shape (3,)", f"shape ({model.size},)")
        expect_error(lambda: model.loss_and_grad(params, x, y, out=np.zeros(model.size)),
                     "float64", "float32")
        expect_error(lambda: model.loss_and_grad(params, x, y, out=params), "separate")


@pytest.mark.parametrize("fused", [True, False])
def test_wrong_target_shape_and_dtype_for_mse(fused):
    model, params, x, y = problem("mse", fused)
    expect_error(lambda: model.loss_and_grad(params, x, np.zeros((2, 4), F32)),
                 "shape (2, 5)", "shape (2, 4)")
    expect_error(lambda: model.loss_and_grad(params, x, np.zeros(2, F32)),
                 "shape (2, 5)", "shape (2,)")
    expect_error(lambda: model.loss_and_grad(params, x, np.zeros((3, 5), F32)),
                 "shape (2, 5)", "shape (3, 5)")
    expect_error(lambda: model.loss_and_grad(params, x, np.zeros((2, 5), np.int64)),
                 "floats", "int64")


@pytest.mark.parametrize("fused", [True, False])
def test_bad_labels_for_cross_entropy(fused):
    model, params, x, y = problem("cross_entropy", fused)
    expect_error(lambda: model.loss_and_grad(params, x, np.array([0, 5])), "[0, 5)", "to 5")
    expect_error(lambda: model.loss_and_grad(params, x, np.array([-1, 2])), "[0, 5)", "from -1")
    expect_error(lambda: model.loss_and_grad(params, x, np.array([0.0, 1.0])),
                 "integers", "float64")
    expect_error(lambda: model.loss_and_grad(params, x, np.array([0, 1, 2])),
                 "shape (2,)", "shape (3,)")
    expect_error(lambda: model.loss_and_grad(params, x, np.zeros((2, 5), np.int64)),
                 "shape (2,)", "shape (2, 5)")
    # Unsigned labels are integers too.
    model.loss_and_grad(params, x, np.array([0, 4], np.uint8))


def test_bad_model_configuration():
    with pytest.raises(InputError, match=re.escape("got [1]")):
        mlp([1])
    with pytest.raises(InputError, match=re.escape("got [1, 0, 1]")):
        mlp([1, 0, 1])
    with pytest.raises(InputError, match="got 'sigmoid'"):
        mlp([1, 2], activation="sigmoid")
    with pytest.raises(InputError, match="got 'hinge'"):
        mlp([1, 2], loss="hinge")
    with pytest.raises(InputError, match="got float16"):
        mlp([1, 2], dtype=np.float16)
    with pytest.raises(InputError, match=re.escape("layer linear1: Linear expects per-example input shape (4,), got (2,)")):
        Model(Sequential(Linear(3, 2), Tanh(), Linear(4, 1)), "mse", (3,))
