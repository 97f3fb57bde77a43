"""minireptile: Reptile meta-learning from scratch in NumPy, with handwritten backprop.

Parameters live in one flat array Φ; models are functional
(``loss_and_grad(params, x, y)``, ``predict(params, x)``); the outer update is plain NumPy.
"""

import importlib.util
import os
import sys


def _map_source_kernels():
    """Make ``minireptile.kernels`` the repository's top-level ``kernels/`` folder when this
    package is imported from the source tree.

    An install maps ``kernels/`` to ``minireptile.kernels``; but run from the repository's
    root (``python -m pytest``, ``python -m minireptile``), the source folder ``minireptile/``
    comes first on ``sys.path`` and shadows the installed package, and it holds no kernels.
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

from .errors import InputError  # noqa: E402
from .model import Model, mlp  # noqa: E402
from .optim import SGD, Adam  # noqa: E402
from .params import ParamLayout  # noqa: E402
from .reptile import OuterAdam, OuterSGD, linear_schedule, reptile_step  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "InputError",
    "Model",
    "OuterAdam",
    "OuterSGD",
    "ParamLayout",
    "SGD",
    "linear_schedule",
    "mlp",
    "reptile_step",
]
