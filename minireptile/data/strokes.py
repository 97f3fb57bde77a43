"""Omniglot's pen trajectories: the stroke files that come with every drawing.

``strokes_background_small{1,2}.zip`` (and the full release's ``strokes_*.zip``) hold, for
each ``<Alphabet>/characterNN/<id>_<drawer>.png``, a ``.txt`` of the same name::

    START
    x,y,t          one line per point: motor coordinates in pixels of the 105×105 image,
    ...            y pointing up, t in milliseconds
    BREAK          after each stroke

:func:`parse_strokes` turns one file into point arrays in image coordinates (y down, so
row = −y), ready to replay or to render.
"""

import posixpath
import zipfile

import numpy as np

from ..errors import InputError

CANVAS_SIZE = 105  # side of the Omniglot images the coordinates refer to


def parse_strokes(text, where="stroke file"):
    """Strokes of one drawing.

    Parameters
    ----------
    text : str
        Content of a stroke file.
    where : str
        Name shown in error messages.

    Returns
    -------
    list of (n_i, 2) float64 arrays of (x, row) in pixels of the 105×105 image.
    """
    strokes, current = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line == "START":
            continue
        if line == "BREAK":
            if current:
                strokes.append(np.array(current, dtype=np.float64))
            current = []
            continue
        try:
            x, y, _ = (float(v) for v in line.split(","))
        except ValueError:
            raise InputError(f"{where}, line {number}: expected 'x,y,t', got {line[:40]!r}") \
                from None
        current.append((x, -y))
    if current:
        strokes.append(np.array(current, dtype=np.float64))
    if not strokes:
        raise InputError(f"{where} holds no points")
    return strokes


class StrokeArchive:
    """The drawings of a stroke zip, by character: ``{"Alphabet/characterNN": [names]}``.

    Parameters
    ----------
    path : str
        A ``strokes_*.zip``.
    """

    def __init__(self, path):
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            raise InputError(f"{path!r} is not a readable stroke zip ({err})") from None
        self.characters = {}
        for name in sorted(self._zip.namelist()):
            parts = name.split("/")
            if (not name.endswith(".txt") or "__MACOSX" in parts or len(parts) < 4
                    or posixpath.basename(name).startswith(".")):
                continue
            self.characters.setdefault("/".join(parts[-3:-1]), []).append(name)

    def alphabet_characters(self, alphabet):
        """Sorted character names of one alphabet."""
        return [c for c in self.characters if c.split("/")[0] == alphabet]

    def read(self, name):
        """Strokes of the drawing stored as ``name`` (see :func:`parse_strokes`)."""
        return parse_strokes(self._zip.read(name).decode("utf-8"), name)

    def image_name(self, name):
        """Path of the same drawing's PNG inside the matching ``images_*`` zip."""
        parts = name.split("/")
        return "/".join([parts[0].replace("strokes_", "images_")] + parts[1:])[:-4] + ".png"

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
