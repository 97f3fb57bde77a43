"""The algorithms as update directions, against closed forms on quadratic losses, and the one
outer update that averages them."""

import numpy as np
import pytest

from minireptile.algorithms.directions import (
    MAML,
    FirstOrderMAML,
    GradientCombination,
    Reptile,
    make_algorithm,
)
from minireptile.algorithms.meta_iteration import OuterAdam, meta_step
from minireptile.errors import InputError


class QuadraticSteps:
    """k plain SGD steps on ``L_i(w) = ½‖A_i w − b_i‖²``, scaled by ``s_i``: the gradient is
    ``A_iᵀ(A_i w − b_i)`` and the Hessian ``A_iᵀA_i``, so every algorithm has a closed form."""

    plain_sgd = True

    def __init__(self, rng, k, size=4, lr=0.1, scales=None):
        self.k, self.lr = k, lr
        self.a = [rng.standard_normal((3, size)) for _ in range(k)]
        self.b = [rng.standard_normal(3) for _ in range(k)]
        self.s = scales or [1.0] * k
        self.model = self  # the Hessian-vector products below

    def gradient(self, i, w):
        return self.s[i] * self.a[i].T @ (self.a[i] @ w - self.b[i])

    def hessian(self, i):
        return self.a[i].T @ self.a[i]

    def run(self, w, start=0, stop=None):
        losses = []
        for i in range(start, self.k if stop is None else stop):
            losses.append(0.5 * np.sum((self.a[i] @ w - self.b[i]) ** 2))
            w -= self.lr * self.gradient(i, w)
        return losses

    def step_with_gradient(self, w, i):
        grad = self.gradient(i, w)
        loss = self.run(w, i, i + 1)[0]
        return loss, grad

    def batch(self, i):
        return i, None

    def scale(self, i):
        return self.s[i]

    def hvp(self, w, i, _, v):  # the Model.hvp signature: (params, x, y, v)
        return self.hessian(i) @ v


def trajectory(steps, phi):
    """W_0 = Φ, …, W_k, and the gradients g_1 … g_k taken along the way."""
    ws, gs = [phi.copy()], []
    for i in range(steps.k):
        gs.append(steps.gradient(i, ws[-1]))
        ws.append(ws[-1] - steps.lr * gs[-1])
    return ws, gs


@pytest.mark.parametrize("k", [1, 2, 4])
def test_each_algorithm_returns_its_closed_form(k):
    rng = np.random.default_rng(k)
    steps = QuadraticSteps(rng, k, scales=[1.0, 2.0, 0.5, 3.0][:k])
    phi = rng.standard_normal(4)
    ws, gs = trajectory(steps, phi)
    alpha = steps.lr

    d, losses = Reptile().direction(steps, phi.copy())
    np.testing.assert_allclose(d, ws[-1] - phi, rtol=1e-12)
    np.testing.assert_allclose(d, -alpha * np.sum(gs, axis=0), rtol=1e-12, atol=1e-15)
    assert len(losses) == k

    d, _ = FirstOrderMAML().direction(steps, phi.copy())
    np.testing.assert_allclose(d, -alpha * gs[-1], rtol=1e-12)

    # g_MAML = (I − α s_1 H_1) ⋯ (I − α s_{k−1} H_{k−1}) s_k ∇L_k(W_{k−1}).
    g = gs[-1]
    for i in reversed(range(k - 1)):
        g = g - alpha * steps.s[i] * steps.hessian(i) @ g
    d, _ = MAML().direction(steps, phi.copy())
    np.testing.assert_allclose(d, -alpha * g, rtol=1e-10)

    name = "+".join(f"g{i + 1}" for i in range(0, k, 2))  # g1, g1+g3, …
    d, _ = GradientCombination(name).direction(steps, phi.copy())
    np.testing.assert_allclose(d, -alpha * np.sum(gs[0::2], axis=0), rtol=1e-12)


def test_second_order_maml_and_combinations_refuse_other_inner_optimisers():
    Reptile().check_inner(plain_sgd=False)
    FirstOrderMAML().check_inner(plain_sgd=False)
    with pytest.raises(InputError, match="sgd=True, weight_decay=1"):
        MAML().check_inner(plain_sgd=False)
    with pytest.raises(InputError, match="'g1' needs plain inner SGD"):
        GradientCombination("g1").check_inner(plain_sgd=False)


def test_algorithms_are_made_by_name_and_bad_names_are_refused():
    assert repr(make_algorithm()) == "Reptile()"
    assert make_algorithm("foml", tail_shots=2).tail_shots == 2
    assert repr(make_algorithm("combination", combination="(g1+g2)/2")) == \
        "GradientCombination('(g1+g2)/2')"
    with pytest.raises(InputError, match="algorithm='fomaml': use one of"):
        make_algorithm("fomaml")
    with pytest.raises(InputError, match="tail_shots=1 needs algorithm='foml'"):
        make_algorithm("maml", tail_shots=1)
    with pytest.raises(InputError, match="tail_shots=0"):
        FirstOrderMAML(0)


def test_meta_step_moves_phi_by_the_mean_direction_in_order():
    phi = np.array([1.0, 2.0])
    directions = [np.array([1.0, 0.0]), np.array([0.0, 3.0]), np.array([2.0, 0.0])]
    mean = meta_step(phi, directions, 0.5)
    np.testing.assert_array_equal(mean, [1.0, 1.0])
    np.testing.assert_array_equal(phi, [1.5, 2.5])
    with pytest.raises(InputError, match="at least one task"):
        meta_step(phi, [], 0.5)


def test_meta_step_with_adam_takes_the_negated_mean_as_its_gradient():
    phi = np.zeros(3)
    meta_step(phi, [np.array([2.0, -1.0, 0.0])], 0.1, OuterAdam())
    # Adam's first step moves each coordinate by lr·sign(−gradient) (up to ε).
    np.testing.assert_allclose(phi, [0.1, -0.1, 0.0], atol=1e-7)
