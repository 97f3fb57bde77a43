"""Omniglot: read the official layout from a release zip or a folder, decode, split.

Layout (``images_background``, ``images_evaluation`` and the two ``_small`` sets)::

    <root>/<Alphabet>/characterNN/<id>_<drawer>.png      105×105, 1 bit, white background

Preprocessing matches the reference implementation (openai/supervised-reptile, ``omniglot.py``):
``Image.open(f).resize((28, 28))``. Pillow resizes 1-bit images with nearest neighbour
whatever the filter argument, so the result stays 1-bit; ``numpy.array`` of it is boolean and
``astype(float32)`` gives background 1.0 and strokes 0.0. We keep that polarity, also for
the grey ``render="area"`` images (the share of each pixel left white). Rotation
augmentation (``Image.rotate`` by 90°, 180°, 270°, counter-clockwise) equals ``numpy.rot90``
on a square image and is applied when images are fetched (see :mod:`.pool`).

Several sources are merged into one pool of characters before splitting, as the reference
merges ``images_background`` and ``images_evaluation`` into one folder. A character is named
``"<Alphabet>/characterNN"``; one present in several sources (Greek and Latin are in both small
sets, and both small sets are subsets of ``images_background``) is kept once if its images
are identical and rejected with an error if they differ (see :func:`~.pool.merge_pools`).
"""

import io
import os
import zipfile

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import InputError
from .cache import load_cached
from .classes import ClassSet, ImagePool, augment_rotations, merge_pools, split_classes

IMAGE_SIZE = 28
# How a 105×105 drawing becomes IMAGE_SIZE×IMAGE_SIZE (see decode_image).
RENDERINGS = ("nearest", "area")
NUM_TRAIN_CHARACTERS = 1200
# An Omniglot or Lake PNG is 1-3 KB; a zip member declaring more is not one (a "zip bomb"
# would otherwise be inflated into memory before anything could look at it).
MAX_IMAGE_BYTES = 8 << 20
FETCH_HINT = "download it with `minireptile data omniglot --dest DIR`"

__all__ = ["IMAGE_SIZE", "RENDERINGS", "check_member_size", "check_rendering", "render_scale",
           "decode_image", "read_omniglot_source", "load_omniglot_source", "load_omniglot",
           "split_by_character", "split_by_alphabet", "alphabets", "omniglot_splits",
           "augment_rotations"]


def check_rendering(render):
    """``render`` if it is one of :data:`RENDERINGS`, else :class:`InputError`."""
    if render not in RENDERINGS:
        raise InputError(f"render={render!r}: expected one of {', '.join(RENDERINGS)} "
                         "(how a drawing is shrunk to 28×28)")
    return render


def render_scale(render):
    """``images * render_scale(render)`` are the pixel values in [0, 1] the networks see."""
    return 1.0 if check_rendering(render) == "nearest" else 1 / 255


def decode_image(data, where, size=IMAGE_SIZE, render="nearest"):
    """Decode one Omniglot PNG and shrink it to ``size``×``size``.

    ``render="nearest"`` does what the reference does, ``Image.open(f).resize((28, 28))``:
    Pillow resizes a 1-bit image by nearest neighbour, so each output pixel is one of the
    about 14 input pixels it covers and thin strokes come out broken. ``render="area"``
    averages, for each output pixel, the input pixels whose centres it covers (Pillow's box
    filter: every input pixel counts once, in blocks of 3 or 4 rows and columns for 105 →
    28), so each output pixel is the share of its block that is white: a grey image that
    keeps every stroke.

    Parameters
    ----------
    data : bytes
        The PNG file's bytes.
    where : str
        Path shown in error messages.
    size : int
        Output side length.
    render : {"nearest", "area"}
        How the drawing is shrunk (:data:`RENDERINGS`).

    Returns
    -------
    (size, size) uint8 array: 0 (stroke) and 1 (background) for ``"nearest"``; 0 (all
    stroke) to 255 (all background) for ``"area"`` (see :func:`render_scale`).
    """
    check_rendering(render)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        width, height = img.size
        if width != height or width < size:
            # Resizing would distort it or invent its pixels: not an Omniglot drawing.
            raise InputError(f"image {where!r} is {width}×{height} pixels; Omniglot drawings "
                             f"are square and at least {size}×{size} (105×105 in the "
                             f"release); re-extract or re-download the data ({FETCH_HINT})")
        if render == "area":
            grey = img.convert("L").resize((size, size), Image.Resampling.BOX)
            return np.array(grey, dtype=np.uint8)
        if img.mode != "1":
            # Not the official 1-bit format: threshold at half intensity so the nearest-
            # neighbour resize below still sees 1-bit pixels.
            img = img.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
        img = img.resize((size, size), Image.Resampling.NEAREST)
        return np.array(img, dtype=np.uint8)
    except InputError:
        raise
    except UnidentifiedImageError:
        # (Pillow's own message names the in-memory buffer, not the file.)
        raise InputError(f"image {where!r} is not a readable PNG (not an image format "
                         f"Pillow recognises); re-extract or re-download the data "
                         f"({FETCH_HINT})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"image {where!r} is not a readable PNG ({err}); re-extract or "
                         f"re-download the data ({FETCH_HINT})") from None


