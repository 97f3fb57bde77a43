"""``render="area"``: grey 28×28 Omniglot images averaged over each pixel's block, from the
decoder through the cache, the command line and Lake's runs."""

import io

import numpy as np
import pytest
from conftest import write_synthetic_omniglot
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from minireptile.cli import main
from minireptile.data import ClassSet
from minireptile.data.lake_runs import load_lake_runs
from minireptile.data.omniglot import (
    decode_image,
    load_omniglot_source,
    read_omniglot_source,
)
from minireptile.errors import InputError
from minireptile.npzfile import load_npz, save_npz_atomic
from minireptile.testing import make_lake_fixture


def png(drawing):
    """A 1-bit PNG of ``drawing`` (True: white background), as the release stores them."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(drawing, bool)).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def area_reference(drawing, size):
    """The slow, obvious box filter: each input pixel belongs to the output pixel whose
    footprint holds its centre, and an output pixel is the mean of its own, in 0…255."""
    n = drawing.shape[0]
    owner = np.ceil((np.arange(n) + 0.5) * size / n).astype(int) - 1
    out = np.zeros((size, size))
    for r in range(size):
        for c in range(size):
            block = drawing[np.ix_(owner == r, owner == c)]
            out[r, c] = 255.0 * block.mean()
    return out


drawings = st.builds(
    lambda side, density, seed: np.random.default_rng(seed).random((side, side)) > density,
    st.sampled_from([105, 28, 56, 84, 112]), st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None)
@given(drawing=drawings)
def test_area_rendering_is_the_mean_of_each_block(drawing):
    got = decode_image(png(drawing), "drawing.png", 28, render="area")
    assert got.dtype == np.uint8 and got.shape == (28, 28)
    # Pillow works in fixed point and rounds: one grey level at most.
    np.testing.assert_allclose(got, area_reference(drawing, 28), atol=1.0)


def test_area_rendering_keeps_a_stroke_that_nearest_neighbour_drops():
    drawing = np.ones((105, 105), bool)
    drawing[:, 0] = False  # a one-pixel line down the left edge, which nearest never reads
    nearest = decode_image(png(drawing), "line.png", 28, render="nearest")
    area = decode_image(png(drawing), "line.png", 28, render="area")
    assert set(np.unique(nearest).tolist()) == {1}
    # Column 0 of the output covers input columns 0-3 (centres 0.5 … 3.5 of 3.75): 3 of 4 white.
    np.testing.assert_array_equal(area[:, 0], 191)
    np.testing.assert_array_equal(area[:, 1:], 255)


@pytest.mark.parametrize("white, expected", [(True, 255), (False, 0)])
def test_plain_pages_give_the_extremes(white, expected):
    got = decode_image(png(np.full((105, 105), white)), "page.png", render="area")
    np.testing.assert_array_equal(got, expected)


def test_nearest_is_the_default_and_unchanged():
    drawing = np.random.default_rng(0).random((105, 105)) > 0.3
    data = png(drawing)
    reference = np.array(Image.open(io.BytesIO(data)).resize((28, 28)), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(data, "d.png"), reference)
    np.testing.assert_array_equal(decode_image(data, "d.png", render="nearest"), reference)


@pytest.mark.parametrize("render", ["bilinear", "", None, "AREA"])
def test_an_unknown_rendering_is_refused_naming_the_choices(render, tmp_path):
    with pytest.raises(InputError, match=r"render=.*expected one of nearest, area"):
        decode_image(png(np.ones((105, 105), bool)), "d.png", render=render)
    with pytest.raises(InputError, match="expected one of nearest, area"):
        read_omniglot_source(tmp_path, render=render)


# -- pools and the cache ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_drawings(tmp_path_factory):
    """Two alphabets of four characters, three 105×105 drawings each."""
    root = tmp_path_factory.mktemp("render") / "data"
    rng = np.random.default_rng(3)
    for a in range(2):
        for c in range(4):
            folder = root / f"Alphabet{a}" / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(3):
                (folder / f"{c:04d}_{d:02d}.png").write_bytes(png(rng.random((105, 105)) > 0.2))
    return root


def test_a_grey_pool_gives_values_in_the_unit_interval_with_white_one(big_drawings):
    nearest = read_omniglot_source(big_drawings, progress=False)
    area = read_omniglot_source(big_drawings, progress=False, render="area")
    assert nearest.scale == 1.0 and area.scale == pytest.approx(1 / 255)
    assert area.images.dtype == np.uint8 and len(np.unique(area.images)) > 2
    images = ClassSet(area).images(0, np.arange(3))
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.mean() > 0.7
    # Grey levels of bytes, not a threshold of them.
    np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-3)
    assert len(np.unique(images)) > 2


def test_each_rendering_has_its_own_cache_entry(big_drawings, tmp_path, monkeypatch):
    import minireptile.data.omniglot as omniglot

    nearest = load_omniglot_source(big_drawings, cache_dir=tmp_path, progress=False)
    area = load_omniglot_source(big_drawings, cache_dir=tmp_path, progress=False,
                                render="area")
    assert len(list(tmp_path.glob("omniglot-*.npz"))) == 2
    assert area.scale != nearest.scale
    assert not np.array_equal(area.images, nearest.images)
    monkeypatch.setattr(omniglot, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    for render, first in (("nearest", nearest), ("area", area)):
        again = load_omniglot_source(big_drawings, cache_dir=tmp_path, progress=False,
                                     render=render)
        np.testing.assert_array_equal(again.images, first.images)
        assert again.scale == first.scale


def test_the_nearest_cache_entry_keeps_its_earlier_key(big_drawings, tmp_path):
    from minireptile.data.cache import load_cached

    load_omniglot_source(big_drawings, cache_dir=tmp_path, progress=False)
    # What a cache written before renderings were a choice is found under.
    load_cached("omniglot", str(big_drawings), {"size": 28},
                lambda: pytest.fail("the nearest-neighbour entry moved"), cache_dir=tmp_path)


# -- the command line ------------------------------------------------------------------------

def _train_args(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
            "--classes", "3", "--shots", "1", "--train-shots", "2", "--inner-batch", "3",
            "--inner-iters", "1", "--meta-iters", "2", "--eval-iters", "1",
            "--eval-batch", "3", "--eval-interval", "1", "--eval-samples", "3",
            "--checkpoint", str(checkpoint), "--no-progress", "--workers", "1", *extra]


def _eval_args(run, *extra):
    return ["eval", "omniglot", "--checkpoint", str(run), "--eval-samples", "3",
            "--split", "test", "--no-progress", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def area_run(big_drawings, tmp_path_factory):
    run = tmp_path_factory.mktemp("area") / "run"
    assert main(_train_args(big_drawings, run, "--render", "area")) == 0
    return run


def test_a_run_records_its_rendering_and_evaluation_uses_it(area_run, capsys):
    _, meta = load_npz(area_run / "checkpoint.npz")
    assert meta["extra"]["data"]["render"] == "area"
    assert main(_eval_args(area_run)) == 0
    assert "data: the run's images; the run's split" in capsys.readouterr().out
    assert main(_eval_args(area_run, "--render", "area")) == 0


def test_evaluating_on_another_rendering_is_refused(area_run, capsys):
    assert main(_eval_args(area_run, "--render", "nearest")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--render 'nearest'" in err and "rendered 'area'" in err


def test_a_run_recorded_before_the_setting_reads_as_nearest(big_drawings, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(big_drawings, run)) == 0
    arrays, meta = load_npz(run / "checkpoint.npz")
    assert meta["extra"]["data"].pop("render") == "nearest"
    save_npz_atomic(run / "checkpoint.npz", arrays, meta)
    capsys.readouterr()
    assert main(_eval_args(run)) == 0
    assert "data: the run's images" in capsys.readouterr().out
    assert main(_eval_args(run, "--render", "area")) == 2
    assert "rendered 'nearest'" in capsys.readouterr().err


def test_resuming_with_another_rendering_is_refused(big_drawings, area_run, tmp_path, capsys):
    code = main(_train_args(big_drawings, area_run, "--resume", "--meta-iters", "3"))
    err = capsys.readouterr().err
    assert code == 2 and "render 'nearest' (checkpoint: 'area')" in err


def test_a_bad_rendering_on_the_command_line_exits_2(big_drawings, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(_train_args(big_drawings, tmp_path / "run", "--render", "bilinear"))
    assert exit_.value.code == 2
    assert "--render: invalid choice: 'bilinear'" in capsys.readouterr().err


def test_an_ensemble_member_of_another_rendering_is_refused(big_drawings, area_run, tmp_path,
                                                            capsys):
    nearest = tmp_path / "nearest"
    assert main(_train_args(big_drawings, nearest)) == 0
    capsys.readouterr()
    assert main(_eval_args(area_run, "--ensemble", str(nearest))) == 2
    err = capsys.readouterr().err
    assert "ensemble member" in err and "rendered 'nearest'" in err


def test_a_sweep_hands_the_rendering_to_its_runs(big_drawings, tmp_path):
    out = tmp_path / "sweep"
    argv = _train_args(big_drawings, tmp_path / "unused", "--render", "area")
    argv[0] = "sweep"
    checkpoint = argv.index("--checkpoint")
    del argv[checkpoint:checkpoint + 2]
    assert main(argv + ["--grid", "learning-rate=0.001,0.002", "--out", str(out),
                        "--no-plot"]) == 0
    records = [load_npz(path)[1]["extra"]["data"] for path in out.glob("*/checkpoint.npz")]
    assert len(records) == 2 and {r["render"] for r in records} == {"area"}


# -- Lake's runs -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lake_runs(tmp_path_factory):
    rng = np.random.default_rng(4)
    drawings = [[rng.random((105, 105)) > 0.2 for _ in range(2)] for _ in range(20)]
    root = tmp_path_factory.mktemp("lake") / "all_runs"
    make_lake_fixture(root, drawings, 20, rng)
    return root


def test_lake_runs_render_as_asked(lake_runs):
    nearest = load_lake_runs(lake_runs)[0]
    area = load_lake_runs(lake_runs, render="area")[0]
    for images in (area.train_images, area.test_images):
        assert images.dtype == np.float32 and 0.0 <= images.min() and images.max() <= 1.0
        assert len(np.unique(images)) > 2
    assert set(np.unique(nearest.train_images).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(area.train_labels, nearest.train_labels)
    with pytest.raises(InputError, match="expected one of nearest, area"):
        load_lake_runs(lake_runs, render="box")


def test_lake_scores_a_run_on_its_own_rendering(lake_runs, tmp_path, capsys):
    data = write_synthetic_omniglot(tmp_path / "data", alphabets=2, characters=20, drawings=2)
    run = tmp_path / "run"
    assert main(["train", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
                 "--classes", "20", "--shots", "1", "--inner-batch", "20", "--inner-iters",
                 "1", "--meta-iters", "1", "--eval-interval", "1", "--eval-iters", "1",
                 "--eval-samples", "0", "--render", "area", "--checkpoint", str(run),
                 "--no-progress", "--workers", "1"]) == 0
    argv = ["eval", "lake", "--runs", str(lake_runs), "--checkpoint", str(run),
            "--eval-iters", "1", "--runs-subset", "1-2", "--workers", "1"]
    assert main(argv) == 0
    assert "overall error" in capsys.readouterr().out
    assert main(argv + ["--render", "nearest"]) == 2
    err = capsys.readouterr().err
    assert "--render 'nearest'" in err and "can only be scored on those" in err

