"""Mini-ImageNet: loader on synthetic JPEGs (layout, preprocessing, cache, errors) and the
train/eval commands end to end."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from minireptile import cli
from minireptile.data import miniimagenet
from minireptile.data.miniimagenet import (
    load_miniimagenet,
    load_miniimagenet_split,
    read_miniimagenet_split,
)
from minireptile.errors import InputError
from minireptile.testing import make_miniimagenet_fixture


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    return make_miniimagenet_fixture(root / "data", {"train": 4, "val": 2, "test": 3}, 5,
                                     np.random.default_rng(0))


def one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500
    return msg


def test_loader_counts_shapes_dtype_and_range(fixture_root, tmp_path):
    splits = load_miniimagenet(fixture_root, cache_dir=tmp_path, progress=False)
    assert list(splits) == ["train", "val", "test"]
    for name, count in (("train", 4), ("val", 2), ("test", 3)):
        pool = splits[name].pool
        assert len(splits[name]) == count
        assert pool.images.shape == (count * 5, 84, 84, 3) and pool.images.dtype == np.uint8
        assert pool.scale == pytest.approx(1 / 255)
        assert list(pool.names) == sorted(pool.names) and all(n.startswith("n")
                                                              for n in pool.names)
        assert np.all(np.diff(pool.starts) == 5)
        x = splits[name].images(0, [0, 1, 2])
        assert x.shape == (3, 84, 84, 3) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    # Classes of a split are told apart by colour: the class means differ.
    train = splits["train"]
    means = np.array([train.images(c, range(5)).mean(axis=(0, 1, 2)) for c in range(4)])
    assert np.min(np.ptp(means, axis=0).max()) > 0.1


def test_cache_hit_is_identical_and_skips_decoding(fixture_root, tmp_path, monkeypatch):
    first = load_miniimagenet(fixture_root, cache_dir=tmp_path, progress=False)
    cached = sorted(os.listdir(tmp_path))
    assert len(cached) == 3 and all(f.startswith("miniimagenet-") for f in cached)

    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache holds the split")

    monkeypatch.setattr(miniimagenet, "decode_image", fail)
    second = load_miniimagenet(fixture_root, cache_dir=tmp_path, progress=False)
    for name in first:
        a, b = first[name].pool, second[name].pool
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.names, b.names)
        np.testing.assert_array_equal(a.files, b.files)
        np.testing.assert_array_equal(a.starts, b.starts)
        assert a.scale == b.scale


def test_pixels_are_the_references_resize_then_rgb(tmp_path):
    root = make_miniimagenet_fixture(tmp_path / "big", {"train": 1}, 2,
                                     np.random.default_rng(1), size=100)
    folder = os.path.join(root, "train")
    pool = read_miniimagenet_split(folder, progress=False)
    wnid = pool.names[0]
    for j, name in enumerate(pool.class_files(0)):
        with Image.open(os.path.join(folder, wnid, name)) as img:
            # The reference's Image.open(f).resize((84, 84)).convert('RGB') with the
            # nearest-neighbour default of the Pillow it ran on.
            expected = np.asarray(img.resize((84, 84), Image.Resampling.NEAREST).convert("RGB"))
        np.testing.assert_array_equal(pool.class_images(0)[j], expected)
    smooth = read_miniimagenet_split(folder, resample="bicubic", progress=False)
    assert smooth.images.shape == pool.images.shape
    for j, name in enumerate(smooth.class_files(0)):
        with Image.open(os.path.join(folder, wnid, name)) as img:
            # Pillow's bicubic resize, then RGB: today's default of Image.resize.
            expected = np.asarray(img.resize((84, 84), Image.Resampling.BICUBIC).convert("RGB"))
        np.testing.assert_array_equal(smooth.class_images(0)[j], expected)
    assert not np.array_equal(smooth.images, pool.images)  # (the two filters do differ here)
    with pytest.raises(InputError, match="unknown resize filter 'cubic'"):
        read_miniimagenet_split(folder, resample="cubic", progress=False)
    # The filter is part of the cache key: each gets its own file.
    load_miniimagenet_split(folder, cache_dir=tmp_path / "c", progress=False)
    load_miniimagenet_split(folder, resample="bicubic", cache_dir=tmp_path / "c",
                            progress=False)
    assert len(os.listdir(tmp_path / "c")) == 2


def test_greyscale_and_cmyk_jpegs_load_as_rgb_other_entries_ignored(tmp_path):
    folder = tmp_path / "train" / "n00000001"
    folder.mkdir(parents=True)
    grey = np.random.default_rng(2).integers(0, 256, (84, 84), dtype=np.uint8)
    Image.fromarray(grey, "L").save(folder / "a.JPEG")
    Image.new("CMYK", (84, 84), (0, 255, 255, 0)).save(folder / "b.JPEG")
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(grey, "L").save(folder / "c.jpg")  # the reference reads only *.JPEG
    (tmp_path / "train" / "README").mkdir()  # not a WordNet ID folder: ignored
    pool = read_miniimagenet_split(tmp_path / "train", progress=False)
    assert list(pool.names) == ["n00000001"] and list(pool.files) == ["a.JPEG", "b.JPEG"]
    a, b = pool.images
    assert a.shape == (84, 84, 3)
    np.testing.assert_array_equal(a[..., 0], a[..., 1])
    np.testing.assert_array_equal(a[..., 0], a[..., 2])
    assert b[..., 0].mean() > 200 and b[..., 1].mean() < 50  # CMYK (0, 255, 255, 0) is red


def test_layout_errors_name_the_problem(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    with pytest.raises(InputError) as err:
        read_miniimagenet_split(split, progress=False)
    assert "holds no class folders" in one_line(err) and str(split) in str(err.value)

    empty = split / "n01532829"
    empty.mkdir()
    with pytest.raises(InputError) as err:
        read_miniimagenet_split(split, progress=False)
    assert str(empty) in one_line(err) and "no *.JPEG images" in str(err.value)

    (empty / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError) as err:
        read_miniimagenet_split(split, progress=False)
    assert str(empty / "broken.JPEG") in one_line(err) and "not a readable image" in str(err.value)

    with pytest.raises(InputError, match="does not exist"):
        load_miniimagenet(tmp_path / "nowhere", progress=False)


def test_missing_split_is_one_error_and_exit_status_2(tmp_path, capsys):
    root = make_miniimagenet_fixture(tmp_path / "data", {"train": 2, "test": 2}, 2,
                                     np.random.default_rng(3))
    with pytest.raises(InputError) as err:
        load_miniimagenet(root, use_cache=False, progress=False)
    msg = one_line(err)
    assert "no val split" in msg and repr(os.path.join(root, "val")) in msg
    assert "{train,val,test}/<wnid>/*.JPEG" in msg

    status = cli.main(["train", "miniimagenet", "--data", root, "--no-cache", "--no-progress",
                       "--checkpoint", str(tmp_path / "run"), "--meta-iters", "1"])
    assert status == 2
    stderr = capsys.readouterr().err.strip()
    assert "\n" not in stderr and stderr.startswith("minireptile: error:")
    assert os.path.join(root, "val") in stderr


def test_fixture_rejects_a_bad_rng(tmp_path):
    with pytest.raises(InputError, match="numpy.random.Generator"):
        make_miniimagenet_fixture(tmp_path, 1, 1, rng=0)


def test_train_then_eval_end_to_end(tmp_path, capsys):
    data = make_miniimagenet_fixture(tmp_path / "data", 6, 5, np.random.default_rng(4))
    run = str(tmp_path / "run")
    common = ["--data", data, "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    status = cli.main(["train", "miniimagenet", *common, "--checkpoint", run,
                       "--meta-iters", "3", "--inner-iters", "1", "--eval-iters", "1",
                       "--eval-samples", "2", "--classes", "3", "--shots", "1",
                       "--train-shots", "2", "--inner-batch", "3", "--eval-batch", "3",
                       "--checkpoint-interval", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "6 train classes, 6 val classes, 6 test classes" in out
    assert "mini-imagenet cnn 84x84 (3 classes)" in out
    lines = [line for line in out.splitlines() if " accuracy: " in line]
    assert [line.split(" accuracy")[0] for line in lines] == ["Train", "Validation", "Test"]
    assert all("(95% interval, 2 tasks)" in line for line in lines)
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        record = json.loads(f.readline())
    assert record["iteration"] == 0 and {"train_accuracy", "test_accuracy"} <= set(record)

    status = cli.main(["eval", "miniimagenet", *common, "--checkpoint", run,
                       "--eval-samples", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "3-way 1-shot, 1 fine-tuning steps of 3" in out
    evaluated = [line for line in out.splitlines() if " accuracy: " in line]
    assert evaluated == lines  # same checkpoint, same evaluation seed: same tasks
    status = cli.main(["eval", "miniimagenet", *common, "--checkpoint", run,
                       "--eval-samples", "2", "--split", "val"])
    out = capsys.readouterr().out
    assert status == 0
    assert [line.split(":")[0] for line in out.splitlines() if " accuracy: " in line] == [
        "Validation accuracy"]
