"""The demo's preprocessing: strokes → 28×28 images by the rule of the article's demo."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_dilation

from minireptile.data.omniglot import decode_image
from minireptile.data.strokes import CANVAS_SIZE, StrokeArchive, parse_strokes
from minireptile.demo.drawing import (
    LINE_WIDTH,
    MAX_POINTS,
    MAX_STROKES,
    PADDING,
    centred_strokes,
    check_image,
    line_coverage,
    render_unit_strokes,
    strokes_to_image,
)
from minireptile.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SIZE = 28


def reference_coverage(unit_strokes, size=SIZE, samples=32):
    """Slow, obvious rasteriser: the fraction of each pixel's ``samples²`` sample points that
    lie within half the line width of a segment, measured along and across it (square caps)."""
    offsets = (np.arange(samples) + 0.5) / samples
    centres = (np.arange(size)[:, None] + offsets).reshape(-1)
    grid_y, grid_x = np.meshgrid(centres, centres, indexing="ij")
    inside = np.zeros(grid_x.shape, dtype=bool)
    half = LINE_WIDTH * size / 2
    for stroke in unit_strokes:
        points = np.asarray(stroke) * size
        if len(points) == 1:
            points = np.vstack([points, points + 0.001 * size])
        for p, q in zip(points[:-1], points[1:]):
            length = np.hypot(*(q - p))
            if length == 0:
                continue
            d = (q - p) / length
            rel_x, rel_y = grid_x - p[0], grid_y - p[1]
            along = rel_x * d[0] + rel_y * d[1]
            across = -rel_x * d[1] + rel_y * d[0]
            inside |= (along >= -half) & (along <= length + half) & (np.abs(across) <= half)
    return inside.reshape(size, samples, size, samples).mean(axis=(1, 3))


def ink_box(image):
    rows, cols = np.nonzero(image == 0)
    return rows.min(), rows.max(), cols.min(), cols.max()


# -- hand-made strokes ---------------------------------------------------------------------

def test_horizontal_line_is_centred_padded_and_square_capped():
    # Box 0.4 × 0: the square is 1.9 × 0.4 wide, so the line spans 1/1.9 of the image,
    # centred: x from 14 − 7.37 to 14 + 7.37 pixels, plus 0.7 px of square cap each side,
    # and 1.4 px thick around row 14: ink in rows 13–14, columns 6–21.
    image = strokes_to_image([[[0.2, 0.5], [0.6, 0.5]]])
    expected = np.ones((SIZE, SIZE), dtype=np.float32)
    expected[13:15, 6:22] = 0
    np.testing.assert_array_equal(image, expected)
    assert image.dtype == np.float32


def test_centring_maps_the_box_to_the_middle_of_a_square_1_9_times_its_larger_side():
    strokes = [np.array([[10.0, 20.0], [50.0, 30.0]]), np.array([[30.0, 40.0]])]
    unit = centred_strokes(strokes)
    every = np.concatenate(unit)
    low, high = every.min(axis=0), every.max(axis=0)
    np.testing.assert_allclose((low + high) / 2, [0.5, 0.5])
    # Width 40 > height 20: the width becomes 1 / 1.9 of the square, the height half that.
    np.testing.assert_allclose(high - low, [1 / (1 + PADDING), 0.5 / (1 + PADDING)])


@pytest.mark.parametrize("strokes", [
    [[[0.1, 0.1], [0.9, 0.9]], [[0.9, 0.1], [0.1, 0.9]]],                 # a cross
    [[[0.5, 0.2], [0.8, 0.8], [0.2, 0.8], [0.5, 0.2]]],                    # a triangle
    [[[0.3 + 0.2 * np.cos(a), 0.5 + 0.35 * np.sin(a)]
      for a in np.linspace(0, 2 * np.pi, 40)]],                           # an ellipse
    [[[0.2, 0.3], [0.25, 0.31], [0.7, 0.9]], [[0.6, 0.1]]],                # with a dot
])
def test_rendering_matches_a_slow_sampling_reference(strokes):
    unit = centred_strokes([np.asarray(s, dtype=np.float64) for s in strokes])
    coverage = line_coverage(unit)
    expected = reference_coverage(unit)
    # Both sample each pixel on a 32×32 grid (polygon fill and exact tests): they agree to
    # within a few samples' worth along the edges of the lines.
    np.testing.assert_allclose(coverage, expected, atol=0.05)
    assert np.abs(coverage - expected).mean() < 0.002
    image = strokes_to_image(strokes)
    np.testing.assert_array_equal(image, np.where(coverage > 128 / 255, 0, 1))
    # Where the reference is clearly on one side of half coverage, so is the image.
    clear = np.abs(expected - 0.5) > 0.1
    np.testing.assert_array_equal(image[clear], np.where(expected > 0.5, 0, 1)[clear])


def test_polarity_and_values():
    image = strokes_to_image([[[0, 0], [3, 4], [6, 0]]])
    assert set(np.unique(image)) == {0.0, 1.0}
    assert image[0, 0] == 1 and image[-1, -1] == 1          # background is 1
    assert 20 < np.sum(image == 0) < 200                    # ink is 0


def test_a_single_dot_leaves_a_small_square_mark_in_the_centre():
    image = strokes_to_image([[[0.3, 0.7]]])
    rows, cols = np.nonzero(image == 0)
    assert 1 <= len(rows) <= 4
    assert set(rows) <= {13, 14} and set(cols) <= {13, 14}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1,
                         max_size=8), min_size=1, max_size=4),
       st.sampled_from([0.5, 2.0, 4.0]), st.integers(-64, 64), st.integers(-64, 64))
def test_scale_and_translation_do_not_change_the_image(strokes, scale, dx, dy):
    # Scales by powers of two and integer shifts are exact in floating point, so the
    # centred coordinates, and the images, must be identical.
    moved = [[(x * scale + dx, y * scale + dy) for x, y in s] for s in strokes]
    np.testing.assert_array_equal(strokes_to_image(strokes), strokes_to_image(moved))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=10),
                min_size=1, max_size=4))
def test_the_ink_box_is_centred_and_sized_by_the_larger_side(strokes):
    every = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    extent = np.max(every.max(axis=0) - every.min(axis=0))
    image = strokes_to_image(strokes)
    top, bottom, left, right = ink_box(image)
    # The box's centre sits at the image's centre (13.5) to within a pixel of rounding.
    assert abs((top + bottom) / 2 - 13.5) <= 1 and abs((left + right) / 2 - 13.5) <= 1
    if extent > 1e-3:
        # The larger side spans 28 / 1.9 ≈ 14.7 px, plus the line's 1.4 px.
        larger = max(bottom - top, right - left) + 1
        assert 14 <= larger <= 17


@pytest.mark.parametrize("strokes, message", [
    ("abc", "must be a list of strokes"),
    ([], "no strokes"),
    ([[]], "stroke 0 must be a non-empty list"),
    ([[[0, 0]], "x"], "stroke 1 must be a non-empty list"),
    ([[[0, 0, 1]]], "a point is two numbers"),
    ([[["0", 1]]], "a point is two numbers"),
    ([[[True, 1]]], "a point is two numbers"),
    ([[[0, float("nan")]]], "coordinates must be finite"),
    ([[[float("inf"), 0]]], "coordinates must be finite"),
    ([[[1e7, 0]]], "within"),
    ([[[0, 0]]] * (MAX_STROKES + 1), f"at most {MAX_STROKES}"),
    ([[[0, 0]] * (MAX_POINTS + 1)], f"at most {MAX_POINTS}"),
])
def test_bad_strokes_are_refused_with_a_reason(strokes, message):
    with pytest.raises(InputError, match=message):
        strokes_to_image(strokes, "input")


def test_images_are_checked():
    image = check_image(np.ones((28, 28)).tolist())
    assert image.shape == (28, 28) and image.dtype == np.float32
    for bad, message in [(np.ones((27, 28)).tolist(), "shape"), ([[1, 2], [3]], "28 rows"),
                         (np.full((28, 28), 2.0).tolist(), r"\[0, 1\]"),
                         (np.full((28, 28), np.nan).tolist(), "finite")]:
        with pytest.raises(InputError, match=message):
            check_image(bad)


def test_stroke_files_are_parsed_with_y_flipped():
    strokes = parse_strokes("START\n1.5,-2,0\n3,-4,10\nBREAK\n5,-6,20\nBREAK\n")
    assert len(strokes) == 2
    np.testing.assert_array_equal(strokes[0], [[1.5, 2], [3, 4]])
    np.testing.assert_array_equal(strokes[1], [[5, 6]])
    with pytest.raises(InputError, match="line 2"):
        parse_strokes("START\n1,2\n")


# -- real strokes against the same drawings' PNGs ----------------------------------------

def tolerant_agreement(a, b):
    """Fraction of a's ink within one pixel (8-neighbourhood) of b's ink, and the reverse."""
    near = np.ones((3, 3), dtype=bool)
    a_in_b = (a & binary_dilation(b, near)).sum() / a.sum()
    b_in_a = (b & binary_dilation(a, near)).sum() / b.sum()
    return min(a_in_b, b_in_a)


@pytest.mark.skipif(not (DATA / "strokes_background_small2.zip").exists(),
                    reason=f"Omniglot stroke files not found at {DATA} (../shared/data/omniglot)")
def test_stroke_renderings_match_the_png_through_the_training_loader():
    """A drawing's strokes, rendered by the demo's rule in the frame of its 105×105 image
    (coordinates / 105, no re-centring), against that PNG decoded by the training loader
    (``decode_image``: nearest-neighbour to 28×28). Measure: the fraction of each one's ink
    pixels within one pixel of the other's ink (the smaller of the two fractions). Threshold:
    ≥ 0.9 for every one of 150 drawings, and ink overlap (IoU) ≥ 0.6 on average. Pairing each
    rendering with another character's PNG must fail the same measure."""
    rng = np.random.default_rng(0)
    with StrokeArchive(DATA / "strokes_background_small2.zip") as strokes, \
            zipfile.ZipFile(DATA / "images_background_small2.zip") as images:
        characters = sorted(strokes.characters)
        chosen = [characters[i] for i in rng.choice(len(characters), 50, replace=False)]
        rendered, loaded = [], []
        for character in chosen:
            for name in strokes.characters[character][:3]:
                unit = [s / CANVAS_SIZE for s in strokes.read(name)]
                rendered.append(render_unit_strokes(unit) == 0)
                png = images.read(strokes.image_name(name))
                loaded.append(decode_image(png, name) == 0)
    scores = np.array([tolerant_agreement(a, b) for a, b in zip(rendered, loaded)])
    iou = np.array([(a & b).sum() / (a | b).sum() for a, b in zip(rendered, loaded)])
    assert scores.min() >= 0.9, sorted(scores)[:5]
    assert iou.mean() >= 0.6, iou.mean()
    mismatched = np.array([tolerant_agreement(a, b)
                           for a, b in zip(rendered, loaded[3:] + loaded[:3])])
    assert np.median(mismatched) < 0.7, np.median(mismatched)
