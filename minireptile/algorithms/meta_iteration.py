"""The meta-iteration of Reptile (Nichol, Achiam & Schulman, 2018), written once, in NumPy.

    initialise Φ
    repeat:
        sample tasks T_1 … T_n
        d_i = the direction task T_i asks of Φ, from k inner steps from Φ   (an algorithm of
              :mod:`.directions`: for Reptile, d_i = W_i − Φ)
        Φ ← Φ + ε·mean_i d_i                                 (:class:`OuterSGD`)
        or: treat −mean_i d_i = Φ − W̄ as a gradient for Adam   (:class:`OuterAdam`)

:func:`meta_step` is the last two lines, for every algorithm and problem; ε follows
:func:`linear_schedule`. n = 1 is serial Reptile, n > 1 batched Reptile. With a single
inner SGD step (k = 1) the update is ``Φ ← Φ − ε·α·∇L(Φ)``: joint training on the stream of
tasks, the baseline.
"""

import numpy as np

from ..errors import InputError
from .optim import Adam


def linear_schedule(start, final, iteration, total):
    """Value at ``iteration`` (0-based) of ``total``, annealed linearly from ``start`` to
    ``final``: ``(1 − f)·start + f·final`` with ``f = iteration / total``."""
    fraction = iteration / total
    return (1 - fraction) * start + fraction * final


class OuterSGD:
    """``Φ ← Φ − ε·(Φ − W̄)``, i.e. ``Φ + ε(W̄ − Φ)``: the paper's interpolation."""

    name = "sgd"

    def update(self, phi, meta_gradient, step_size):
        phi -= step_size * meta_gradient

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class OuterAdam:
    """Adam on the meta-gradient ``Φ − W̄``, with the annealed ε as its learning rate.

    Parameters are Adam's (β1 = 0.9, β2 = 0.999, ε = 1e-8 by default).
    """

    name = "adam"

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.adam = Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=eps)

    def update(self, phi, meta_gradient, step_size):
        self.adam.step(phi, meta_gradient, lr=step_size)

    def state_dict(self):
        return self.adam.state_dict()

    def load_state_dict(self, state):
        self.adam.load_state_dict(state)


OUTER_OPTIMIZERS = {"sgd": OuterSGD, "adam": OuterAdam}


def make_outer(name):
    """``"sgd"`` → :class:`OuterSGD`, ``"adam"`` → :class:`OuterAdam`."""
    if name not in OUTER_OPTIMIZERS:
        raise InputError(f"outer optimiser must be one of {sorted(OUTER_OPTIMIZERS)}, got {name!r}")
    return OUTER_OPTIMIZERS[name]()


def meta_step(phi, directions, step_size, outer=None):
    """Move Φ along the mean of a meta-batch's update directions, in place: the one outer
    update of every algorithm.

    ``Φ ← Φ + ε·d̄`` with ``d̄ = mean_i d_i`` (:class:`OuterSGD`, the paper's interpolation
    when ``d_i = W_i − Φ``), or Adam on the gradient ``−d̄`` (:class:`OuterAdam`).

    Parameters
    ----------
    phi : ndarray, shape (size,)
        Meta-parameters Φ, updated in place.
    directions : sequence of ndarray, shape (size,)
        One per task, in a fixed order (the mean is taken in that order, so the result does
        not depend on where the tasks ran).
    step_size : float
        ε for this iteration.
    outer : OuterSGD or OuterAdam, optional
        Default :class:`OuterSGD`.

    Returns
    -------
    ndarray, shape (size,)
        ``d̄``.

    Examples
    --------
    >>> phi = np.zeros(2)
    >>> meta_step(phi, [np.array([1.0, 0.0]), np.array([0.0, 1.0])], 0.5)
    array([0.5, 0.5])
    >>> phi
    array([0.25, 0.25])
    """
    if len(directions) == 0:
        raise InputError("a meta-batch needs at least one task, got none")
    mean = directions[0] if len(directions) == 1 else np.mean(directions, axis=0,
                                                                dtype=phi.dtype)
    (outer or OuterSGD()).update(phi, -mean, step_size)
    return mean


def reptile_step(phi, tasks, adapt, step_size, outer=None):
    """One Reptile meta-iteration with a hand-written inner loop, updating ``phi`` in place.

    Parameters
    ----------
    phi : ndarray, shape (size,)
        Meta-parameters Φ.
    tasks : sequence
        The meta-batch; its length n is the number of task solutions averaged.
    adapt : callable ``(w, task) -> w``
        Inner loop: trains ``w`` (a private copy of Φ) on ``task`` and returns it.
    step_size : float
        Outer step ε for this iteration.
    outer : OuterSGD or OuterAdam, optional
        Defaults to the interpolation ``Φ + ε(W̄ − Φ)``.

    Returns
    -------
    w_mean : ndarray, shape (size,)
        W̄ = Φ + mean(W_i − Φ), the mean task solution (before the update).

    Examples
    --------
    >>> phi = np.zeros(3)
    >>> reptile_step(phi, ["a task"], lambda w, task: w + 1.0, step_size=0.1)
    array([1., 1., 1.])
    >>> phi
    array([0.1, 0.1, 0.1])
    """
    if len(tasks) == 0:
        raise InputError("a meta-batch needs at least one task, got none")
    start = phi.copy()
    directions = [adapt(phi.copy(), task) - phi for task in tasks]
    return start + meta_step(phi, directions, step_size, outer)
