"""minireptile: Reptile meta-learning from scratch in NumPy, with handwritten backprop.

Parameters live in one flat array Φ; models are functional
(``loss_and_grad(params, x, y)``, ``predict(params, x)``); the outer update is plain NumPy.

The names below are imported on first use, so that ``import minireptile`` (and the command
line's ``--help``) does not pay for NumPy, Numba and SciPy before they are needed.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Adam": ".optim",
    "InputError": ".errors",
    "Model": ".model",
    "OuterAdam": ".reptile",
    "OuterSGD": ".reptile",
    "ParamLayout": ".params",
    "SGD": ".optim",
    "linear_schedule": ".reptile",
    "make_executor": ".executor",
    "mlp": ".model",
    "reptile_step": ".reptile",
    "set_threads": ".threads",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'minireptile' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
