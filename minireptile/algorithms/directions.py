"""The meta-learning algorithms, each a small object that turns one task's inner loop into an
update direction for Φ.

A task's inner loop is k steps of an inner optimiser on k mini-batches, starting from a copy
``w`` of Φ (an :class:`InnerSteps`, written by the problem: few-shot classification or sine
regression). Each algorithm runs those steps and returns the direction ``d`` it asks Φ to
move along; the meta-iteration (:func:`~minireptile.algorithms.meta_iteration.meta_step`)
averages the directions of a meta-batch and moves ``Φ ← Φ + ε·mean(d)``, or hands ``−mean(d)``
to an outer optimiser as a gradient. With k SGD steps at rate α and inner gradients
g1 … gk:

* :class:`Reptile`: ``d = W_k − Φ``; with inner SGD, ``−α (g1 + … + gk)``.
* :class:`FirstOrderMAML`: ``d = W_k − W_{k−1}``, the last step alone; with SGD, ``−α gk``.
* :class:`MAML`: the last step carried back through the first k − 1 with Hessian-vector
  products, ``−α g_MAML``.
* :class:`GradientCombination`: ``d = −α Σ c_i g_i`` for any weights c_i.

>>> algorithm = make_algorithm("foml", tail_shots=1)
>>> algorithm
FirstOrderMAML(tail_shots=1)
"""

from typing import Protocol

import numpy as np

from ..errors import InputError
from .combinations import Combination, parse_combination
from .maml import backpropagate_through_sgd


class InnerSteps(Protocol):
    """The k inner steps of one task, as an algorithm drives them.

    Attributes
    ----------
    k : int
        Number of steps (mini-batches).
    lr : float
        The inner learning rate α.
    model : Model
        The network (for Hessian-vector products).
    plain_sgd : bool
        True when every step is ``w ← w − α·s_i·∇L_i(w)``: SGD with no weight decay, which
        is what second-order MAML differentiates.
    """

    k: int
    lr: float
    model: object
    plain_sgd: bool

    def run(self, w, start=0, stop=None):
        """Take steps ``start … stop − 1`` in place; return each step's loss (before it), a
        sequence of floats."""

    def step_with_gradient(self, w, i):
        """Take step ``i`` in place; return ``(loss, gradient it followed)`` (a new array)."""

    def batch(self, i):
        """``(inputs, targets)`` of mini-batch ``i``."""

    def scale(self, i):
        """``s_i``: step ``i`` follows ``s_i·∇L_i`` (1 for a mean loss, the batch size for a
        summed one)."""


class Reptile:
    """Reptile: ``d = W_k − Φ``, where the k inner steps took ``w`` from Φ."""

    name = "reptile"
    tail_shots = None

    def check_inner(self, plain_sgd):
        """Any inner optimiser will do."""

    def direction(self, steps, w):
        """Run every step on ``w`` (a copy of Φ, changed in place).

        Returns
        -------
        direction : ndarray, shape (size,)
        losses : sequence of float
        """
        start = w.copy()
        losses = steps.run(w)
        return w - start, losses

    def __repr__(self):
        return "Reptile()"


class FirstOrderMAML:
    """First-order MAML: ``d = W_k − W_{k−1}``, the move of the last inner step alone.

    Parameters
    ----------
    tail_shots : int, optional
        Examples per class held out of the task for the last step (the problem draws that
        step's mini-batch from them, the earlier ones from the rest).
    """

    name = "foml"

    def __init__(self, tail_shots=None):
        if tail_shots is not None and (isinstance(tail_shots, bool)
                                       or not isinstance(tail_shots, (int, np.integer))
                                       or tail_shots < 1):
            raise InputError(f"tail_shots={tail_shots!r}: give an integer >= 1, or None for "
                             "no held-out tail")
        self.tail_shots = tail_shots

    def check_inner(self, plain_sgd):
        """Any inner optimiser will do."""

    def direction(self, steps, w):
        losses = list(steps.run(w, 0, steps.k - 1))
        before_last = w.copy()
        losses.extend(steps.run(w, steps.k - 1, steps.k))
        return w - before_last, losses

    def __repr__(self):
        return f"FirstOrderMAML(tail_shots={self.tail_shots})"


