"""Random affine distortions of training images, drawn from the task's own random stream.

Koch, Zemel & Salakhutdinov (2015) trained their Siamese network on Omniglot with small
affine distortions: rotation θ ∈ [−10°, 10°], shears ρx, ρy ∈ [−0.3, 0.3], scales
sx, sy ∈ [0.8, 1.2] and translations tx, ty ∈ [−2, 2] pixels. :class:`AffineAugmentation`
draws each of these seven numbers independently and uniformly in ``[−range, range]``
(scales in ``[1 − range, 1 + range]``) for every image, forms the distortion

    A = R(θ) · [[1, ρy], [ρx, 1]] · diag(sy, sx)        (row, column) coordinates

about the image centre, then the shift, and resamples the image by nearest neighbour
(:func:`minireptile.kernels.affine.affine_nearest`, the default) or bilinearly
(``interpolation="bilinear"``, :func:`~minireptile.kernels.affine.affine_bilinear`). Nearest
neighbour copies input pixels, so Omniglot's 0/1 images stay 0/1; bilinear interpolation
gives weighted means, which stay within the range of the input values and ``fill`` and draw
smooth strokes rather than jagged ones. Pixels that come from outside the image take the
background value ``fill`` (1.0, Omniglot's white). With every range 0 the images come back
unchanged, bit for bit, with either interpolation.

Only training tasks are distorted (the inner loop of a meta-iteration); evaluation tasks are
never touched. The draws come from the generator of the task being trained, which is seeded
from the task's index (:func:`~minireptile.parallel.executor.task_seeds`), so a run is the same for
any number of workers and resumes exactly.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check_generator
from .tasks import Task

# Koch et al. (2015)'s ranges; translation in pixels of the 28×28 images used here.
DEFAULT_ROTATION = 10.0
DEFAULT_SHEAR = 0.3
DEFAULT_SCALE = 0.2
DEFAULT_TRANSLATE = 2.0
INTERPOLATIONS = ("nearest", "bilinear")


def _check_range(name, value, upper=None, unit=""):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value < 0 or (upper is not None and value >= upper):
        accepted = f"from 0 up to (not including) {upper}{unit}" if upper is not None else \
            f"a number >= 0{unit}"
        raise InputError(f"{name}={value!r}: expected {accepted}")
    return float(value)


@dataclass(frozen=True)
class AffineAugmentation:
    """Ranges of the random affine distortion (see the module docstring).

    Attributes
    ----------
    rotation : float
        Largest rotation in degrees, 0 ≤ rotation < 180.
    shear : float
        Largest shear factor, 0 ≤ shear < 1 (so the distortion stays invertible).
    scale : float
        Largest relative change of scale, 0 ≤ scale < 1 (scales stay positive).
    translate : float
        Largest shift in pixels, ≥ 0.
    fill : float
        Value of pixels that come from outside the image.
    interpolation : {"nearest", "bilinear"}
        How a distorted image is resampled (see the module docstring).
    """

    rotation: float = DEFAULT_ROTATION
    shear: float = DEFAULT_SHEAR
    scale: float = DEFAULT_SCALE
    translate: float = DEFAULT_TRANSLATE
    fill: float = 1.0
    interpolation: str = "nearest"

    def __post_init__(self):
        object.__setattr__(self, "rotation", _check_range("rotation", self.rotation,
                                                          180.0, " degrees"))
        object.__setattr__(self, "shear", _check_range("shear", self.shear, 1.0))
        object.__setattr__(self, "scale", _check_range("scale", self.scale, 1.0,
                                                       " (relative change of scale)"))
        object.__setattr__(self, "translate", _check_range("translate",
                                                           self.translate, unit=" pixels"))
        if not math.isfinite(self.fill):
            raise InputError(f"the fill value must be finite, got {self.fill!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"interpolation={self.interpolation!r}: expected one of "
                             f"{', '.join(INTERPOLATIONS)}")

    def sample(self, count, rng):
        """Draw ``count`` distortions.

        Returns
        -------
        inverse : (count, 2, 2) float64, the inverse linear parts (row, column order)
        shift : (count, 2) float64, translations (rows, columns) in pixels
        """
        check_generator(rng)
        u = rng.uniform(-1.0, 1.0, size=(int(count), 7))
        theta = np.deg2rad(self.rotation * u[:, 0])
        shear_x, shear_y = self.shear * u[:, 1], self.shear * u[:, 2]
        scale_y, scale_x = 1.0 + self.scale * u[:, 3], 1.0 + self.scale * u[:, 4]
        cos, sin = np.cos(theta), np.sin(theta)
        rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shear = np.stack([np.stack([np.ones_like(shear_y), shear_y], -1),
                          np.stack([shear_x, np.ones_like(shear_x)], -1)], -2)
        forward = rotation @ shear * np.stack([scale_y, scale_x], -1)[:, None, :]
        shift = self.translate * u[:, 5:7]
        return np.linalg.inv(forward), shift

    def apply(self, images, rng):
        """Distorted copies of ``images``.

        Parameters
        ----------
        images : (n, H, W) float32 or float64
        rng : numpy.random.Generator, advanced by 7·n uniform draws

        Returns
        -------
        (n, H, W) array of the same dtype: every value an input value or ``fill`` (nearest),
        or a weighted mean of them (bilinear).
        """
        from ..kernels import affine

        warp = affine.affine_nearest if self.interpolation == "nearest" else \
            affine.affine_bilinear
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype not in (np.float32, np.float64):
            raise InputError(f"affine augmentation takes (n, H, W) float images, got a "
                             f"{images.dtype} array of shape {images.shape}")
        inverse, shift = self.sample(len(images), rng)
        out = np.empty_like(images)
        return warp(np.ascontiguousarray(images), inverse, shift, self.fill, out)

    def augment_task(self, task, rng):
        """The task with distorted images and the same labels."""
        return Task(self.apply(task.images, rng), task.labels)
