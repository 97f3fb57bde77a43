"""Weight initialisers, all drawing from an explicit ``numpy.random.Generator``."""

import math


def torch_linear_uniform(rng, shape, bound):
    """Uniform on [−bound, bound): PyTorch's default for ``nn.Linear`` with bound 1/√fan_in."""
    return rng.uniform(-bound, bound, size=shape)


def glorot_uniform(rng, shape):
    """Glorot (Xavier) uniform, TensorFlow's default kernel initialiser.

    ``limit = √(6 / (fan_in + fan_out))``. For a dense kernel ``(in, out)`` the fans are the two
    dimensions; for a convolution kernel ``(kh, kw, in, out)`` or ``(out, in, kh, kw)``-like
    shapes the receptive field multiplies both fans, as in TensorFlow (which assumes the last
    two dimensions are ``in, out``: pass ``shape`` in that order).
    """
    shape = tuple(shape)
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in = shape[-2] * receptive if len(shape) >= 2 else shape[0]
    fan_out = shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)