def check_member_size(archive, rel, path):
    """Raise :class:`InputError` if zip member ``rel`` declares more than
    :data:`MAX_IMAGE_BYTES` uncompressed (checked before it is inflated)."""
    declared = archive.getinfo(rel).file_size
    if declared > MAX_IMAGE_BYTES:
        raise InputError(f"{rel!r} in {path!r} declares {declared:,} bytes uncompressed; an "
                         f"image of the data set is a few KB, so the zip is not the official "
                         f"one ({FETCH_HINT})")


def _class_of(parts):
    """``(prefix, "Alphabet/characterNN")`` for a PNG path split into parts, else None."""
    if len(parts) < 3 or not parts[-1].lower().endswith(".png"):
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    if not parts[-2].startswith("character"):
        return None
    return "/".join(parts[:-3]), f"{parts[-3]}/{parts[-2]}"


def _group(paths, source):
    """Group PNG paths (``/``-separated, relative) by character; checks one common root."""
    classes, prefixes = {}, set()
    for path in paths:
        found = _class_of(path.split("/"))
        if found is None:
            continue
        prefix, name = found
        prefixes.add(prefix)
        classes.setdefault(name, []).append(path)
    if not classes:
        sample = ", ".join(repr(p) for p in list(paths)[:3]) or "nothing"
        raise InputError(f"{source!r} holds no Omniglot images (expected "
                         f"<Alphabet>/characterNN/*.png, found {sample}); give an extracted "
                         f"images_background folder or its zip, or {FETCH_HINT}")
    if len(prefixes) > 1:
        raise InputError(f"{source!r} holds Omniglot images under several roots "
                         f"{sorted(prefixes)[:3]}; give each root as its own source")
    return {name: sorted(files) for name, files in sorted(classes.items())}


def _list_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path!r} is not a readable zip file ({err}); {FETCH_HINT}") from None
    try:
        return archive, _group([n for n in archive.namelist() if not n.endswith("/")], path)
    except InputError:
        archive.close()
        raise


def _list_folder(path):
    rels = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, path)
        for name in files:
            rels.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    if not rels:
        raise InputError(f"data folder {path!r} is empty; {FETCH_HINT}")
    return _group(rels, path)


def read_omniglot_source(path, size=IMAGE_SIZE, progress=True, render="nearest"):
    """Decode every image of one source (no cache).

    Parameters
    ----------
    path : str
        A release zip (one top folder holding the alphabets) or a folder holding the
        alphabets (or holding one folder that does).
    size : int
        Side length after resizing.
    progress : bool
        Show a progress bar while decoding.
    render : {"nearest", "area"}
        How each drawing is shrunk (see :func:`decode_image`).

    Returns
    -------
    ImagePool with classes ``"Alphabet/characterNN"`` sorted by name, images (n, size, size)
    uint8: 0/1 with scale 1 (``"nearest"``), 0–255 with scale 1/255 (``"area"``).
    """
    path = os.fspath(path)
    check_rendering(render)
    if os.path.isdir(path):
        classes = _list_folder(path)
        archive = None

        def read(rel):
            try:
                with open(os.path.join(path, rel), "rb") as f:
                    return f.read()
            except OSError as err:
                raise InputError(f"image {os.path.join(path, rel)!r} cannot be read "
                                 f"({err.strerror or err})") from None
    elif os.path.isfile(path):
        archive, classes = _list_zip(path)

        def read(rel):
            try:
                check_member_size(archive, rel, path)
                return archive.read(rel)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise InputError(f"{rel!r} in {path!r} cannot be read ({err}); the zip is "
                                 f"damaged, {FETCH_HINT}") from None
    else:
        raise InputError(f"data source {path!r} does not exist; give an Omniglot folder or "
                         f"zip, or {FETCH_HINT}")
    total = sum(len(files) for files in classes.values())
    label = os.path.basename(os.path.normpath(path))
    images, files = [], []
    try:
        with tqdm(total=total, desc=f"decoding {label}", unit="img", disable=not progress,
                  leave=False) as bar:
            for name, rels in classes.items():
                batch = np.empty((len(rels), size, size), np.uint8)
                for j, rel in enumerate(rels):
                    where = (os.path.join(path, rel) if archive is None
                             else f"{path}/{rel}")
                    batch[j] = decode_image(read(rel), where, size, render)
                    bar.update()
                images.append(batch)
                files.append([rel.rsplit("/", 1)[-1] for rel in rels])
    finally:
        if archive is not None:
            archive.close()
    return ImagePool.from_classes(list(classes), images, files, scale=render_scale(render),
                                  image_shape=(size, size))


