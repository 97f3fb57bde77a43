"""The layer protocol and :class:`Sequential`.

A layer is a pure function of its input and named parameters, with its backward rule beside
its forward rule::

    y, cache = layer.forward(params, x)
    dx = layer.backward(params, cache, dy, grads)

``params`` and ``grads`` are the layer's *bound* views into the model's flat parameter and
gradient arrays: ``layer.bind(layout.views(flat))``, for a plain layer simply the dict of its
named views, for :class:`Sequential` one bound entry per child. Binding once per parameter
vector keeps the per-step cost of slicing and reshaping out of the training loop.
``backward`` *overwrites* its entries of ``grads``. Layers hold configuration only, never
state, so one layer object serves any parameter vector.

Hessian-vector products use Pearlmutter's R-operator, ``R{f} = d/dt f(θ + t·v)`` at t = 0, in
the same two passes::

    y, ry, cache = layer.forward_r(params, vparams, x, rx)
    dx, rdx = layer.backward_r(params, vparams, cache, dy, rdy, grads, rgrads)

``vparams`` are the direction's bound views, ``rx`` the directional derivative of the input
(None means zero: the network's input does not depend on θ), ``rdy`` that of ``dy``.
``backward_r`` overwrites ``grads`` with the gradient (unless ``grads`` is None: a product
alone skips the parameter gradients' work) and ``rgrads`` with its directional derivative,
which summed over the network is the Hessian-vector product ``H·v``.
"""

import numpy as np

from ..errors import InputError


class Layer:
    """Base class: a parameter-free identity. Subclasses override what they need."""

    def param_shapes(self):
        """Names and shapes of this layer's parameters, as a list of (str, tuple)."""
        return []

    def bind(self, named):
        """Arrange the dict of named views (this layer's names) the way forward/backward use it."""
        return named

    def init_params(self, params, rng):
        """Fill ``params`` (bound views) with initial values drawn from ``rng``."""

    def output_shape(self, input_shape):
        """Per-example output shape for a per-example ``input_shape``; raises on a mismatch."""
        return tuple(input_shape)

    def forward(self, params, x):
        """Return ``(y, cache)``; ``cache`` is whatever ``backward`` needs."""
        return x, None

    def backward(self, params, cache, dy, grads, need_dx=True):
        """Write parameter gradients into ``grads`` and return dL/dx (None if not ``need_dx``)."""
        return dy

    def forward_r(self, params, vparams, x, rx):
        """Return ``(y, ry, cache)``: the output, its directional derivative, and what
        :meth:`backward_r` needs."""
        return x, rx, None

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        """Write the gradients into ``grads`` and their directional derivatives into ``rgrads``;
        return ``(dx, rdx)`` (both None if not ``need_dx``)."""
        return dy, rdy

    def __repr__(self):
        return f"{type(self).__name__}()"


def zeros_if_none(rx, x):
    """``rx``, or zeros like ``x`` where the input's derivative is None (identically zero)."""
    return np.zeros_like(x) if rx is None else rx


class Sequential(Layer):
    """Layers applied in order. Parameter names are ``<kind><index>.<name>``, e.g.
    ``linear0.weight``, ``conv2.bias``, counted per kind."""

    def __init__(self, *layers):
        if not layers:
            raise InputError("Sequential needs at least one layer, got none")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise InputError(f"Sequential takes Layer objects, got {type(layer).__name__}")
        self.layers = list(layers)
        counts = {}
        self.prefixes = []
        for layer in self.layers:
            kind = type(layer).__name__.lower()
            self.prefixes.append(f"{kind}{counts.get(kind, 0)}.")
            counts[kind] = counts.get(kind, 0) + 1
        self._local_params = [
            [(local, prefix + local) for local, _ in layer.param_shapes()]
            for prefix, layer in zip(self.prefixes, self.layers)
        ]
        # Layer i must pass a gradient back only if a layer before it has parameters (or the
        # caller wants dL/dx): the Omniglot network's first convolution follows a Reshape,
        # and its input gradient would be an image-sized product computed for nothing.
        self._upstream_params = [
            any(self._local_params[j] for j in range(i)) for i in range(len(self.layers))
        ]

    def param_shapes(self):
        return [
            (prefix + name, shape)
            for prefix, layer in zip(self.prefixes, self.layers)
            for name, shape in layer.param_shapes()
        ]

    def bind(self, named):
        """One bound entry per child layer, each keyed by the child's own parameter names."""
        return [
            layer.bind({local: named[full] for local, full in local_params})
            for layer, local_params in zip(self.layers, self._local_params)
        ]

    def init_params(self, params, rng):
        for layer, bound in zip(self.layers, params):
            layer.init_params(bound, rng)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for prefix, layer in zip(self.prefixes, self.layers):
            try:
                shape = layer.output_shape(shape)
            except InputError as err:
                raise InputError(f"layer {prefix[:-1]}: {err}") from None
        return shape

    def forward(self, params, x):
        caches = []
        for layer, bound in zip(self.layers, params):
            x, cache = layer.forward(bound, x)
            caches.append(cache)
        return x, caches

    def backward(self, params, cache, dy, grads, need_dx=True):
        for i in range(len(self.layers) - 1, -1, -1):
            want_dx = need_dx or self._upstream_params[i]
            dy = self.layers[i].backward(params[i], cache[i], dy, grads[i], want_dx)
            if dy is None:
                return None
        return dy

    def forward_r(self, params, vparams, x, rx):
        caches = []
        for layer, bound, vbound in zip(self.layers, params, vparams):
            x, rx, cache = layer.forward_r(bound, vbound, x, rx)
            caches.append(cache)
        return x, rx, caches

    def backward_r(self, params, vparams, cache, dy, rdy, grads, rgrads, need_dx=True):
        for i in range(len(self.layers) - 1, -1, -1):
            want_dx = need_dx or self._upstream_params[i]
            dy, rdy = self.layers[i].backward_r(params[i], vparams[i], cache[i], dy, rdy,
                                                None if grads is None else grads[i], rgrads[i],
                                                want_dx)
            if dy is None:
                return None, None
        return dy, rdy

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"
