"""Affine warps of a batch of single-channel images, nearest-neighbour or bilinear, each beside
a NumPy reference.

Each image ``i`` is resampled through its own inverse map: output pixel ``(r, c)`` (row,
column) reads the input at

    (sy, sx) = M_i · (r − cy − ty_i, c − cx − tx_i) + (cy, cx),      cy = (H − 1)/2, cx = (W − 1)/2

``M_i`` is the inverse of the forward distortion and ``t_i`` its translation, so a
distortion turns the image about its centre, then shifts it.

* :func:`affine_nearest` takes the nearest pixel (``floor(s + 0.5)``); a source outside the
  image gives ``fill``. It copies input values, so 0/1 images stay 0/1.
* :func:`affine_bilinear` weighs the four pixels around the source by their distances; a
  neighbour outside the image counts as ``fill``. Every output is a weighted mean of input
  values and ``fill``, so it stays within their range.

With ``M = I`` and ``t = 0`` every source is an exact integer and both return the input bit
for bit.
"""

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _source(inverse, shift, i, r, c, cy, cx):
    """Where output pixel ``(r, c)`` of image ``i`` reads the input: ``(sy, sx)``, unrounded
    (see the module docstring)."""
    dy = r - cy - shift[i, 0]
    dx = c - cx - shift[i, 1]
    return (inverse[i, 0, 0] * dy + inverse[i, 0, 1] * dx + cy,
            inverse[i, 1, 0] * dy + inverse[i, 1, 1] * dx + cx)


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
        for r in range(h):
            for c in range(w):
                sy, sx = _source(inverse, shift, i, r, c, cy, cx)
                sy = np.floor(sy + 0.5)
                sx = np.floor(sx + 0.5)
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


@numba.njit(cache=True)
def affine_bilinear(images, inverse, shift, fill, out):
    """Warp every image through its inverse map with bilinear interpolation (see the module
    docstring), in place. Parameters as :func:`affine_nearest`'s, ``fill`` being the value
    of neighbours that lie outside the image."""
    n, h, w = images.shape
    cy = (h - 1) / 2.0
    cx = (w - 1) / 2.0
    for i in range(n):
        for r in range(h):
            for c in range(w):
                sy, sx = _source(inverse, shift, i, r, c, cy, cx)
                y0 = np.floor(sy)
                x0 = np.floor(sx)
                fy = sy - y0
                fx = sx - x0
                acc = 0.0
                for a in range(2):
                    wy = fy if a else 1.0 - fy
                    if wy == 0.0:
                        continue  # so an exact source reads one pixel, and the identity is exact
                    yy = int(y0) + a
                    for b in range(2):
                        wx = fx if b else 1.0 - fx
                        if wx == 0.0:
                            continue
                        xx = int(x0) + b
                        if 0 <= yy < h and 0 <= xx < w:
                            value = images[i, yy, xx]
                        else:
                            value = fill
                        acc += wy * wx * value
                out[i, r, c] = acc
    return out


def affine_bilinear_reference(images, inverse, shift, fill):
    """Slow, obvious NumPy version of :func:`affine_bilinear` (returns a new array)."""
    n, h, w = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    padded = np.full((n, h + 2, w + 2), fill, dtype=np.float64)  # a ring of fill around
    padded[:, 1:-1, 1:-1] = images
    out = np.empty_like(images)
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    for i in range(n):
        dy = rows - cy - shift[i, 0]
        dx = cols - cx - shift[i, 1]
        sy = inverse[i, 0, 0] * dy + inverse[i, 0, 1] * dx + cy
        sx = inverse[i, 1, 0] * dy + inverse[i, 1, 1] * dx + cx
        y0, x0 = np.floor(sy), np.floor(sx)
        fy, fx = sy - y0, sx - x0
        total = np.zeros((h, w))
        for a, wy in ((0, 1.0 - fy), (1, fy)):
            for b, wx in ((0, 1.0 - fx), (1, fx)):
                # Indices into the padded image; anything beyond the ring is fill as well.
                yy = np.clip(y0 + a + 1, 0, h + 1).astype(np.int64)
                xx = np.clip(x0 + b + 1, 0, w + 1).astype(np.int64)
                total += wy * wx * padded[i, yy, xx]
        out[i] = total
    return out
