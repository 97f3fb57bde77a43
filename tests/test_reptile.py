"""The Reptile outer loop against hand computations, and reproducibility of sine training."""

import math

import numpy as np
import pytest

from minireptile.algorithms.meta_iteration import (
    OuterAdam,
    OuterSGD,
    linear_schedule,
    make_outer,
    reptile_step,
)
from minireptile.algorithms.optim import SGD
from minireptile.errors import InputError
from minireptile.models.model import mlp
from minireptile.problems import sine


def tiny_model(fused=True):
    """1 → 2 → 1 tanh network, float64: small enough to differentiate by hand."""
    return mlp([1, 2, 1], activation="tanh", loss="mse", dtype=np.float64, fused=fused)


def hand_gradient(phi, x, y):
    """Mean-squared-error gradient of the 1-2-1 tanh network, written out in full.

    Layout of ``phi``: W0 (1×2), b0 (2), W1 (2×1), b1 (1).
    """
    w0, b0, w1, b1 = phi[0:2].reshape(1, 2), phi[2:4], phi[4:6].reshape(2, 1), phi[6:7]
    n = len(x)
    h = np.tanh(x @ w0 + b0)
    out = h @ w1 + b1
    d_out = 2 * (out - y) / n
    g_w1 = h.T @ d_out
    g_b1 = d_out.sum(axis=0)
    d_z = (d_out @ w1.T) * (1 - h**2)
    g_w0 = x.T @ d_z
    g_b0 = d_z.sum(axis=0)
    return np.concatenate([g_w0.ravel(), g_b0, g_w1.ravel(), g_b1])


def sgd_adapt(model, lr, steps=1):
    """Inner loop: ``steps`` full-batch SGD steps on the task's (x, y)."""
    def adapt(w, task):
        x, y = task
        opt = SGD(lr)
        for _ in range(steps):
            _, g = model.loss_and_grad(w, x, y)
            opt.step(w, g)
        return w
    return adapt


def random_task(rng, n=5):
    x = rng.uniform(-3, 3, (n, 1))
    return x, rng.uniform(0.5, 2) * np.sin(x + rng.uniform(0, 2 * np.pi))


