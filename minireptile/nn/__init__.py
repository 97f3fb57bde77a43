"""Layers and losses with handwritten backward passes."""

from .activations import ReLU, Tanh
from .base import Layer, Sequential
from .linear import Linear
from .losses import MeanSquaredError, SoftmaxCrossEntropy

__all__ = [
    "Layer",
    "Linear",
    "MeanSquaredError",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "Tanh",
]

from .batchnorm import BatchNorm2d  # noqa: E402
from .conv import Conv2d  # noqa: E402
from .pool import MaxPool2d  # noqa: E402
from .reshape import Flatten, Reshape  # noqa: E402

__all__ += ["BatchNorm2d", "Conv2d", "Flatten", "MaxPool2d", "Reshape"]
