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
