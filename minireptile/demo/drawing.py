"""Drawings as the network sees them: pen strokes → a 28×28 image in Omniglot's polarity.

The rule is that of the Reptile article's interactive demo (openai/supervised-reptile,
``web/src/drawing.js``), done here with Pillow so the page, the JSON API and the tests share
one path:

1. A drawing is a list of strokes, each a list of ``(x, y)`` points, x to the right and y
   down, in any unit (the page sends fractions of its canvas).
2. The bounding box of all points is centred in a square of side ``1.9 × max(width,
   height)`` (the demo's padding of 0.9), and the points are mapped to ``[0, 1]`` in it.
3. Each stroke is drawn as a polyline ``0.05`` of the square wide with square caps; a stroke
   of a single point becomes a segment 0.001 long, so a dot still leaves a square mark.
4. At 28×28, a pixel is ink (0) when the line covers more than half of it (the canvas's
   anti-aliased alpha above 128 of 255) and background (1) otherwise.

Coverage is measured by drawing the segments as filled polygons on a grid ``SUPERSAMPLE``
times finer and averaging each 28×28 pixel's block. Each segment is a rectangle extended by
half the line width at both ends (its square caps); where segments meet, the union of the
rectangles stands in for the canvas's join.
"""

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError

IMAGE_SIZE = 28
PADDING = 0.9            # the square's side is (1 + PADDING) × the larger side of the box
LINE_WIDTH = 0.05        # fraction of the square
DOT_LENGTH = 0.001       # a one-point stroke becomes a segment this long (fraction of square)
INK_COVERAGE = 128 / 255  # a pixel covered more than this is ink
SUPERSAMPLE = 32       # Pillow fills edge pixels generously: at 32× that adds < 1/30 px
MIN_EXTENT = 1e-6        # below this the drawing is a single dot: its box is this wide
MAX_STROKES = 64
MAX_POINTS = 4096        # per drawing, all strokes together
MAX_COORDINATE = 1e6


def check_strokes(strokes, what="drawing"):
    """Validate JSON-like strokes and return them as a list of ``(n_i, 2)`` float64 arrays.

    Raises :class:`InputError` with a one-line reason naming ``what`` for: a non-list, no
    strokes, more than ``MAX_STROKES`` strokes or ``MAX_POINTS`` points, an empty stroke, a
    point that is not two numbers, a coordinate that is not finite or beyond
    ±``MAX_COORDINATE``.
    """
    if not isinstance(strokes, (list, tuple)):
        raise InputError(f"{what}: strokes must be a list of strokes, got "
                         f"{type(strokes).__name__}")
    if not strokes:
        raise InputError(f"{what}: no strokes; draw something first")
    if len(strokes) > MAX_STROKES:
        raise InputError(f"{what}: {len(strokes)} strokes, at most {MAX_STROKES} are accepted")
    total = 0
    arrays = []
    for i, stroke in enumerate(strokes):
        if not isinstance(stroke, (list, tuple)) or not stroke:
            raise InputError(f"{what}: stroke {i} must be a non-empty list of [x, y] points, "
                             f"got {_short(stroke)}")
        total += len(stroke)
        if total > MAX_POINTS:
            raise InputError(f"{what}: more than {MAX_POINTS} points, at most {MAX_POINTS} "
                             "are accepted per drawing")
        for point in stroke:
            if (not isinstance(point, (list, tuple)) or len(point) != 2
                    or not all(_is_number(v) for v in point)):
                raise InputError(f"{what}: stroke {i} has a point {_short(point)}; a point is "
                                 "two numbers [x, y]")
        points = np.asarray(stroke, dtype=np.float64)
        if not np.all(np.isfinite(points)) or np.any(np.abs(points) > MAX_COORDINATE):
            bad = points[~(np.isfinite(points) & (np.abs(points) <= MAX_COORDINATE))][0]
            raise InputError(f"{what}: stroke {i} has the coordinate {bad!r}; coordinates "
                             f"must be finite numbers within ±{MAX_COORDINATE:g}")
        arrays.append(points)
    return arrays


