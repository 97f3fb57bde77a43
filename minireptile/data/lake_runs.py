"""Lake et al.'s 20-way one-shot runs (``all_runs.zip`` of brendenlake/omniglot).

Layout, as a folder or a zip (optionally under one top folder)::

    run01/class_labels.txt
    run01/training/class01.png … class20.png     one drawing of each of 20 characters
    run01/test/item01.png … item20.png           another drawing of each, shuffled
    …
    run20/…

``class_labels.txt`` has one line per test item, ``runNN/test/itemXX.png
runNN/training/classYY.png`` (paths relative to the folder holding the runs). As in the
release's ``demo_classification.py``, training files are indexed in sorted order and test
files are taken in sorted order. Images get the same 28×28 preprocessing as Omniglot
(:func:`~minireptile.data.omniglot.decode_image`).
"""

import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .omniglot import IMAGE_SIZE, check_member_size, check_rendering, decode_image, render_scale

LABELS = "class_labels.txt"
RUN_RE = re.compile(r"run\d+$")


@dataclass(frozen=True, eq=False)
class LakeRun:
    """One 20-way one-shot classification run.

    Attributes
    ----------
    name : str
        ``"run01"`` etc.
    train_images : (C, 28, 28) float32
        One image per class, ``classNN.png`` in sorted order.
    train_labels : (C,) int64
        Class index of each training image (0..C−1, i.e. ``arange(C)``).
    test_images : (T, 28, 28) float32
        ``itemNN.png`` in sorted order.
    test_labels : (T,) int64
        The correct class index of each test image.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class _Reader:
    """Reads ``/``-separated relative paths from a folder or a zip (with optional top folder)."""

    def __init__(self, path):
        self.path = path
        self.archive = None
        if os.path.isdir(path):
            self.files = []
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                rel = os.path.relpath(folder, path).replace(os.sep, "/")
                self.files += [n if rel == "." else f"{rel}/{n}" for n in names]
        elif os.path.isfile(path):
            try:
                self.archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as err:
                raise InputError(f"{path!r} is not a readable zip file ({err}); give Lake's "
                                 "all_runs.zip or its extracted folder") from None
            self.files = [n for n in self.archive.namelist() if not n.endswith("/")]
        else:
            raise InputError(f"one-shot runs {path!r} do not exist; give Lake's all_runs.zip "
                             "or its extracted folder")

    def read(self, rel):
        try:
            if self.archive is not None:
                check_member_size(self.archive, rel, self.path)
                return self.archive.read(rel)
            with open(os.path.join(self.path, rel), "rb") as f:
                return f.read()
        except KeyError:
            raise InputError(f"{rel!r} is listed in {self.path!r} but missing") from None
        except (OSError, zipfile.BadZipFile) as err:
            raise InputError(f"{rel!r} in {self.path!r} cannot be read ({err})") from None

    def close(self):
        if self.archive is not None:
            self.archive.close()


def _parse_labels(text, run, where):
    """``[(test file, training file)]`` from a class_labels.txt, checked against the run."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        ok = (len(parts) == 2 and parts[0].startswith(f"{run}/test/")
              and parts[1].startswith(f"{run}/training/"))
        if not ok:
            raise InputError(f"{where} line {number} reads {line.strip()!r}; expected "
                             f"'{run}/test/itemXX.png {run}/training/classYY.png'")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise InputError(f"{where} lists no test items")
    return pairs


def load_lake_runs(path, size=IMAGE_SIZE, render="nearest"):
    """Read every run of the one-shot task.

    Parameters
    ----------
    path : str
        ``all_runs.zip`` or a folder holding ``run01``… (or holding one folder that does).
    size : int
        Side length of the images.
    render : {"nearest", "area"}
        How each drawing is shrunk, as for training images
        (:func:`~minireptile.data.omniglot.decode_image`).

    Returns
    -------
    list of LakeRun, sorted by run name.
    """
    path = os.fspath(path)
    check_rendering(render)
    reader = _Reader(path)
    try:
        labels = sorted(f for f in reader.files if f.endswith("/" + LABELS)
                        and RUN_RE.match(f.split("/")[-2]))
        if not labels:
            raise InputError(f"{path!r} holds no runNN/{LABELS}; give Lake's all_runs.zip or "
                             "its extracted folder")
        runs = []
        for label_file in labels:
            root = label_file[:-len(LABELS) - 1]  # ".../runNN"
            run = root.rsplit("/", 1)[-1]
            prefix = root[:-len(run)]  # "" or "all_runs/"
            where = f"{path}/{label_file}"
            pairs = _parse_labels(reader.read(label_file).decode("utf-8", "replace"), run,
                                  where)
            train_files = sorted({train for _, train in pairs})
            test_files = sorted(test for test, _ in pairs)
            _check_files(reader, prefix, run, train_files, test_files, where)
            answer = dict(pairs)

            runs.append(LakeRun(
                name=run,
                train_images=_load_images(reader, prefix, train_files, size, render),
                train_labels=np.arange(len(train_files), dtype=np.int64),
                test_images=_load_images(reader, prefix, test_files, size, render),
                test_labels=np.array([train_files.index(answer[t]) for t in test_files],
                                     dtype=np.int64)))
        return runs
    finally:
        reader.close()


def _check_files(reader, prefix, run, train_files, test_files, where):
    """Raise unless the run's folders hold exactly the images its labels list, one test
    image per training class."""
    for kind, listed in (("training", train_files), ("test", test_files)):
        present = {f[len(prefix):] for f in reader.files
                   if f.startswith(f"{prefix}{run}/{kind}/") and f.lower().endswith(".png")}
        absent = sorted(set(listed) - present)
        unlisted = sorted(present - set(listed))
        if absent or unlisted:
            raise InputError(
                f"{reader.path}/{prefix}{run}/{kind} holds {len(present)} images but "
                f"{where} lists {len(listed)}"
                + (f"; missing {absent[:3]}" if absent else "")
                + (f"; not listed {unlisted[:3]}" if unlisted else "")
                + "; re-extract all_runs.zip")
    if len(test_files) != len(train_files):
        raise InputError(f"{where} lists {len(test_files)} test images for "
                         f"{len(train_files)} classes; a run has one test image per class")


def _load_images(reader, prefix, rels, size, render):
    """(len(rels), size, size) float32 images in [0, 1] of the files ``prefix + rel``."""
    images = np.stack([decode_image(reader.read(prefix + rel), f"{reader.path}/{prefix}{rel}",
                                    size, render) for rel in rels])
    return images.astype(np.float32) * np.float32(render_scale(render))
