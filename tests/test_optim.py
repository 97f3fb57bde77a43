"""SGD and Adam against their formulas, state round trips, reset, and bad hyperparameters."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireptile.algorithms.optim import SGD, Adam
from minireptile.errors import InputError


def gradients(seed, n_steps, size):
    """Gradients spanning several orders of magnitude (so ε matters for some entries)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-6, 1, size)
    return [scale * rng.standard_normal(size) for _ in range(n_steps)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 20),
       lr=st.floats(1e-4, 1.0), steps=st.integers(1, 5))
def test_sgd_formula(seed, size, lr, steps):
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size)
    expected = params.copy()
    sgd = SGD(lr)
    for g in gradients(seed, steps, size):
        before = params
        sgd.step(params, g)
        assert params is before  # in place
        expected = expected - lr * g
    np.testing.assert_array_equal(params, expected)


def test_sgd_lr_override_and_float32():
    params = np.array([1.0, -2.0], np.float32)
    SGD(0.5).step(params, np.array([2.0, 2.0], np.float32), lr=0.25)
    assert params.dtype == np.float32
    np.testing.assert_array_equal(params, [0.5, -2.5])


def tf_adam(params, grads, lr, beta1, beta2, eps, lrs=None):
    """TensorFlow's ``AdamOptimizer`` written out, one scalar at a time (float64)."""
    theta = [float(p) for p in params]
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        step_lr = lr if lrs is None else lrs[t - 1]
        lr_t = step_lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        for i, gi in enumerate(g):
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            theta[i] -= lr_t * m[i] / (math.sqrt(v[i]) + eps)
    return np.array(theta)


def torch_form_adam(params, grads, lr, beta1, beta2, eps):
    """ε inside the bias correction (Kingma & Ba / PyTorch), to show the tests tell them apart."""
    theta, m, v = params.copy(), np.zeros_like(params), np.zeros_like(params)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return theta


@pytest.mark.parametrize("beta1", [0.0, 0.9])
@pytest.mark.parametrize("eps", [1e-8, 1e-3])
@pytest.mark.parametrize("seed", range(3))
def test_adam_matches_tensorflow_formula(beta1, eps, seed):
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(12)
    grads = gradients(seed, 7, 12)
    adam = Adam(lr=0.01, beta1=beta1, beta2=0.999, eps=eps)
    work = params.copy()
    for t, g in enumerate(grads, start=1):
        adam.step(work, g)
        assert adam.t == t
        np.testing.assert_allclose(work, tf_adam(params, grads[:t], 0.01, beta1, 0.999, eps),
                                   rtol=1e-13, atol=1e-15)
    # The other placement of ε gives a measurably different answer for these gradients.
    other = torch_form_adam(params, grads, 0.01, beta1, 0.999, eps)
    assert np.abs(other - work).max() > 1e-9


