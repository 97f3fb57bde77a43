"""Decoded images grouped by class, and the class lists that few-shot tasks are drawn from.

Two objects, one idea:

* :class:`ImagePool` is what a loader decodes and what the cache stores: one image array
  holding every image, class ``c`` owning the rows ``starts[c]:starts[c + 1]``. It is generic
  (Omniglot's 28×28 0/1 images, later Mini-ImageNet's 84×84×3 bytes) and immutable.
* :class:`ClassSet` is a list of *task classes*, each a row ``(pool class, quarter turns,
  mirrored)``. Splitting, rotation and mirror augmentation only make new row lists; images
  are never copied, and a rotated or mirrored class is transformed when its images are
  fetched (the reference implementation's ``Character(dir_path, rotation)`` likewise rotates
  on read).
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check_generator


@dataclass(frozen=True, eq=False)
class ImagePool:
    """Images grouped by class, as decoded from a data source.

    Attributes
    ----------
    names : (C,) str array
        Class names, unique, e.g. ``"Greek/character01"``.
    starts : (C + 1,) int64 array
        Class ``c`` owns ``images[starts[c]:starts[c + 1]]``; ``starts[0] == 0`` and
        ``starts[-1] == n``.
    images : (n, H, W) or (n, H, W, channels) uint8 array
        Raw pixel values.
    files : (n,) str array
        The file each image came from (for messages and for comparing duplicates).
    scale : float
        ``images * scale`` gives the float32 pixel values (1 for Omniglot's 0/1 pixels,
        1/255 for 8-bit colour images).

    Examples
    --------
    >>> pool = ImagePool.from_classes(["a", "b"], [np.zeros((2, 4, 4), np.uint8),
    ...                                            np.ones((3, 4, 4), np.uint8)])
    >>> pool.num_classes, pool.class_images(1).shape
    (2, (3, 4, 4))
    """

    names: np.ndarray
    starts: np.ndarray
    images: np.ndarray
    files: np.ndarray
    scale: float = 1.0

    def __post_init__(self):
        n_cls = len(self.names)
        if self.starts.shape != (n_cls + 1,) or self.starts[0] != 0:
            raise InputError(f"class starts of shape {self.starts.shape} do not fit "
                             f"{n_cls} classes; expected ({n_cls + 1},) starting at 0")
        if np.any(np.diff(self.starts) < 0) or self.starts[-1] != len(self.images):
            raise InputError(f"class starts must rise from 0 to the image count "
                             f"{len(self.images)}, got last value {self.starts[-1]}")
        if len(self.files) != len(self.images):
            raise InputError(f"{len(self.files)} file names for {len(self.images)} images")
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise InputError(f"pool images must be uint8 of shape (n, H, W[, channels]), "
                             f"got {self.images.dtype} array of shape {self.images.shape}")
        if len(set(self.names.tolist())) != n_cls:
            raise InputError("class names in a pool must be unique")

    @property
    def num_classes(self):
        return len(self.names)

    def content_hash(self):
        """Hex SHA-256 of the class names, class boundaries and pixels: the same for the
        same data wherever it was read from (a zip, its extracted folder, a copy)."""
        digest = hashlib.sha256()
        digest.update("\0".join(str(n) for n in self.names).encode("utf-8", "surrogatepass"))
        digest.update(np.ascontiguousarray(self.starts, dtype="<i8").tobytes())
        digest.update(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).data)
        return digest.hexdigest()

    def class_images(self, c):
        """Raw images of class ``c``: (size, H, W[, channels]) uint8 (a view)."""
        return self.images[self.starts[c]:self.starts[c + 1]]

    def class_files(self, c):
        return self.files[self.starts[c]:self.starts[c + 1]]

    def to_arrays(self):
        """The arrays to store (see :mod:`minireptile.data.cache`); ``scale`` is metadata."""
        return {"names": self.names, "starts": self.starts, "images": self.images,
                "files": self.files}

    @classmethod
    def from_arrays(cls, arrays, scale):
        return cls(names=arrays["names"], starts=arrays["starts"].astype(np.int64),
                   images=arrays["images"], files=arrays["files"], scale=float(scale))

    @classmethod
    def from_classes(cls, names, class_images, class_files=None, scale=1.0, image_shape=None):
        """Build a pool from per-class lists.

        Parameters
        ----------
        names : list of str, length C
        class_images : list of C arrays, each (size_c, *image_shape) uint8
        class_files : list of C lists of str, each of length size_c, optional
            Where each image came from; default ``"<name>/<index>"``.
        scale : float
            ``images * scale`` are the pixel values the networks see (1/255 for bytes).
        image_shape : tuple, optional
            The shape of one image; needed only when the pool is empty.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> images = [rng.integers(0, 256, (4, 8, 8), dtype=np.uint8) for _ in range(3)]
        >>> pool = ImagePool.from_classes(["a", "b", "c"], images, scale=1 / 255)
        >>> pool.num_classes, pool.starts.tolist(), str(pool.files[5])
        (3, [0, 4, 8, 12], 'b/1')
        """
        for name, group in zip(names, class_images):
            dtype = getattr(group, "dtype", None)
            if dtype != np.uint8:
                raise InputError(f"the images of class {name!r} are {dtype or type(group)}; "
                                 "give uint8 pixel values (e.g. (x * 255).round()."
                                 "astype(np.uint8) with scale=1/255)")
        if class_files is None:
            class_files = [[f"{name}/{i}" for i in range(len(group))]
                           for name, group in zip(names, class_images)]
        sizes = [len(files) for files in class_files]
        starts = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(sizes, out=starts[1:])
        if image_shape is None:
            image_shape = np.shape(class_images[0])[1:] if len(class_images) else ()
        images = (np.concatenate(class_images) if sum(sizes)
                  else np.zeros((0,) + tuple(image_shape), np.uint8))
        files = [f for group in class_files for f in group]
        return cls(names=np.array(names, dtype=str), starts=starts,
                   images=np.ascontiguousarray(images, dtype=np.uint8),
                   files=np.array(files, dtype=str), scale=float(scale))


def merge_pools(pools, sources=None):
    """Join pools into one whose classes are sorted by name.

    A class name present in several pools (Greek and Latin are in both small Omniglot sets)
    is kept once, provided every copy has the same files and the same pixels; copies that
    differ raise :class:`InputError`, since silently keeping either would hide a data problem.
    Sorting by name reproduces the reference, which reads one folder holding the alphabets of
    every source and lists it in sorted order.

    Parameters
    ----------
    pools : list of ImagePool, all with the same image shape and scale
    sources : list of str, optional
        Where each pool came from (for messages).
    """
    if not pools:
        raise InputError("no data sources given; pass at least one path in data")
    sources = sources or [f"source {i + 1}" for i in range(len(pools))]
    first = pools[0]
    for pool, src in zip(pools, sources):
        if pool.images.shape[1:] != first.images.shape[1:] or pool.scale != first.scale:
            raise InputError(f"{src} holds images of shape {pool.images.shape[1:]} "
                             f"(scale {pool.scale}), {sources[0]} holds "
                             f"{first.images.shape[1:]} (scale {first.scale}); sources "
                             "must hold the same kind of images")
    chosen = {}  # class name -> (pool index, class index)
    for p, pool in enumerate(pools):
        for c, name in enumerate(pool.names.tolist()):
            if name not in chosen:
                chosen[name] = (p, c)
                continue
            q, d = chosen[name]
            other = pools[q]
            same = (np.array_equal(other.class_files(d), pool.class_files(c))
                    and np.array_equal(other.class_images(d), pool.class_images(c)))
            if not same:
                raise InputError(f"class {name!r} is in both {sources[q]} and {sources[p]} "
                                 "with different images; pass only one of the two sources")
    names = sorted(chosen)
    picks = [chosen[name] for name in names]
    return ImagePool.from_classes(
        names,
        [pools[p].class_images(c) for p, c in picks],
        [pools[p].class_files(c).tolist() for p, c in picks],
        scale=first.scale, image_shape=first.images.shape[1:])


class ClassSet:
    """Task classes: rows ``(pool class, quarter turns counter-clockwise, mirrored)`` over one
    pool.

    Parameters
    ----------
    pool : ImagePool
    base : (M,) int array, optional
        Pool class of each task class (default: every pool class once, in order).
    turns : (M,) int array, optional
        Rotation of each task class in quarter turns, 0..3 (default: all 0).
    mirrored : (M,) bool array, optional
        Whether each task class is its pool class flipped left to right, before the
        rotation (default: none).

    Examples
    --------
    Three classes of two 4×4 images each, from NumPy arrays; a split is a list of rows:

    >>> images = [np.full((2, 4, 4), c, np.uint8) for c in range(3)]
    >>> pool = ImagePool.from_classes(["a", "b", "c"], images)
    >>> every = ClassSet(pool)
    >>> every
    ClassSet(3 classes over 3 pool classes, 6 images of shape (4, 4))
    >>> held_out = ClassSet(pool, base=[2, 2], turns=[0, 1])   # "c" and "c" turned 90°
    >>> held_out.class_name(1), held_out.images(1, [0, 1]).shape
    ('c rotated 90°', (2, 4, 4))
    """

    def __init__(self, pool, base=None, turns=None, mirrored=None):
        self.pool = pool
        self.base = (np.arange(pool.num_classes, dtype=np.int64) if base is None
                     else np.asarray(base, dtype=np.int64))
        self.turns = (np.zeros(len(self.base), np.int64) if turns is None
                      else np.asarray(turns, dtype=np.int64) % 4)
        self.mirrored = (np.zeros(len(self.base), bool) if mirrored is None
                         else np.asarray(mirrored, dtype=bool))
        if not (self.base.shape == self.turns.shape == self.mirrored.shape) \
                or self.base.ndim != 1:
            raise InputError(f"base {self.base.shape}, turns {self.turns.shape} and mirrored "
                             f"{self.mirrored.shape} must be 1-d arrays of one length")

    def __len__(self):
        return len(self.base)

    def __repr__(self):
        return (f"ClassSet({len(self)} classes over {self.pool.num_classes} pool classes, "
                f"{len(self.pool.images)} images of shape {self.pool.images.shape[1:]})")

    def base_names(self):
        """Sorted names of the pool classes these task classes are drawn from (rotations of
        one class count once)."""
        return sorted({str(self.pool.names[b]) for b in self.base})

    def class_size(self, i):
        """Number of images of task class ``i``."""
        b = self.base[i]
        return int(self.pool.starts[b + 1] - self.pool.starts[b])

    def class_name(self, i):
        """``"Greek/character01"``, with ``" mirrored"`` for a mirrored class and
        ``" rotated 90°"`` etc. for a rotated one."""
        name = str(self.pool.names[self.base[i]])
        return (name + (" mirrored" if self.mirrored[i] else "")
                + (f" rotated {90 * self.turns[i]}°" if self.turns[i] else ""))

    def images(self, i, which):
        """Images ``which`` (indices into the class) of task class ``i``.

        Returns
        -------
        (len(which), H, W[, channels]) float32, flipped left to right when ``mirrored[i]``,
        then rotated by ``turns[i]`` quarter turns counter-clockwise (the direction of
        Pillow's ``Image.rotate`` with a positive angle).
        """
        raw = self.pool.class_images(self.base[i])[np.asarray(which, dtype=np.int64)]
        if self.mirrored[i]:
            raw = raw[:, :, ::-1]
        if self.turns[i]:
            raw = np.rot90(raw, k=int(self.turns[i]), axes=(1, 2))
        return self._as_float(raw)

    def examples(self, rows, which):
        """Image ``which[k]`` of task class ``rows[k]`` for every k: one image each of many
        classes, as :meth:`images` gives them, without converting any other image.

        Returns
        -------
        (len(rows), H, W[, channels]) float32
        """
        rows = np.asarray(rows, dtype=np.int64)
        raw = self.pool.images[self.pool.starts[self.base[rows]]
                               + np.asarray(which, dtype=np.int64)]
        mirrored = self.mirrored[rows]
        raw[mirrored] = raw[mirrored][:, :, ::-1]
        turns = self.turns[rows]
        for turn in np.unique(turns[turns != 0]):
            rotated = turns == turn
            raw[rotated] = np.rot90(raw[rotated], k=int(turn), axes=(1, 2))
        return self._as_float(raw)

    def _as_float(self, raw):
        divisor = round(1 / self.pool.scale)
        if abs(divisor * self.pool.scale - 1) < 1e-12:
            # A division, as the reference computes bytes / 0xff: multiplying by 1/255
            # differs from it by an ulp for about half the byte values.
            return raw.astype(np.float32) / np.float32(divisor)
        return raw.astype(np.float32) * np.float32(self.pool.scale)

    def sample_rows(self, num_classes, rng):
        """The task classes of one task: ``num_classes`` distinct rows in random order
        (the reference's shuffle of all classes, keeping the first N)."""
        return rng.permutation(len(self))[:num_classes]

    def subset(self, rows):
        """The task classes ``rows`` (an index array), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return ClassSet(self.pool, self.base[rows], self.turns[rows], self.mirrored[rows])


def augment_rotations(classes):
    """Each class four times, rotated by 0°, 90°, 180° and 270°, each rotation its own class.

    The order is class by class, rotations in that order, as in the reference's
    ``augment_dataset``. Existing rotations are composed with the new ones.
    """
    base = np.repeat(classes.base, 4)
    turns = np.repeat(classes.turns, 4) + np.tile(np.arange(4), len(classes))
    return ClassSet(classes.pool, base, turns, np.repeat(classes.mirrored, 4))


def augment_mirrors(classes):
    """Each class twice, as drawn and flipped left to right, the mirror image its own class.

    The order is class by class, the mirror image after the original. Classes that are
    mirror images already are refused: their mirror images would repeat the originals.

    Examples
    --------
    >>> pool = ImagePool.from_classes(["a"], [np.array([[[1, 0, 0]]], np.uint8)])
    >>> doubled = augment_mirrors(augment_rotations(ClassSet(pool)))
    >>> len(doubled), doubled.class_name(3), doubled.images(1, [0]).tolist()
    (8, 'a mirrored rotated 90°', [[[0.0, 0.0, 1.0]]])
    """
    if classes.mirrored.any():
        raise InputError(f"{int(classes.mirrored.sum())} of the {len(classes)} classes are "
                         "mirror images already; add mirror images once")
    base = np.repeat(classes.base, 2)
    turns = np.repeat(classes.turns, 2)
    mirrored = np.tile([False, True], len(classes))
    return ClassSet(classes.pool, base, turns, mirrored)


def split_classes(classes, num_train, rng):
    """Shuffle the classes and keep the first ``num_train`` for training, the rest for testing.

    The reference's ``split_dataset`` (1,200 of Omniglot's 1,623 characters go to training).

    Parameters
    ----------
    classes : ClassSet
    num_train : int, 0..len(classes)
    rng : numpy.random.Generator

    Returns
    -------
    (train, test) : two ClassSets
    """
    check_generator(rng)
    if not 0 <= num_train <= len(classes):
        raise InputError(f"cannot keep {num_train} training classes out of {len(classes)}; "
                         f"choose a number from 0 to {len(classes)} (num_train; the full "
                         "Omniglot set has 1623 characters, the reference keeps 1200)")
    order = rng.permutation(len(classes))
    return classes.subset(order[:num_train]), classes.subset(order[num_train:])
