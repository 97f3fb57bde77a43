"""A functional model: a network, a loss and a flat parameter layout.

>>> model = mlp([1, 64, 64, 1], activation="tanh", loss="mse")
>>> phi = model.init_params(np.random.default_rng(0))     # 1-D float32 array
>>> loss, grad = model.loss_and_grad(phi, x, y)            # grad has phi's shape
>>> y_hat = model.predict(phi, x)

The model holds no parameters: any flat vector of the right size is a valid argument, which
is what lets the meta-learning code keep Φ and each task's W as plain arrays.
"""

import numpy as np

from .errors import InputError, describe_array
from .nn import Linear, MeanSquaredError, ReLU, Sequential, SoftmaxCrossEntropy, Tanh
from .params import FLOAT_DTYPES, ParamLayout

LOSSES = {"mse": MeanSquaredError, "cross_entropy": SoftmaxCrossEntropy}
ACTIVATIONS = {"tanh": Tanh, "relu": ReLU}


class Model:
    """A network with a loss over flat parameter vectors.

    Parameters
    ----------
    network : Layer
        Usually a :class:`~minireptile.nn.Sequential`.
    loss : {"mse", "cross_entropy"}
    input_shape : tuple of int
        Shape of one example (without the batch dimension).
    dtype : numpy dtype
        float32 (default) or float64: the dtype of ``init_params``.
    name : str
        Shown by :meth:`describe` and stored in checkpoints.
    """

    def __init__(self, network, loss, input_shape, dtype=np.float32, name="model"):
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise InputError(f"dtype must be float32 or float64, got {dtype}")
        self.network = network
        self.loss_name = loss
        self.loss = LOSSES[loss]()
        self.input_shape = tuple(input_shape)
        self.output_shape = network.output_shape(self.input_shape)
        self.dtype = dtype
        self.name = name
        self.layout = ParamLayout(network.param_shapes())

    @property
    def size(self):
        """Number of scalar parameters."""
        return self.layout.size

    def describe(self):
        """Parameter names, shapes and counts, one per line, with the total."""
        header = f"{self.name}: input {self.input_shape} -> output {self.output_shape}"
        return f"{header}\n{self.layout.describe()}"

    def init_params(self, rng):
        """A fresh flat parameter vector, shape ``(size,)``, drawn from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        flat = np.zeros(self.size, dtype=self.dtype)
        self.network.init_params(self.layout.views(flat), rng)
        return flat

    def _check_inputs(self, params, x):
        self.layout.check(params)
        expected = ("batch",) + self.input_shape
        if not isinstance(x, np.ndarray) or x.shape[1:] != self.input_shape or x.ndim < 1:
            raise InputError(f"inputs must have shape {expected}, got {describe_array(x)}")
        if x.dtype.kind != "f":
            raise InputError(f"inputs must be floats (float32 or float64), got dtype {x.dtype}")
        if len(x) == 0:
            raise InputError(f"inputs must hold at least one example, got shape {x.shape}")
        return x.astype(params.dtype, copy=False)

    def predict(self, params, x):
        """Network output for a batch.

        Parameters
        ----------
        params : ndarray, shape (size,)
        x : ndarray, shape (batch, *input_shape)

        Returns
        -------
        ndarray, shape (batch, *output_shape), params' dtype
        """
        x = self._check_inputs(params, x)
        out, _ = self.network.forward(self.layout.views(params), x)
        return out

    def loss_and_grad(self, params, x, y):
        """Mean loss over the batch and its gradient with respect to ``params``.

        Parameters
        ----------
        params : ndarray, shape (size,)
        x : ndarray, shape (batch, *input_shape)
        y : ndarray
            Regression targets ``(batch, *output_shape)`` (mse) or integer labels ``(batch,)``
            (cross_entropy).

        Returns
        -------
        loss : float
        grad : ndarray, shape (size,), params' dtype
        """
        x = self._check_inputs(params, x)
        self.loss.check_target(y, len(x), self.output_shape)
        out, cache = self.network.forward(self.layout.views(params), x)
        loss, loss_cache = self.loss.forward(out, y)
        grad = np.empty_like(params)
        self.network.backward(
            self.layout.views(params),
            cache,
            self.loss.backward(loss_cache),
            self.layout.views(grad),
            need_dx=False,
        )
        return loss, grad


def mlp(sizes, activation="tanh", loss="mse", dtype=np.float32, init="torch"):
    """A multilayer perceptron ``sizes[0] → … → sizes[-1]`` with ``activation`` between layers.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output, e.g. ``[1, 64, 64, 1]``.
    activation : {"tanh", "relu"}
    loss : {"mse", "cross_entropy"}
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise InputError(f"sizes must be at least two positive integers, got {sizes!r}")
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(int(n_in), int(n_out), init=init))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    name = f"mlp {'-'.join(str(s) for s in sizes)} ({activation})"
    return Model(Sequential(*layers), loss, (sizes[0],), dtype=dtype, name=name)