def test_adam_with_beta1_zero_uses_only_the_latest_gradient():
    adam = Adam(lr=0.1, beta1=0.0)
    params = np.zeros(3)
    adam.step(params, np.array([100.0, -5.0, 0.0]))
    adam.step(params, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(adam.m, [1.0, 1.0, 1.0])


def test_adam_per_step_learning_rate():
    rng = np.random.default_rng(1)
    params = rng.standard_normal(5)
    grads = gradients(1, 4, 5)
    lrs = [0.1, 0.05, 0.02, 0.001]
    adam = Adam(lr=123.0)  # overridden on every step
    work = params.copy()
    for g, lr in zip(grads, lrs):
        adam.step(work, g, lr=lr)
    np.testing.assert_allclose(work, tf_adam(params, grads, None, 0.9, 0.999, 1e-8, lrs=lrs),
                               rtol=1e-13)


def test_adam_float32_stays_float32():
    params = np.ones(4, np.float32)
    adam = Adam(lr=0.1)
    adam.step(params, np.full(4, 0.5, np.float32))
    assert params.dtype == np.float32 and adam.m.dtype == np.float32
    np.testing.assert_allclose(params, 0.9, rtol=1e-6)  # first Adam step moves by ≈ lr


def test_state_dict_round_trip_gives_identical_steps():
    rng = np.random.default_rng(2)
    grads = gradients(2, 8, 6)
    first = Adam(lr=0.01)
    params = rng.standard_normal(6)
    for g in grads[:4]:
        first.step(params, g)
    state = first.state_dict()
    assert set(state) == {"m", "v", "t"} and int(state["t"]) == 4
    # The snapshot is a copy: further steps do not change it.
    snapshot_m = state["m"].copy()
    second = Adam(lr=0.01)
    second.load_state_dict(state)
    resumed = params.copy()
    for g in grads[4:]:
        first.step(params, g)
        second.step(resumed, g)
    np.testing.assert_array_equal(state["m"], snapshot_m)
    np.testing.assert_array_equal(resumed, params)
    # Through an .npz-like round trip of plain arrays as well.
    third = Adam(lr=0.01)
    third.load_state_dict({k: np.asarray(v) for k, v in second.state_dict().items()})
    a, b = params.copy(), params.copy()
    g = grads[0]
    second.step(a, g)
    third.step(b, g)
    np.testing.assert_array_equal(a, b)


def test_state_dict_before_any_step():
    adam = Adam(lr=0.1)
    state = adam.state_dict()
    assert state["m"].size == 0 and int(state["t"]) == 0
    fresh = Adam(lr=0.1)
    fresh.load_state_dict(state)
    p, q = np.ones(3), np.ones(3)
    adam.step(p, np.array([1.0, 2.0, 3.0]))
    fresh.step(q, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(p, q)


def test_reset_forgets():
    grads = gradients(3, 3, 4)
    used = Adam(lr=0.05)
    scratch = np.zeros(4)
    for g in grads:
        used.step(scratch, g)
    used.reset()
    assert used.t == 0 and used.m is None
    p, q = np.ones(4), np.ones(4)
    used.step(p, grads[0])
    Adam(lr=0.05).step(q, grads[0])
    np.testing.assert_array_equal(p, q)
    # ... and after a reset the optimiser accepts parameters of another shape.
    used.reset()
    used.step(np.ones(9), np.ones(9))


def test_adam_refuses_parameters_of_another_shape_without_reset():
    adam = Adam(lr=0.1)
    adam.step(np.ones(3), np.ones(3))
    with pytest.raises(InputError, match=r"shape \(3,\).*shape \(4,\).*reset"):
        adam.step(np.ones(4), np.ones(4))


@pytest.mark.parametrize("state,match", [
    ({"m": np.zeros(2), "v": np.zeros(2)}, "missing"),
    ({"m": np.zeros(2), "v": np.zeros(3), "t": 1}, "disagree"),
])
def test_adam_rejects_bad_state(state, match):
    with pytest.raises(InputError, match=match):
        Adam(lr=0.1).load_state_dict(state)


def test_sgd_state():
    sgd = SGD(0.1)
    assert sgd.state_dict() == {}
    sgd.load_state_dict({})
    sgd.reset()
    with pytest.raises(InputError, match="no state"):
        sgd.load_state_dict({"m": np.zeros(1)})


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf"), "0.1", None])
def test_bad_learning_rate(lr):
    with pytest.raises(InputError, match="learning rate must be a positive number"):
        SGD(lr)
    with pytest.raises(InputError, match=re.escape(f"must be a positive number, got {lr!r}")):
        Adam(lr)


@pytest.mark.parametrize("kwargs,match", [
    ({"beta1": 1.0}, "beta1 must be in"),
    ({"beta1": -0.1}, "beta1 must be in"),
    ({"beta2": 1.0}, "beta2 must be in"),
    ({"beta2": 1.5}, "beta2 must be in"),
    ({"beta1": "0.9"}, "beta1 must be in"),
    ({"eps": 0}, "eps must be a positive number"),
    ({"eps": -1e-8}, "eps must be a positive number"),
    ({"eps": float("nan")}, "eps must be a positive number"),
])
def test_bad_adam_hyperparameters(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        Adam(lr=0.1, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)
