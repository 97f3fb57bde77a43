"""The Reptile outer loop (Nichol, Achiam & Schulman, 2018), in plain NumPy.

    initialise Φ
    repeat:
        sample tasks T_1 … T_n
        W_i = k steps of SGD/Adam on T_i starting from Φ        (``adapt``)
        Φ ← Φ + ε (W̄ − Φ),   W̄ = mean_i W_i                    (``OuterSGD``)
        or: treat Φ − W̄ as a gradient for Adam                  (``OuterAdam``)

n = 1 is serial Reptile, n > 1 batched Reptile. With a single inner SGD step (k = 1) the
update is ``Φ ← Φ − ε·α·∇L(Φ)``: joint training on the stream of tasks, the baseline.
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


def reptile_step(phi, tasks, adapt, step_size, outer=None):
    """One meta-iteration, updating ``phi`` in place.

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
        W̄, the mean of the task solutions (before the update).
    """
    if len(tasks) == 0:
        raise InputError("a meta-batch needs at least one task, got none")
    solutions = [adapt(phi.copy(), task) for task in tasks]
    w_mean = solutions[0] if len(solutions) == 1 else np.mean(solutions, axis=0, dtype=phi.dtype)
    (outer or OuterSGD()).update(phi, phi - w_mean, step_size)
    return w_mean