def centred_strokes(strokes):
    """Map strokes into the unit square that centres their bounding box (rule 2).

    Parameters
    ----------
    strokes : list of (n_i, 2) float arrays

    Returns
    -------
    list of (n_i, 2) float64 arrays with coordinates in [0, 1]: the box's centre at
    (0.5, 0.5) and its larger side ``1 / (1 + PADDING)`` long.
    """
    every = np.concatenate(strokes)
    low, high = every.min(axis=0), every.max(axis=0)
    side = max(float(np.max(high - low)), MIN_EXTENT) * (1 + PADDING)
    corner = (low + high) / 2 - side / 2
    return [(s - corner) / side for s in strokes]


def _segment_polygons(points, half_width):
    """Corners of the rectangles covering segments p→q with square caps, in drawing order.

    points : (n, 2) array with no two consecutive points equal, n ≥ 2.
    Returns an (n − 1, 4, 2) array: per segment, p − d·h + n·h, q + d·h + n·h, q + d·h − n·h,
    p − d·h − n·h, with d the segment's unit direction, n its normal and h the half width.
    """
    p, q = points[:-1], points[1:]
    d = q - p
    d /= np.hypot(d[:, 0], d[:, 1])[:, None]
    d *= half_width
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    a, b = p - d, q + d
    return np.stack([a + n, b + n, b - n, a - n], axis=1)


def line_coverage(strokes, size=IMAGE_SIZE, line_width=LINE_WIDTH):
    """Fraction of each pixel covered by the strokes' lines (rule 3).

    Parameters
    ----------
    strokes : list of (n_i, 2) float arrays, coordinates in [0, 1] (x right, y down)
    size : int
        Side of the output image in pixels.
    line_width : float
        Line width as a fraction of the square.

    Returns
    -------
    (size, size) float32 array of values in [0, 1], in steps of 1 / SUPERSAMPLE².
    """
    fine = size * SUPERSAMPLE
    canvas = Image.new("L", (fine, fine), 0)
    draw = ImageDraw.Draw(canvas)
    half_width = line_width * fine / 2
    for stroke in strokes:
        # Pillow samples a polygon at pixel centres (integer coordinates); shifting by half a
        # pixel makes fine pixel i cover [i, i + 1) of the scaled drawing.
        points = np.asarray(stroke, dtype=np.float64) * fine - 0.5
        keep = np.ones(len(points), dtype=bool)
        keep[1:] = np.any(points[1:] != points[:-1], axis=1)  # repeated points draw nothing
        points = points[keep]
        if len(points) == 1:
            points = np.vstack([points, points + DOT_LENGTH * fine])
        for corners in _segment_polygons(points, half_width).tolist():
            draw.polygon([tuple(c) for c in corners], fill=255)
    covered = np.asarray(canvas).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE)
    return (covered.sum(axis=(1, 3), dtype=np.uint32) / (255 * SUPERSAMPLE ** 2)).astype(
        np.float32)


def render_unit_strokes(strokes, size=IMAGE_SIZE, line_width=LINE_WIDTH):
    """Rasterise strokes given in the unit square (rules 3 and 4).

    Returns
    -------
    (size, size) float32 array: 0 where the line covers more than half of a pixel, else 1.
    """
    coverage = line_coverage(strokes, size, line_width)
    return np.where(coverage > INK_COVERAGE, 0, 1).astype(np.float32)


def strokes_to_image(strokes, what="drawing"):
    """The demo's whole path: validate, centre, render. Returns a (28, 28) float32 image
    with ink 0 and background 1, the polarity of the training images."""
    return render_unit_strokes(centred_strokes(check_strokes(strokes, what)))


def check_image(image, what="image"):
    """Validate a 28×28 image given as nested lists (or an array) of numbers in [0, 1].

    Returns a (28, 28) float32 array; raises :class:`InputError` for another shape, a value
    that is not a finite number, or one outside [0, 1].
    """
    try:
        array = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what}: must be {IMAGE_SIZE} rows of {IMAGE_SIZE} numbers "
                         "in [0, 1]") from None
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"{what}: must be {IMAGE_SIZE}×{IMAGE_SIZE} numbers in [0, 1], got "
                         f"shape {array.shape}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise InputError(f"{what}: values must be finite numbers in [0, 1] (1 background, "
                         f"0 ink), got min {array.min()!r} and max {array.max()!r}")
    return array.astype(np.float32)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
