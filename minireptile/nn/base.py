"""The layer protocol and :class:`Sequential`.

A layer is a pure function of its input and named parameters, with its backward rule beside
its forward rule::

    y, cache = layer.forward(params, x)
    dx = layer.backward(params, cache, dy, grads)

``params`` and ``grads`` are dicts of views into the model's flat parameter and gradient
arrays (see :mod:`minireptile.params`); ``backward`` *overwrites* its entries of ``grads``.
Layers hold configuration only, never state, so one layer object serves any parameter vector.
"""

from ..errors import InputError


class Layer:
    """Base class: a parameter-free identity. Subclasses override what they need."""

    def param_shapes(self):
        """Names and shapes of this layer's parameters, as a list of (str, tuple)."""
        return []

    def init_params(self, params, rng):
        """Fill ``params`` (dict of views) with initial values drawn from ``rng``."""

    def output_shape(self, input_shape):
        """Per-example output shape for a per-example ``input_shape``; raises on a mismatch."""
        return tuple(input_shape)

    def forward(self, params, x):
        """Return ``(y, cache)``; ``cache`` is whatever ``backward`` needs."""
        return x, None

    def backward(self, params, cache, dy, grads, need_dx=True):
        """Write parameter gradients into ``grads`` and return dL/dx (None if not ``need_dx``)."""
        return dy

    def __repr__(self):
        return f"{type(self).__name__}()"


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

    def param_shapes(self):
        return [
            (prefix + name, shape)
            for prefix, layer in zip(self.prefixes, self.layers)
            for name, shape in layer.param_shapes()
        ]

    def _split(self, named, i):
        return {local: named[full] for local, full in self._local_params[i]}

    def init_params(self, params, rng):
        for i, layer in enumerate(self.layers):
            layer.init_params(self._split(params, i), rng)

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
        for i, layer in enumerate(self.layers):
            x, cache = layer.forward(self._split(params, i), x)
            caches.append(cache)
        return x, caches

    def backward(self, params, cache, dy, grads, need_dx=True):
        for i in range(len(self.layers) - 1, -1, -1):
            want_dx = need_dx or i > 0
            dy = self.layers[i].backward(
                self._split(params, i), cache[i], dy, self._split(grads, i), want_dx
            )
        return dy

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"