class MAML:
    """Second-order MAML: the last step's move ``W_k − W_{k−1} = −α·s_k·∇L_k(W_{k−1})``
    carried back to Φ through steps 1 … k − 1, ``d = (I − α s_1 H_1) ⋯ (I − α s_{k−1}
    H_{k−1}) (W_k − W_{k−1})``, i.e. ``−α`` times the exact gradient of ``s_k·L_k(U(Φ))``
    (see :mod:`minireptile.algorithms.maml`). Needs plain inner SGD."""

    name = "maml"
    tail_shots = None

    def check_inner(self, plain_sgd):
        if not plain_sgd:
            raise InputError("second-order MAML needs plain inner SGD (sgd=True, "
                             "weight_decay=1): its meta-gradient differentiates SGD steps, "
                             "not Adam's or weight decay's")

    def direction(self, steps, w):
        trajectory = []  # (weights before the step, inputs, targets, gradient scale)
        losses = []
        for i in range(steps.k - 1):
            trajectory.append((w.copy(), *steps.batch(i), steps.scale(i)))
            losses.extend(steps.run(w, i, i + 1))
        before_last = w.copy()
        losses.extend(steps.run(w, steps.k - 1, steps.k))
        return backpropagate_through_sgd(steps.model, trajectory, w - before_last,
                                         steps.lr), losses

    def __repr__(self):
        return "MAML()"


class GradientCombination:
    """``d = −α Σ c_i g_i`` over the inner gradients g1 … gk (:mod:`.combinations`).

    With inner SGD, ``reptile`` is Reptile and ``last`` first-order MAML; the weights of a
    named combination may differ from both (``g1`` alone is joint training).

    Parameters
    ----------
    combination : Combination or str
        E.g. ``"(g1+g2)/2"``.
    """

    name = "combination"
    tail_shots = None

    def __init__(self, combination):
        self.combination = (combination if isinstance(combination, Combination)
                            else parse_combination(combination))

    def check_inner(self, plain_sgd):
        if not plain_sgd:
            raise InputError(f"gradient combination {self.combination.name!r} needs plain "
                             "inner SGD (sgd=True, weight_decay=1): only then do the inner "
                             "gradients add up to W − Φ")

    def direction(self, steps, w):
        coefficients = self.combination.coefficients(steps.k)
        update = np.zeros_like(w)
        losses = []
        for i, c in enumerate(coefficients):
            loss, grad = steps.step_with_gradient(w, i)
            losses.append(loss)
            if c:
                update -= w.dtype.type(c * steps.lr) * grad
        return update, losses

    def __repr__(self):
        return f"GradientCombination({self.combination.name!r})"


ALGORITHMS = {"reptile": Reptile, "foml": FirstOrderMAML, "maml": MAML,
              "combination": GradientCombination}


def make_algorithm(name="reptile", tail_shots=None, combination=None):
    """The algorithm called ``name``: ``"reptile"``, ``"foml"`` (with optional
    ``tail_shots``), ``"maml"`` or ``"combination"`` (with ``combination``, e.g.
    ``"g1+g2"``).

    Examples
    --------
    >>> make_algorithm("combination", combination="(g1+g2)/2")
    GradientCombination('(g1+g2)/2')
    """
    if isinstance(name, (Reptile, FirstOrderMAML, MAML, GradientCombination)):
        return name
    if name not in ALGORITHMS:
        raise InputError(f"algorithm={name!r}: use one of {', '.join(map(repr, ALGORITHMS))}")
    if tail_shots is not None and name != "foml":
        raise InputError(f"tail_shots={tail_shots!r} needs algorithm='foml', got {name!r}")
    if (combination is not None) != (name == "combination"):
        raise InputError("a gradient combination goes with algorithm='combination' (got "
                         f"algorithm={name!r}, combination={combination!r})")
    if name == "foml":
        return FirstOrderMAML(tail_shots)
    if name == "combination":
        return GradientCombination(combination)
    return ALGORITHMS[name]()
