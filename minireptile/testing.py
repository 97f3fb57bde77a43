"""Fixtures for tests and benchmarks: small data sets generated on the spot, written in the
layouts of the real releases so the loaders can read them.

The data is synthetic (or rearranged from images the caller passes in): it exercises the
readers, the command line and the training loop, and means nothing as a benchmark of
learning. Not for real use.

* :func:`make_lake_fixture`: one-shot runs in the layout of Lake's ``all_runs.zip``
  (:mod:`minireptile.data.lake_runs`).
* :func:`make_miniimagenet_fixture`: a small Mini-ImageNet in the reference's folder layout
  (:mod:`minireptile.data.miniimagenet`).
"""

import os

import numpy as np
from PIL import Image

from .data.lake_runs import LABELS
from .data.miniimagenet import EXTENSION, IMAGE_SIZE, SPLITS
from .errors import InputError, check_generator


def make_lake_fixture(dest, source_images, n_runs, rng, n_way=20):
    """Write one-shot runs in the release's format from Omniglot drawings (for tests).

    Each run draws ``n_way`` characters without replacement and two different drawings of
    each: one becomes ``training/classYY.png``, the other a test item; the test items are
    shuffled. PNGs are written as the originals are stored: 1 bit per pixel, as given (pass
    105×105 drawings to mimic the release).

    Parameters
    ----------
    dest : str
        Folder that receives ``run01``…; created if missing.
    source_images : sequence of characters, each a sequence of >= 2 (H, W) arrays
        Drawings with 0 for strokes and nonzero for background.
    n_runs : int
    rng : numpy.random.Generator

    Returns
    -------
    list of (n_way,) int arrays: the source character of each training class, per run.
    """
    if len(source_images) < n_way:
        raise InputError(f"{len(source_images)} characters given, a {n_way}-way run needs "
                         f"at least {n_way}")
    chosen = []
    for r in range(1, n_runs + 1):
        run = f"run{r:02d}"
        for sub in ("training", "test"):
            os.makedirs(os.path.join(dest, run, sub), exist_ok=True)
        chars = rng.choice(len(source_images), n_way, replace=False)
        order = rng.permutation(n_way)  # test item i shows training class order[i]
        lines = []
        for c, char in enumerate(chars):
            drawings = source_images[char]
            if len(drawings) < 2:
                raise InputError(f"character {char} has {len(drawings)} drawing(s); a run "
                                 "needs 2 (one training, one test)")
            a, b = rng.choice(len(drawings), 2, replace=False)
            _write_1bit(os.path.join(dest, run, "training", f"class{c + 1:02d}.png"),
                        drawings[a])
            item = int(np.flatnonzero(order == c)[0]) + 1
            _write_1bit(os.path.join(dest, run, "test", f"item{item:02d}.png"), drawings[b])
        for i in range(n_way):
            lines.append(f"{run}/test/item{i + 1:02d}.png "
                         f"{run}/training/class{order[i] + 1:02d}.png")
        with open(os.path.join(dest, run, LABELS), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        chosen.append(np.asarray(chars))
    return chosen


def _write_1bit(path, image):
    Image.fromarray(np.asarray(image) != 0).save(path)


def make_miniimagenet_fixture(root, classes_per_split, images_per_class, rng, size=IMAGE_SIZE,
                              quality=90):
    """Write a small synthetic Mini-ImageNet in the reference's layout (for tests and benchmarks).

    Every class has its own colour and stripe pattern (orientation and period); each image
    is that pattern shifted at random, with noise, so a network can tell classes apart
    from a few examples but not trivially from one pixel.

    Parameters
    ----------
    root : str or path
        Created if missing; ``root/{train,val,test}/<wnid>/<wnid>_<i>.JPEG`` are written.
    classes_per_split : int or dict
        Classes in every split, or ``{"train": 6, "val": 2, "test": 3}``-style counts (a
        split left out or given 0 is not created, to test a missing split).
    images_per_class : int
    rng : numpy.random.Generator
    size : int
        Side of the written images (give another size than 84 to exercise resizing).
    quality : int
        JPEG quality.

    Returns
    -------
    str, the root folder.
    """
    check_generator(rng)
    if isinstance(classes_per_split, (int, np.integer)):
        classes_per_split = {s: int(classes_per_split) for s in SPLITS}
    root = os.fspath(root)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for s, split in enumerate(SPLITS):
        for c in range(classes_per_split.get(split, 0)):
            wnid = f"n{(s + 1) * 10_000_000 + c:08d}"
            folder = os.path.join(root, split, wnid)
            os.makedirs(folder, exist_ok=True)
            colour = rng.uniform(40, 215, size=3).astype(np.float32)
            angle = rng.uniform(0, np.pi)
            period = rng.uniform(6, 20)
            direction = np.cos(angle) * xx + np.sin(angle) * yy
            for i in range(images_per_class):
                phase = rng.uniform(0, 2 * np.pi)
                wave = np.sin(2 * np.pi * direction / period + phase)[..., None]
                pixels = colour + 40 * wave + rng.normal(0, 12, size=(size, size, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
                image.save(os.path.join(folder, f"{wnid}_{i}{EXTENSION}"), quality=quality)
    return root
