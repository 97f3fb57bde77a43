"""Optimisers on flat parameter vectors: plain SGD and Adam.

``opt.step(params, grad)`` updates ``params`` in place. State (Adam's moments and step count)
is explicit: :meth:`state_dict` returns plain arrays and numbers for checkpoints,
:meth:`load_state_dict` restores them and :meth:`reset` forgets them.
"""

import math
import numbers

import numpy as np

from ..errors import InputError


def _check_positive(name, value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise InputError(f"{name} must be a positive number, got {value!r}")


class SGD:
    """``params ← params − lr · grad``. Stateless."""

    def __init__(self, lr):
        _check_positive("learning rate", lr)
        self.lr = lr

    def step(self, params, grad, lr=None):
        """One update in place; ``lr`` overrides the configured rate for this step."""
        params -= (self.lr if lr is None else lr) * grad

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise InputError(f"SGD has no state, got keys {sorted(state)}")

    def reset(self):
        pass


class Adam:
    """Adam (Kingma & Ba, 2015) in TensorFlow's form (``tf.train.AdamOptimizer``).

    With ``t`` counting steps from 1::

        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        θ ← θ − lr · √(1 − β2ᵗ)/(1 − β1ᵗ) · m / (√v + ε)

    ε sits outside the bias correction, as in TensorFlow (the reference implementation's
    optimiser). With β1 = 0 (the inner loop's default) ``m`` is just the latest gradient.

    Parameters
    ----------
    lr : float
    beta1 : float in [0, 1)
    beta2 : float in [0, 1)
    eps : float > 0
    """

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        _check_positive("learning rate", lr)
        _check_positive("eps", eps)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not 0 <= beta < 1:
                raise InputError(f"Adam {name} must be in [0, 1), got {beta!r}")
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.reset()

    def reset(self):
        """Forget the moments and the step count."""
        self.m = None
        self.v = None
        self.t = 0
        self._work = None

    def step(self, params, grad, lr=None):
        """One update in place; ``lr`` overrides the configured rate for this step."""
        if self.m is None or self.m.shape != params.shape or self.m.dtype != params.dtype:
            if self.m is not None:
                raise InputError(
                    f"Adam state was built for {self.m.dtype} parameters of shape {self.m.shape},"
                    f" got {params.dtype} parameters of shape {params.shape}; call reset() first"
                )
            self.m = np.zeros_like(params)
            self.v = np.zeros_like(params)
        if self._work is None or self._work.shape != params.shape or \
                self._work.dtype != params.dtype:
            self._work = np.empty_like(params)
        self.t += 1
        lr = self.lr if lr is None else lr
        # In place, through one work array: this runs every inner step, and fresh temporaries
        # of the parameters' size cost page faults.
        work = self._work
        if self.beta1 == 0:
            np.copyto(self.m, grad)
        else:
            self.m *= self.beta1
            np.multiply(grad, 1 - self.beta1, out=work)
            self.m += work
        np.multiply(grad, grad, out=work)
        work *= 1 - self.beta2
        self.v *= self.beta2
        self.v += work
        lr_t = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        np.sqrt(self.v, out=work)
        work += self.eps
        np.divide(self.m, work, out=work)
        work *= lr_t
        params -= work

    def state_dict(self):
        """``{"m", "v", "t"}`` (moments are empty arrays before the first step)."""
        empty = np.zeros(0)
        return {
            "m": empty if self.m is None else self.m.copy(),
            "v": empty if self.v is None else self.v.copy(),
            "t": np.int64(self.t),
        }

    def load_state_dict(self, state):
        missing = {"m", "v", "t"} - set(state)
        if missing:
            raise InputError(f"Adam state needs keys m, v and t; missing {sorted(missing)}")
        m, v = np.asarray(state["m"]), np.asarray(state["v"])
        if m.shape != v.shape:
            raise InputError(f"Adam moments disagree in shape: m {m.shape}, v {v.shape}")
        self.t = int(state["t"])
        self.m = m.copy() if m.size else None
        self.v = v.copy() if v.size else None
