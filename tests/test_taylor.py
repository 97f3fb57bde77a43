"""The paper's Taylor expansion of the three meta-gradients, in float64 on a small network with
exact expectations: every task of a fixed set, every ordered choice of k distinct mini-batches.
Halving α must divide ‖E[g] − expansion‖ by ≈ 4 (the residual is O(α²)); an expansion with a
wrong α-coefficient leaves an O(α) residual, which halving divides by ≈ 2 only.
"""

import numpy as np
import pytest

from minireptile.algorithms.taylor import (
    ALGORITHMS,
    exact_expectations,
    expansion,
    k_permutations,
    loglog_slope,
    meta_gradients,
    monte_carlo,
)
from minireptile.models.model import mlp

LRS = (0.02, 0.01, 0.005)


def small_problem(seed=0, tasks=3, batches=4, batch=3):
    rng = np.random.default_rng(seed)
    model = mlp([2, 5, 2], activation="tanh", loss="cross_entropy", dtype=np.float64)
    phi = model.init_params(rng)
    task_list = []
    for _ in range(tasks):
        centres = rng.standard_normal((2, 2))
        mini_batches = []
        for _ in range(batches):
            labels = rng.integers(0, 2, batch)
            mini_batches.append((centres[labels] + 0.5 * rng.standard_normal((batch, 2)),
                                 labels))
        task_list.append(mini_batches)
    return model, phi, task_list


@pytest.mark.parametrize("k", [2, 3])
def test_halving_alpha_divides_the_residual_by_four(k):
    model, phi, tasks = small_problem()
    expected, avg_grad, avg_grad_inner = exact_expectations(model, phi, tasks, k, LRS)
    assert np.linalg.norm(avg_grad_inner) > 1e-3 * np.linalg.norm(avg_grad)  # not vacuous
    for name in ALGORITHMS:
        residual = [np.linalg.norm(expected[lr][name]
                                   - expansion(avg_grad, avg_grad_inner, k, lr)[name])
                    for lr in LRS]
        ratios = [residual[i] / residual[i + 1] for i in range(len(LRS) - 1)]
        assert all(3.5 <= r <= 4.5 for r in ratios), (name, residual, ratios)


@pytest.mark.parametrize("k", [2, 3])
def test_a_wrong_coefficient_leaves_a_first_order_residual(k):
    # MAML expanded with FOMAML's coefficient: the O(α) term no longer cancels.
    model, phi, tasks = small_problem()
    expected, avg_grad, avg_grad_inner = exact_expectations(model, phi, tasks, k, LRS)
    residual = [np.linalg.norm(expected[lr]["maml"]
                               - expansion(avg_grad, avg_grad_inner, k, lr)["foml"])
                for lr in LRS]
    ratios = [residual[i] / residual[i + 1] for i in range(len(LRS) - 1)]
    assert all(1.8 <= r <= 2.2 for r in ratios), ratios


def test_meta_gradients_at_k_one_coincide_and_reptile_is_the_displacement():
    model, phi, tasks = small_problem()
    (batch,) = tasks[0][:1]
    g = meta_gradients(model, phi, [batch], 0.1)
    np.testing.assert_array_equal(g["reptile"], g["foml"])
    np.testing.assert_array_equal(g["maml"], g["foml"])
    three = tasks[0][:3]
    w = phi.copy()
    for x, y in three:
        w -= 0.1 * model.loss_and_grad(w, x, y)[1]
    np.testing.assert_allclose(meta_gradients(model, phi, three, 0.1)["reptile"],
                               (phi - w) / 0.1, rtol=1e-12, atol=1e-12)


def test_k_permutations_are_ordered_and_distinct():
    perms = k_permutations(4, 3)
    assert len(perms) == 24 and len(set(perms)) == 24
    assert all(len(set(p)) == 3 for p in perms)


def test_monte_carlo_residual_falls_with_slope_two():
    model, phi, tasks = small_problem()

    def draw(rng, k):
        task = tasks[rng.integers(len(tasks))]
        return [task[i] for i in rng.choice(len(task), size=k, replace=False)]

    lrs = (0.04, 0.02, 0.01, 0.005)
    result = monte_carlo(model, phi, draw, 3, lrs, draws=20, rng=np.random.default_rng(0))
    for name in ALGORITHMS:
        assert 1.8 <= loglog_slope(lrs, result["residual"][name]) <= 2.2, name
    # The fitted coefficients of AvgGradInner are near the paper's at small α (Monte-Carlo
    # noise, not the expansion, limits the agreement).
    predicted = {"reptile": 3, "foml": 2, "maml": 4}  # ½k(k−1), k−1, 2(k−1) at k = 3
    for name, c in predicted.items():
        assert abs(result["coefficient"][name][-1] - c) <= 0.25 * c, (name, result["coefficient"])
