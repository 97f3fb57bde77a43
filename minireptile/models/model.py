"""A functional model: a network, a loss and a flat parameter layout.

>>> model = mlp([1, 64, 64, 1], activation="tanh", loss="mse")
>>> phi = model.init_params(np.random.default_rng(0))     # 1-D float32 array
>>> x = np.linspace(-5, 5, 50, dtype=np.float32)[:, None]  # (batch, 1)
>>> y = np.sin(x)
>>> loss, grad = model.loss_and_grad(phi, x, y)            # grad has phi's shape
>>> grad.shape == phi.shape == (model.size,)
True
>>> model.predict(phi, x).shape
(50, 1)

The model holds no parameters: any flat vector of the right size is a valid argument, which
is what lets the meta-learning code keep Φ and each task's W as plain arrays.
"""

import numpy as np

from ..errors import InputError, check_generator, check_positive_int, describe_array
from ..nn import Linear, MeanSquaredError, ReLU, Sequential, SoftmaxCrossEntropy, Tanh
from ..nn.fused import FusedDense
from .params import FLOAT_DTYPES, ParamLayout

LOSSES = {"mse": MeanSquaredError, "cross_entropy": SoftmaxCrossEntropy}
ACTIVATIONS = {"tanh": Tanh, "relu": ReLU}
_BIND_CACHE_SIZE = 8


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
    fused : FusedDense, optional
        A kernel computing the same function as ``network`` + ``loss`` in one call (see
        :mod:`minireptile.nn.fused`); used instead of the layer-by-layer path when given.
    """

    def __init__(self, network, loss, input_shape, dtype=np.float32, name="model", fused=None):
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
        self.fused = fused
        # Bound views of the last few parameter/gradient vectors, keyed by identity. Holding
        # the array itself keeps its id from being reused while the entry exists.
        self._bound = {}

    def __getstate__(self):
        # The bound views are a cache of views into particular arrays: not worth sending to
        # another process (see minireptile.parallel.executor), and rebuilt on first use there.
        state = dict(self.__dict__)
        state["_bound"] = {}
        return state

    def _bind(self, flat):
        entry = self._bound.get(id(flat))
        if entry is not None and entry[0] is flat:
            return entry[1]
        bound = self.network.bind(self.layout.views(flat))
        if len(self._bound) >= _BIND_CACHE_SIZE:
            self._bound.pop(next(iter(self._bound)))
        self._bound[id(flat)] = (flat, bound)
        return bound

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
        check_generator(rng)
        flat = np.zeros(self.size, dtype=self.dtype)
        self.network.init_params(self.network.bind(self.layout.views(flat)), rng)
        return flat

    def _layers_ending_in_dense(self):
        layers = getattr(self.network, "layers", None)
        if not layers or not isinstance(layers[-1], Linear):
            raise InputError(f"{self.name} does not end in a dense layer, so it has no body "
                             "and output layer to tell apart")
        return layers

    @property
    def body_size(self):
        """Number of parameters before the final dense layer's: the flat vector's prefix
        that :meth:`with_outputs` shares."""
        last = self._layers_ending_in_dense()[-1]
        return self.size - last.in_features * last.out_features - last.out_features

    def with_outputs(self, num_outputs):
        """The same network with a final dense layer of ``num_outputs`` units.

        The two models' parameter vectors share their first :attr:`body_size` entries (the
        same names and shapes), so a body trained under one head can be copied under another:
        ``phi[:model.body_size] = wide_params[:model.body_size]``.

        Examples
        --------
        >>> model = mlp([2, 16, 3])
        >>> wide = model.with_outputs(10)
        >>> wide.output_shape, wide.body_size == model.body_size == 2 * 16 + 16
        ((10,), True)
        """
        layers = self._layers_ending_in_dense()
        last = layers[-1]
        check_positive_int("num_outputs", num_outputs)
        network = Sequential(*layers[:-1], Linear(last.in_features, int(num_outputs),
                                                  init=last.init))
        # The fused kernel (if any) was built for the old sizes: the layers compute the same
        # function without it.
        return Model(network, self.loss_name, self.input_shape, dtype=self.dtype,
                     name=f"{self.name} with {int(num_outputs)} outputs")

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
        if self.fused is not None:
            return self.fused.predict(params, x)
        out, _ = self.network.forward(self._bind(params), x)
        return out

    def loss_and_grad(self, params, x, y, out=None):
        """Mean loss over the batch and its gradient with respect to ``params``.

        Parameters
        ----------
        params : ndarray, shape (size,)
        x : ndarray, shape (batch, *input_shape)
        y : ndarray
            Regression targets ``(batch, *output_shape)`` (mse) or integer labels ``(batch,)``
            (cross_entropy).
        out : ndarray, shape (size,), params' dtype, optional
            Array to write the gradient into (reused across steps by training loops).

        Returns
        -------
        loss : float
        grad : ndarray, shape (size,), params' dtype (``out`` when given)
        """
        x = self._check_inputs(params, x)
        self.loss.check_target(y, len(x), self.output_shape)
        if out is None:
            out = np.empty_like(params)
        elif out is params or out.shape != params.shape or out.dtype != params.dtype:
            raise InputError(
                f"out must be a separate {params.dtype} array of shape {params.shape}, "
                f"got {describe_array(out)}"
            )
        if self.fused is not None:
            return self.fused.loss_and_grad(params, x, y, out), out
        bound = self._bind(params)
        prediction, cache = self.network.forward(bound, x)
        loss, loss_cache = self.loss.forward(prediction, y)
        self.network.backward(
            bound, cache, self.loss.backward(loss_cache), self._bind(out), need_dx=False
        )
        return loss, out

    def loss_grad_hvp(self, params, x, y, v, want_grad=True):
        """Mean loss, its gradient and the Hessian-vector product ``H(params)·v``.

        Pearlmutter's R-operator through the layers: one forward pass carrying the outputs'
        directional derivatives along ``v``, one backward pass carrying the gradients' (see
        :mod:`minireptile.nn.base`). No Hessian is formed. Fused dense models take the
        layer-by-layer path here; it computes the same function.

        Parameters
        ----------
        params, v : ndarray, shape (size,), one dtype
        x, y : as for :meth:`loss_and_grad`

        want_grad : bool
            False skips the parameter gradient's own work (``grad`` is then None).

        Returns
        -------
        loss : float
        grad, hvp : ndarray, shape (size,), params' dtype
        """
        x = self._check_inputs(params, x)
        self.loss.check_target(y, len(x), self.output_shape)
        if not isinstance(v, np.ndarray) or v.shape != params.shape or v.dtype != params.dtype:
            raise InputError(f"the direction v must be a {params.dtype} array of shape "
                             f"{params.shape}, got {describe_array(v)}")
        grad = np.empty_like(params) if want_grad else None
        hvp = np.empty_like(params)
        bound, vbound = self._bind(params), self._bind(v)
        prediction, rprediction, cache = self.network.forward_r(bound, vbound, x, None)
        loss, loss_cache = self.loss.forward(prediction, y)
        dpred = self.loss.backward(loss_cache)
        rdpred = self.loss.backward_r(loss_cache, rprediction).astype(params.dtype, copy=False)
        self.network.backward_r(bound, vbound, cache, dpred, rdpred,
                                self._bind(grad) if want_grad else None, self._bind(hvp),
                                need_dx=False)
        return loss, grad, hvp

    def hvp(self, params, x, y, v):
        """``H(params)·v``, the Hessian of the mean loss on ``(x, y)`` times ``v``, shape
        (size,); see :meth:`loss_grad_hvp`."""
        return self.loss_grad_hvp(params, x, y, v, want_grad=False)[2]

    def sgd_steps(self, params, x, y, batches, lr):
        """Plain SGD on a sequence of mini-batches, updating ``params`` in place.

        Exactly::

            for idx in batches:
                loss, grad = self.loss_and_grad(params, x[idx], y[idx])
                params -= lr * grad

        which is what runs for layer-by-layer models; a fused model runs the same loop inside
        one kernel call.

        Parameters
        ----------
        params : ndarray, shape (size,)
        x : ndarray, shape (n_examples, *input_shape)
        y : ndarray, targets or labels for all ``n_examples``
        batches : sequence of int arrays
            Indices into ``x`` of each mini-batch.
        lr : float

        Returns
        -------
        losses : ndarray, shape (len(batches),)
            Each mini-batch's loss before its step.
        """
        x = self._check_inputs(params, x)
        self.loss.check_target(y, len(x), self.output_shape)
        sizes = [len(idx) for idx in batches]
        every = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        if 0 in sizes or every.dtype.kind not in "iu" or (
            every.size and (every.min() < 0 or every.max() >= len(x))
        ):
            raise InputError(
                f"mini-batches must be non-empty integer indices in [0, {len(x)}), "
                f"got sizes {sizes} and values from {every.min() if every.size else None} "
                f"to {every.max() if every.size else None}"
            )
        if self.fused is not None:
            starts = np.zeros(len(sizes) + 1, dtype=np.int64)
            np.cumsum(sizes, out=starts[1:])
            return self.fused.sgd_steps(params, x, y, every, starts, lr)
        grad = np.empty_like(params)
        losses = np.empty(len(batches))
        for step, idx in enumerate(batches):
            losses[step], _ = self.loss_and_grad(params, x[idx], y[idx], out=grad)
            params -= params.dtype.type(lr) * grad
        return losses


def mlp(sizes, activation="tanh", loss="mse", dtype=np.float32, init="torch", fused=True):
    """A multilayer perceptron ``sizes[0] → … → sizes[-1]`` with ``activation`` between layers.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output, e.g. ``[1, 64, 64, 1]``.
    activation : {"tanh", "relu"}
    loss : {"mse", "cross_entropy"}
    init : {"torch", "glorot"}
        See :class:`~minireptile.nn.Linear`.
    fused : bool
        Run forward, loss and backward as one kernel (same results; much less call overhead
        for small networks). ``False`` runs the layers one by one.

    Returns
    -------
    Model
        Input shape ``(sizes[0],)``, output shape ``(sizes[-1],)``.

    Examples
    --------
    >>> model = mlp([2, 16, 3], activation="relu", loss="cross_entropy")
    >>> print(model.describe())
    mlp 2-16-3 (relu): input (2,) -> output (3,)
    parameter       shape                  count
    linear0.weight  (2, 16)                   32
    linear0.bias    (16,)                     16
    linear1.weight  (16, 3)                   48
    linear1.bias    (3,)                       3
    total                                     99
    >>> phi = model.init_params(np.random.default_rng(0))
    >>> x, labels = np.ones((4, 2), np.float32), np.array([0, 1, 2, 0])
    >>> loss, grad = model.loss_and_grad(phi, x, labels)   # mean cross-entropy
    >>> model.predict(phi, x).shape                        # logits
    (4, 3)
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise InputError(f"sizes must be at least two positive integers, got {sizes!r}")
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if loss not in LOSSES:  # checked here too: the fused kernel is built before Model checks it
        raise InputError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(int(n_in), int(n_out), init=init))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    name = f"mlp {'-'.join(str(s) for s in sizes)} ({activation})"
    kernel = FusedDense(sizes, activation, loss) if fused else None
    return Model(Sequential(*layers), loss, (sizes[0],), dtype=dtype, name=name, fused=kernel)
