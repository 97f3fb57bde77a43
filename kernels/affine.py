"""Affine warps of a batch of single-channel images, nearest-neighbour, beside a NumPy reference.

Each image ``i`` is resampled through its own inverse map: output pixel ``(r, c)`` (row,
column) reads input pixel

    (sy, sx) = M_i · (r − cy − ty_i, c − cx − tx_i) + (cy, cx),      cy = (H − 1)/2, cx = (W − 1)/2

rounded to the nearest pixel (``floor(s + 0.5)``); a source outside the image gives ``fill``.
``M_i`` is the inverse of the forward distortion and ``t_i`` its translation, so a
distortion turns the image about its centre, then shifts it. Nearest neighbour copies input
values, so 0/1 images stay 0/1; with ``M = I`` and ``t = 0`` every source is an exact integer
and the output equals the input bit for bit.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def affine_nearest(images, inverse, shift, fill, out):
    """Warp every image through its inverse map (see the module docstring), in place.

    Parameters
    ----------
    images : (n, H, W) float array
    inverse : (n, 2, 2) float64 array, the inverse linear part ``M_i`` in (row, column) order
    shift : (n, 2) float64 array, the translation ``(ty_i, tx_i)`` in pixels
    fill : float, value of pixels whose source lies outside the image
    out : (n, H, W) array of the images' dtype, written
    """
    n, h, w = images.shape
    cy = (h - 1) / 2.0
    cx = (w - 1) / 2.0
    for i in range(n):
        m00 = inverse[i, 0, 0]
        m01 = inverse[i, 0, 1]
        m10 = inverse[i, 1, 0]
        m11 = inverse[i, 1, 1]
        ty = shift[i, 0]
        tx = shift[i, 1]
        for r in range(h):
            dy = r - cy - ty
            for c in range(w):
                dx = c - cx - tx
                sy = np.floor(m00 * dy + m01 * dx + cy + 0.5)
                sx = np.floor(m10 * dy + m11 * dx + cx + 0.5)
                if 0.0 <= sy < h and 0.0 <= sx < w:
                    out[i, r, c] = images[i, int(sy), int(sx)]
                else:
                    out[i, r, c] = fill
    return out


def affine_nearest_reference(images, inverse, shift, fill):
    """Slow, obvious NumPy version of :func:`affine_nearest` (returns a new array)."""
    n, h, w = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    out = np.empty_like(images)
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    for i in range(n):
        dy = rows - cy - shift[i, 0]
        dx = cols - cx - shift[i, 1]
        sy = np.floor(inverse[i, 0, 0] * dy + inverse[i, 0, 1] * dx + cy + 0.5)
        sx = np.floor(inverse[i, 1, 0] * dy + inverse[i, 1, 1] * dx + cx + 0.5)
        inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        picked = images[i][np.where(inside, sy, 0).astype(np.int64),
                           np.where(inside, sx, 0).astype(np.int64)]
        out[i] = np.where(inside, picked, images.dtype.type(fill))
    return out