def load_omniglot_source(path, size=IMAGE_SIZE, cache_dir=None, use_cache=True,
                         progress=True, render="nearest"):
    """:func:`read_omniglot_source` through the decoded-image cache (see :mod:`.cache`)."""
    path = os.fspath(path)
    check_rendering(render)
    if not os.path.exists(path):
        raise InputError(f"data source {path!r} does not exist; give an Omniglot folder or "
                         f"zip, or {FETCH_HINT}")
    # The nearest-neighbour key is the one it had before renderings were a choice, so
    # caches filled then stay valid.
    key = {"size": size} if render == "nearest" else {"size": size, "render": render}
    return load_cached("omniglot", path, key,
                       lambda: read_omniglot_source(path, size, progress, render),
                       cache_dir=cache_dir, use_cache=use_cache)


def load_omniglot(sources, size=IMAGE_SIZE, cache_dir=None, use_cache=True, progress=True,
                  render="nearest"):
    """Load and merge several sources into one set of characters (unrotated).

    Parameters
    ----------
    sources : str or list of str
        Zips or folders (the repeatable ``--data`` option).
    render : {"nearest", "area"}
        How each drawing is shrunk (see :func:`decode_image`).

    Returns
    -------
    ClassSet with one class per distinct character, sorted by ``"Alphabet/characterNN"``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(s) for s in sources]
    pools = [load_omniglot_source(s, size, cache_dir, use_cache, progress, render)
             for s in sources]
    pool = pools[0] if len(pools) == 1 else merge_pools(pools, sources)
    return ClassSet(pool)


def alphabets(classes):
    """Sorted alphabet names of a ClassSet of Omniglot characters."""
    return sorted({str(classes.pool.names[b]).split("/", 1)[0] for b in classes.base})


def split_by_character(classes, rng, num_train=NUM_TRAIN_CHARACTERS):
    """The reference's split: shuffle the characters, the first ``num_train`` train.

    The full set has 1,623 characters (1,200 train, 423 test); the small sets have only
    136 and 156, so pass a smaller ``num_train`` for them.
    """
    return split_classes(classes, num_train, rng)


def split_by_alphabet(classes, train_alphabets):
    """Characters of ``train_alphabets`` for training, all others for testing.

    Raises InputError naming any alphabet not present.
    """
    train_alphabets = list(train_alphabets)
    present = alphabets(classes)
    unknown = sorted(set(train_alphabets) - set(present))
    if unknown:
        raise InputError(f"unknown alphabet(s) {unknown}; the data holds {present}")
    names = [str(classes.pool.names[b]).split("/", 1)[0] for b in classes.base]
    wanted = set(train_alphabets)
    rows = np.arange(len(classes))
    is_train = np.array([n in wanted for n in names], dtype=bool)
    return classes.subset(rows[is_train]), classes.subset(rows[~is_train])


def omniglot_splits(sources, rng, num_train=NUM_TRAIN_CHARACTERS, train_alphabets=None,
                    augment=True, size=IMAGE_SIZE, cache_dir=None, use_cache=True,
                    progress=True, render="nearest"):
    """Training and test classes as ``run_omniglot.py`` builds them.

    Load and merge ``sources``; split by character (``num_train`` with ``rng``) or, when
    ``train_alphabets`` is given, by alphabet; then augment the *training* classes with
    rotations (the test classes stay unrotated, as in the reference). ``render`` says how
    each drawing is shrunk (see :func:`decode_image`).

    Returns
    -------
    (train, test) : ClassSets
    """
    classes = load_omniglot(sources, size, cache_dir, use_cache, progress, render)
    if train_alphabets:
        train, test = split_by_alphabet(classes, train_alphabets)
    else:
        train, test = split_by_character(classes, rng, num_train)
    return (augment_rotations(train) if augment else train), test
