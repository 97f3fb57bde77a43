"""minireptile: Reptile meta-learning from scratch in NumPy, with handwritten backprop.

Parameters live in one flat array Φ; models are functional
(``loss_and_grad(params, x, y)``, ``predict(params, x)``); the outer update is plain NumPy.

The names below are imported on first use, so that ``import minireptile`` (and the command
line's ``--help``) does not pay for NumPy, Numba and SciPy before they are needed.
"""

import importlib
import importlib.util
import os
import sys


def _map_source_kernels():
    """Make ``minireptile.kernels`` the repository's top-level ``kernels/`` folder when this
    package is imported from the source tree.

    An install maps ``kernels/`` to ``minireptile.kernels``; but run from the repository's
    root (``python -m pytest``, ``python -m minireptile``), the source folder ``minireptile/``
    comes first on ``sys.path`` and shadows the installed package, and it holds no kernels.
    (Only the folder is registered here; its modules are still imported on first use.)
    """
    if importlib.util.find_spec(f"{__name__}.kernels") is not None:
        return
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "kernels")
    init = os.path.join(folder, "__init__.py")
    if not os.path.isfile(init):
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.kernels", init,
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_map_source_kernels()

__version__ = "0.1.0"

_EXPORTS = {
    "Adam": ".algorithms.optim",
    "InputError": ".errors",
    "Model": ".models.model",
    "OuterAdam": ".algorithms.meta_iteration",
    "OuterSGD": ".algorithms.meta_iteration",
    "ParamLayout": ".models.params",
    "SGD": ".algorithms.optim",
    "linear_schedule": ".algorithms.meta_iteration",
    "make_executor": ".parallel.executor",
    "mlp": ".models.model",
    "reptile_step": ".algorithms.meta_iteration",
    "set_threads": ".parallel.threads",
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
