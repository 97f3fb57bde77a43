"""minireptile: Reptile meta-learning from scratch in NumPy, with handwritten backprop.

Parameters live in one flat array Φ; models are functional
(``loss_and_grad(params, x, y)``, ``predict(params, x)``); the outer update is plain NumPy.
"""

from .errors import InputError
from .model import Model, mlp
from .optim import SGD, Adam
from .params import ParamLayout
from .reptile import OuterAdam, OuterSGD, linear_schedule, reptile_step

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
