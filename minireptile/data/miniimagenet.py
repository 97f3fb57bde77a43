"""Mini-ImageNet: read the reference's folder layout, decode, cache, one ClassSet per split.

Layout (what the reference's ``fetch_data.sh`` builds, and what most copies of the Ravi &
Larochelle split look like once unpacked)::

    <root>/train/<wnid>/<wnid>_<n>.JPEG      64 classes × 600 images
    <root>/val/<wnid>/*.JPEG                 16 classes
    <root>/test/<wnid>/*.JPEG                20 classes

Preprocessing follows the reference (openai/supervised-reptile, ``miniimagenet.py``), which
reads every image as ``Image.open(f).resize((84, 84)).convert('RGB')`` and scales the bytes
by ``1 / 0xff``:

* **The images are not pre-resized.** ``fetch_data.sh`` downloads the original ImageNet
  JPEGs (byte ranges of the ILSVRC 2012 training tar), of every size and aspect ratio; the
  reference squashes each to 84×84 when it reads it (no crop, aspect ratio not kept). We do
  the same, so the full-size download and an already-84×84 copy both work; for an 84×84
  image the resize is the identity whatever the filter.
* **Filter: nearest neighbour** by default. ``resize`` without a filter meant NEAREST in the
  Pillow of 2018 (Pillow 7.0, in 2020, changed the default to BICUBIC), so the paper's
  numbers were obtained on nearest-neighbour thumbnails. Pass ``resample="bicubic"`` (or
  another Pillow filter name) for smoother thumbnails; the filter is part of the cache key.
* **Resize, then convert to RGB**, in the reference's order. Greyscale (``L``), CMYK and
  palette JPEGs therefore load as RGB (a few ImageNet files are greyscale or CMYK), exactly as
  the reference loads them; the alpha channel of any RGBA/LA image is dropped.
* **Which entries count**, as the reference: in a split folder, the sub-folders whose name
  starts with ``n`` (WordNet IDs); in a class folder, the files whose name ends in ``.JPEG``
  (case-sensitive). Anything else is ignored. We sort both (the reference keeps
  ``os.listdir``'s arbitrary order), so a run is reproducible across file systems.

Where the reference would fail later or silently, we raise :class:`InputError` at load time:
a missing split folder, a split without class folders, a class folder without images, and an
unreadable or corrupt JPEG (naming the file).

Decoding the full set (60,000 JPEGs) takes minutes; the pixels then go to the decoded-image
cache (:mod:`.cache`, kind ``"miniimagenet"``, one file per split keyed by a fingerprint of
the split folder), about 1.3 GB of uint8 in all, and later loads take seconds.
"""

import os
import zipfile

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import InputError
from .cache import load_cached
from .classes import ClassSet, ImagePool

IMAGE_SIZE = 84
SPLITS = ("train", "val", "test")
EXTENSION = ".JPEG"
SCALE = 1.0 / 255
FILTERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
           "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
LAYOUT_HINT = ("expected <root>/{train,val,test}/<wnid>/*.JPEG as made by the reference's "
               "fetch_data.sh")

__all__ = ["IMAGE_SIZE", "SPLITS", "decode_image", "read_miniimagenet_split",
           "load_miniimagenet_split", "load_miniimagenet"]


def _filter(resample):
    if resample not in FILTERS:
        raise InputError(f"unknown resize filter {resample!r}; use one of {sorted(FILTERS)}")
    return FILTERS[resample]


def decode_image(path, size=IMAGE_SIZE, resample="nearest"):
    """Read one image as the reference does: resize to ``size``×``size``, then RGB.

    Parameters
    ----------
    path : str
        An image file (any format Pillow reads; Mini-ImageNet's are JPEGs).
    size : int
        Output side length.
    resample : str
        Pillow filter name (see ``FILTERS``); ignored for 1-bit and palette images, which
        Pillow always resizes with nearest neighbour.

    Returns
    -------
    (size, size, 3) uint8 array.
    """
    method = _filter(resample)
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.resize((size, size), method).convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"image {path!r} disappeared while reading the data") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as err:
        raise InputError(f"image {path!r} is not a readable image ({err}); delete it or "
                         "fetch it again") from None


