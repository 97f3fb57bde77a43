"""Lake's one-shot runs: the fixture writer and the loader agree, from a folder or a zip."""

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minireptile.data.lake_runs import load_lake_runs
from minireptile.data.omniglot import load_omniglot_source
from minireptile.errors import InputError
from minireptile.testing import make_lake_fixture

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SMALL1 = DATA / "images_background_small1.zip"


def synthetic_characters(n_chars, n_drawings, rng):
    """105×105 drawings: white background, a black block whose place encodes the character."""
    chars = []
    for c in range(n_chars):
        drawings = []
        for d in range(n_drawings):
            img = np.ones((105, 105), np.uint8)
            y, x = 4 * (c // 5) + 2, 4 * (c % 5) * 5 + 2
            img[y * 4:y * 4 + 12, x:x + 12] = 0
            img[rng.integers(0, 105, 30), rng.integers(0, 105, 30)] = 0  # per-drawing noise
            drawings.append(img)
        chars.append(drawings)
    return chars


def preprocess(img):
    """The reference's preprocessing of a 1-bit 105×105 drawing."""
    return np.array(Image.fromarray(img != 0).resize((28, 28))).astype(np.float32)


def check_runs(runs, chosen, chars):
    for run, classes in zip(runs, chosen):
        assert run.train_images.shape == (20, 28, 28) and run.test_images.shape == (20, 28, 28)
        assert run.train_images.dtype == np.float32
        np.testing.assert_array_equal(run.train_labels, np.arange(20))
        assert sorted(run.test_labels.tolist()) == list(range(20))  # each class tested once
        for k in range(20):
            candidates = [preprocess(d) for d in chars[classes[k]]]
            assert any(np.array_equal(run.train_images[k], c) for c in candidates)
        for img, label in zip(run.test_images, run.test_labels):
            candidates = [preprocess(d) for d in chars[classes[label]]]
            assert any(np.array_equal(img, c) for c in candidates)


def test_fixture_layout_and_labels_file(tmp_path):
    chars = synthetic_characters(25, 3, np.random.default_rng(0))
    make_lake_fixture(tmp_path, chars, 2, np.random.default_rng(1))
    run = tmp_path / "run02"
    assert sorted(p.name for p in (run / "training").iterdir()) == [
        f"class{i:02d}.png" for i in range(1, 21)]
    assert sorted(p.name for p in (run / "test").iterdir()) == [
        f"item{i:02d}.png" for i in range(1, 21)]
    lines = (run / "class_labels.txt").read_text().splitlines()
    assert len(lines) == 20 and lines[0].startswith("run02/test/item01.png run02/training/class")
    img = Image.open(run / "test" / "item07.png")
    assert img.mode == "1" and img.size == (105, 105)


def test_loader_reads_folder_and_zip_alike(tmp_path):
    chars = synthetic_characters(25, 3, np.random.default_rng(0))
    chosen = make_lake_fixture(tmp_path / "all_runs", chars, 3, np.random.default_rng(2))
    runs = load_lake_runs(tmp_path / "all_runs")
    assert [r.name for r in runs] == ["run01", "run02", "run03"]
    check_runs(runs, chosen, chars)
    archive = shutil.make_archive(str(tmp_path / "all_runs"), "zip", tmp_path, "all_runs")
    for a, b in zip(runs, load_lake_runs(archive)):
        for field in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.skipif(not SMALL1.is_file(),
                    reason=f"real Omniglot small set not found at {SMALL1} "
                           "(../shared/data/omniglot)")
def test_fixture_from_real_omniglot_drawings(tmp_path):
    pool = load_omniglot_source(SMALL1, cache_dir=tmp_path / "cache", progress=False)
    chars = []
    with zipfile.ZipFile(SMALL1) as archive:
        for c in range(24):
            chars.append([np.array(Image.open(io.BytesIO(archive.read(
                f"images_background_small1/{pool.names[c]}/{f}")))).astype(np.uint8)
                for f in pool.class_files(c)[:4]])
    chosen = make_lake_fixture(tmp_path / "runs", chars, 2, np.random.default_rng(3))
    runs = load_lake_runs(tmp_path / "runs")
    check_runs(runs, chosen, chars)
    # the loader's preprocessing is Omniglot's: images appear in the decoded pool
    run = runs[0]
    pool_imgs = pool.class_images(int(chosen[0][0])).astype(np.float32)
    assert any(np.array_equal(run.train_images[0], p) for p in pool_imgs)


def test_bad_runs_are_reported(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        load_lake_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no runNN/class_labels.txt"):
        load_lake_runs(tmp_path / "empty")
    chars = synthetic_characters(20, 2, np.random.default_rng(0))
    make_lake_fixture(tmp_path / "runs", chars, 1, np.random.default_rng(0))
    (tmp_path / "runs" / "run01" / "class_labels.txt").write_text("run01/test/item01.png\n")
    with pytest.raises(InputError, match=r"line 1 reads 'run01/test/item01.png'; expected"):
        load_lake_runs(tmp_path / "runs")
    with pytest.raises(InputError, match="needs at least 20"):
        make_lake_fixture(tmp_path / "x", chars[:5], 1, np.random.default_rng(0))