@pytest.mark.parametrize("fused", [True, False])
def test_one_meta_iteration_by_hand(fused):
    model = tiny_model(fused)
    rng = np.random.default_rng(0)
    phi = model.init_params(rng)
    task = random_task(rng)
    alpha, eps = 0.3, 0.25
    w = phi - alpha * hand_gradient(phi, *task)   # the inner SGD step, by hand
    expected = phi + eps * (w - phi)
    phi_before = phi.copy()
    w_mean = reptile_step(phi, [task], sgd_adapt(model, alpha), eps)
    np.testing.assert_allclose(w_mean, w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(phi, expected, rtol=1e-12, atol=1e-14)
    assert not np.allclose(phi, phi_before)  # it moved


def test_batched_reptile_averages_the_task_solutions():
    """n tasks ⇒ Φ moves towards the mean of the W_i (here each 'task' is its solution)."""
    rng = np.random.default_rng(1)
    phi = rng.standard_normal(7)
    solutions = [rng.standard_normal(7) for _ in range(4)]
    seen = []

    def adapt(w, target):
        assert w is not phi            # adapt works on a private copy of Φ …
        np.testing.assert_array_equal(w, phi)  # … that starts at Φ, untouched by other tasks
        seen.append(True)
        w[:] = target
        return w

    start = phi.copy()
    w_mean = reptile_step(phi, solutions, adapt, 0.4)
    assert len(seen) == 4
    np.testing.assert_allclose(w_mean, np.mean(solutions, axis=0), rtol=1e-14)
    np.testing.assert_allclose(phi, start + 0.4 * (np.mean(solutions, axis=0) - start), rtol=1e-14)


def test_batched_reptile_with_real_inner_loops():
    model = tiny_model()
    rng = np.random.default_rng(2)
    phi = model.init_params(rng)
    tasks = [random_task(rng) for _ in range(3)]
    ws = [phi - 0.1 * hand_gradient(phi, *t) for t in tasks]
    expected = phi + 0.5 * (sum(ws) / 3 - phi)
    reptile_step(phi, tasks, sgd_adapt(model, 0.1), 0.5)
    np.testing.assert_allclose(phi, expected, rtol=1e-12, atol=1e-14)


def test_empty_meta_batch_is_refused():
    with pytest.raises(InputError, match="at least one task"):
        reptile_step(np.zeros(3), [], lambda w, t: w, 0.1)


def test_step_size_one_jumps_to_the_solution():
    phi = np.zeros(3)
    reptile_step(phi, ["t"], lambda w, t: w + np.array([1.0, 2.0, 3.0]), 1.0)
    np.testing.assert_array_equal(phi, [1.0, 2.0, 3.0])


# --- the schedule -------------------------------------------------------------------------------

def reference_schedule(i, meta_iters, meta_step_size, meta_step_size_final):
    """supervised-reptile's train.py, transcribed."""
    frac_done = i / meta_iters
    return frac_done * meta_step_size_final + (1 - frac_done) * meta_step_size


def test_linear_schedule_values():
    assert linear_schedule(0.1, 0.0, 0, 1000) == 0.1
    assert linear_schedule(0.1, 0.0, 500, 1000) == pytest.approx(0.05, rel=1e-15)
    # The last iteration (i = total − 1) is one step short of the final value, as in the
    # reference; i = total would reach it.
    assert linear_schedule(0.1, 0.0, 999, 1000) == pytest.approx(1e-4, rel=1e-12)
    assert linear_schedule(0.1, 0.0, 1000, 1000) == 0.0
    assert linear_schedule(1.0, 0.5, 250, 1000) == pytest.approx(0.875, rel=1e-15)
    for i in range(0, 37):
        assert linear_schedule(0.3, 0.02, i, 37) == pytest.approx(
            reference_schedule(i, 37, 0.3, 0.02), rel=1e-14)


# --- k = 1 is joint training -------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_single_inner_step_is_sgd_on_the_task_stream(fused):
    """With one inner SGD step of rate α, Φ ← Φ + ε(W − Φ) = Φ − ε·α·∇L_T(Φ)."""
    model = mlp([1, 8, 8, 1], activation="tanh", loss="mse", dtype=np.float64, fused=fused)
    rng = np.random.default_rng(3)
    phi = model.init_params(rng)
    tasks = [random_task(rng, 10) for _ in range(25)]
    alpha = 0.05
    plain = phi.copy()
    for i, task in enumerate(tasks):
        eps = linear_schedule(0.5, 0.1, i, len(tasks))
        reptile_step(phi, [task], sgd_adapt(model, alpha), eps)
        _, g = model.loss_and_grad(plain, *task)
        SGD(eps * alpha).step(plain, g)
    assert np.abs(phi - model.init_params(np.random.default_rng(3))).max() > 1e-3  # it moved
    np.testing.assert_allclose(phi, plain, rtol=1e-11, atol=1e-13)


def test_two_inner_steps_are_not_joint_training():
    """The converse: with k = 2 the update differs from SGD (the second-order term), so the
    comparison above can tell the two apart."""
    model = tiny_model()
    rng = np.random.default_rng(4)
    phi = model.init_params(rng)
    task = random_task(rng)
    plain = phi.copy()
    reptile_step(phi, [task], sgd_adapt(model, 0.3, steps=2), 1.0)
    _, g = model.loss_and_grad(plain, *task)
    plain -= 2 * 0.3 * g
    assert np.abs(phi - plain).max() > 1e-6


# --- Adam as the outer optimiser --------------------------------------------------------------

def test_outer_adam_is_adam_on_the_meta_gradient():
    model = tiny_model()
    rng = np.random.default_rng(5)
    phi = model.init_params(rng)
    ref = phi.copy()
    batches = [[random_task(rng) for _ in range(2)] for _ in range(6)]
    adapt = sgd_adapt(model, 0.1, steps=3)
    outer = OuterAdam()
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    m = np.zeros_like(ref)
    v = np.zeros_like(ref)
    for t, tasks in enumerate(batches, start=1):
        step = linear_schedule(0.2, 0.0, t - 1, len(batches))
        reptile_step(phi, tasks, adapt, step, outer)
        # By hand: the meta-gradient Φ − W̄, then TensorFlow's Adam update with lr = ε_t.
        w_bar = np.mean([adapt(ref.copy(), task) for task in tasks], axis=0)
        g = ref - w_bar
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        ref = ref - step * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(v) + adam_eps)
        np.testing.assert_allclose(phi, ref, rtol=1e-10, atol=1e-12)
    assert int(outer.state_dict()["t"]) == len(batches)


def test_outer_adam_differs_from_outer_sgd():
    model = tiny_model()
    rng = np.random.default_rng(6)
    phi_a = model.init_params(rng)
    phi_s = phi_a.copy()
    task = random_task(rng)
    reptile_step(phi_a, [task], sgd_adapt(model, 0.1), 0.1, OuterAdam())
    reptile_step(phi_s, [task], sgd_adapt(model, 0.1), 0.1, OuterSGD())
    assert np.abs(phi_a - phi_s).max() > 1e-4


def test_make_outer():
    assert isinstance(make_outer("sgd"), OuterSGD)
    assert isinstance(make_outer("adam"), OuterAdam)
    with pytest.raises(InputError, match=r"got 'momentum'"):
        make_outer("momentum")


# --- reproducibility of sine training --------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"meta_batch": 3, "outer": "adam"}])
def test_same_seed_same_parameters(overrides):
    config = sine.SineConfig(iterations=30, seed=11, **overrides)
    phi_a, losses_a = sine.train(config)
    phi_b, losses_b = sine.train(sine.SineConfig(iterations=30, seed=11, **overrides))
    assert phi_a.dtype == np.float32 and phi_a.shape == (4353,)
    np.testing.assert_array_equal(phi_a, phi_b)
    np.testing.assert_array_equal(losses_a, losses_b)
    phi_c, losses_c = sine.train(sine.SineConfig(iterations=30, seed=12, **overrides))
    assert not np.array_equal(phi_a, phi_c)
    assert not np.array_equal(losses_a, losses_c)
    # Training moved Φ away from its seed's initialisation.
    init = sine.sine_model().init_params(np.random.default_rng(11))
    assert np.abs(phi_a - init).max() > 1e-3
