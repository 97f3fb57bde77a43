"""Layers and losses with handwritten backward passes."""

from .activations import ReLU, Tanh
from .base import Layer, Sequential
from .batch_norm import BatchNorm2d
from .conv2d import Conv2d
from .linear import Linear
from .losses import MeanSquaredError, SoftmaxCrossEntropy
from .max_pool import MaxPool2d
from .reshape import Flatten, Reshape

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2d",
    "MeanSquaredError",
    "ReLU",
    "Reshape",
    "Sequential",
    "SoftmaxCrossEntropy",
    "Tanh",
]
