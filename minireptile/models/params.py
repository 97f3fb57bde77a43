"""Flat parameter vectors and the named views into them.

A model's parameters are ONE contiguous 1-D array ``Φ``. A :class:`ParamLayout` records where
each named tensor (``"linear0.weight"`` …) lives inside it, so layers can read and write shaped
views while the meta-learning code treats the whole model as a single vector
(``phi += eps * (w - phi)``).
"""

import math

import numpy as np

from ..errors import InputError, describe_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ParamLayout:
    """Offsets and shapes of named tensors packed end to end in one flat array.

    Parameters
    ----------
    named_shapes : list of (str, tuple of int)
        Names and shapes in packing order.
    """

    def __init__(self, named_shapes):
        self.names = []
        self.shapes = []
        self.offsets = []
        offset = 0
        for name, shape in named_shapes:
            if name in self.names:
                raise InputError(f"parameter name {name!r} is used twice; names must be unique")
            shape = tuple(int(s) for s in shape)
            self.names.append(name)
            self.shapes.append(shape)
            self.offsets.append(offset)
            offset += math.prod(shape)
        self.size = offset
        self._slices = [
            (name, slice(o, o + math.prod(s)), s)
            for name, o, s in zip(self.names, self.offsets, self.shapes)
        ]

    def views(self, flat):
        """Named, shaped views into ``flat`` (no copies: writing a view writes ``flat``).

        Parameters
        ----------
        flat : ndarray, shape (size,)

        Returns
        -------
        dict of str to ndarray
        """
        return {name: flat[sl].reshape(shape) for name, sl, shape in self._slices}

    def check(self, flat, what="params"):
        """Raise :class:`InputError` unless ``flat`` is a 1-D float32/float64 array of ``size``."""
        if not isinstance(flat, np.ndarray) or flat.shape != (self.size,):
            raise InputError(
                f"{what} must be a 1-D array of {self.size} values, got {describe_array(flat)}"
            )
        if flat.dtype not in FLOAT_DTYPES:
            raise InputError(f"{what} must be float32 or float64, got dtype {flat.dtype}")
        if not flat.flags.c_contiguous:
            raise InputError(f"{what} must be a contiguous array (views of it are handed to the "
                             f"layers); got strides {flat.strides}, pass a copy")

    def describe(self):
        """A table of names, shapes and sizes with the total, one line per tensor."""
        width = max([len(n) for n in self.names] + [9])
        lines = [f"{'parameter':<{width}}  {'shape':<18} {'count':>9}"]
        for name, shape in zip(self.names, self.shapes):
            lines.append(f"{name:<{width}}  {str(shape):<18} {math.prod(shape):>9,}")
        lines.append(f"{'total':<{width}}  {'':<18} {self.size:>9,}")
        return "\n".join(lines)