def _list_split(folder, split):
    """``{wnid: [file name, ...]}`` of one split folder, both sorted; checks the layout."""
    if not os.path.isdir(folder):
        raise InputError(f"Mini-ImageNet split folder {folder!r} is missing; {LAYOUT_HINT}")
    try:
        entries = sorted(os.listdir(folder))
    except OSError as err:
        raise InputError(f"cannot list {folder!r} ({err.strerror or err})") from None
    wnids = [e for e in entries if e.startswith("n") and os.path.isdir(os.path.join(folder, e))]
    if not wnids:
        sample = ", ".join(repr(e) for e in entries[:3]) or "nothing"
        raise InputError(f"the {split} split {folder!r} holds no class folders (WordNet IDs "
                         f"such as n01532829; found {sample}); {LAYOUT_HINT}")
    classes = {}
    for wnid in wnids:
        class_dir = os.path.join(folder, wnid)
        try:
            names = sorted(f for f in os.listdir(class_dir) if f.endswith(EXTENSION))
        except OSError as err:
            raise InputError(f"cannot list {class_dir!r} ({err.strerror or err})") from None
        if not names:
            raise InputError(f"class folder {class_dir!r} holds no *{EXTENSION} images "
                             "(names must end in '.JPEG', as the reference reads them); an "
                             "interrupted download? fetch the class again or remove the folder")
        classes[wnid] = names
    return classes


def read_miniimagenet_split(folder, size=IMAGE_SIZE, resample="nearest", progress=True,
                            split=None):
    """Decode every image of one split folder (no cache).

    Parameters
    ----------
    folder : str
        ``<root>/train``, ``<root>/val`` or ``<root>/test``.
    size : int
        Side length after resizing (84 in the reference).
    resample : str
        Resize filter (see :func:`decode_image`).
    progress : bool
        Show a progress bar while decoding.
    split : str, optional
        Name used in messages (default: the folder's name).

    Returns
    -------
    ImagePool with classes named by WordNet ID in sorted order, images (n, size, size, 3)
    uint8, scale 1/255.
    """
    folder = os.fspath(folder)
    split = split or os.path.basename(os.path.normpath(folder))
    classes = _list_split(folder, split)
    sizes = [len(names) for names in classes.values()]
    starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    # One allocation for the whole split: the training split alone is 813 MB of bytes, and
    # joining per-class arrays afterwards would briefly need twice that.
    images = np.empty((int(starts[-1]), size, size, 3), np.uint8)
    files = []
    with tqdm(total=len(images), desc=f"decoding mini-imagenet {split}", unit="img",
              disable=not progress, leave=False) as bar:
        row = 0
        for wnid, names in classes.items():
            for name in names:
                images[row] = decode_image(os.path.join(folder, wnid, name), size, resample)
                files.append(name)
                row += 1
                bar.update()
    return ImagePool(names=np.array(list(classes), dtype=str), starts=starts, images=images,
                     files=np.array(files, dtype=str), scale=SCALE)


def load_miniimagenet_split(folder, size=IMAGE_SIZE, resample="nearest", cache_dir=None,
                            use_cache=True, progress=True, split=None):
    """:func:`read_miniimagenet_split` through the decoded-image cache (see :mod:`.cache`)."""
    folder = os.fspath(folder)
    split = split or os.path.basename(os.path.normpath(folder))
    if not os.path.isdir(folder):
        raise InputError(f"Mini-ImageNet split folder {folder!r} is missing; {LAYOUT_HINT}")
    _filter(resample)
    return load_cached("miniimagenet", folder, {"size": size, "resample": resample},
                       lambda: read_miniimagenet_split(folder, size, resample, progress, split),
                       cache_dir=cache_dir, use_cache=use_cache)


def load_miniimagenet(root, size=IMAGE_SIZE, resample="nearest", cache_dir=None,
                      use_cache=True, progress=True, splits=SPLITS):
    """The three splits of a Mini-ImageNet folder, as the reference's ``read_dataset``.

    Parameters
    ----------
    root : str
        The folder holding ``train``, ``val`` and ``test``.
    splits : tuple of str
        Which splits to load (all three by default); all are checked before any is decoded,
        so a missing one is reported at once.

    Returns
    -------
    dict mapping each split name to a ClassSet (unrotated; the reference does not augment
    Mini-ImageNet), in the order of ``splits``.
    """
    root = os.fspath(root)
    if os.path.isfile(root):
        kind = "a zip file" if zipfile.is_zipfile(root) else "a file"
        raise InputError(f"Mini-ImageNet root {root!r} is {kind}, not a folder (Omniglot "
                         f"zips go to `train omniglot`); {LAYOUT_HINT}")
    if not os.path.isdir(root):
        raise InputError(f"Mini-ImageNet folder {root!r} does not exist; {LAYOUT_HINT}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise InputError(f"unknown split(s) {unknown}; Mini-ImageNet has {list(SPLITS)}")
    missing = [s for s in splits if not os.path.isdir(os.path.join(root, s))]
    if missing:
        where = ", ".join(repr(os.path.join(root, s)) for s in missing)
        raise InputError(f"Mini-ImageNet folder {root!r} has no {'/'.join(missing)} split "
                         f"(missing {where}); {LAYOUT_HINT}")
    return {s: ClassSet(load_miniimagenet_split(os.path.join(root, s), size, resample,
                                                cache_dir, use_cache, progress, split=s))
            for s in splits}
