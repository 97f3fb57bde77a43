"""Omniglot loading on the real small sets: counts, preprocessing, augmentation, cache, errors."""

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minireptile.data import ClassSet, ImagePool, augment_rotations, merge_pools
from minireptile.data.cache import ENV_VAR, default_cache_dir, load_cached
from minireptile.data.omniglot import (
    alphabets,
    load_omniglot,
    load_omniglot_source,
    omniglot_splits,
    read_omniglot_source,
    split_by_alphabet,
    split_by_character,
)
from minireptile.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SMALL1 = DATA / "images_background_small1.zip"
SMALL2 = DATA / "images_background_small2.zip"
needs_data = pytest.mark.skipif(
    not SMALL1.is_file() or not SMALL2.is_file(),
    reason=f"real Omniglot small sets not found at {DATA} (../shared/data/omniglot)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def small1(cache):
    return load_omniglot_source(SMALL1, cache_dir=cache, progress=False)


@pytest.fixture(scope="module")
def small2(cache):
    return load_omniglot_source(SMALL2, cache_dir=cache, progress=False)


@pytest.fixture(scope="module")
def union(cache, small1, small2):
    return load_omniglot([SMALL1, SMALL2], cache_dir=cache, progress=False)


def one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


@needs_data
def test_counts_of_each_small_set(small1, small2):
    for pool, n_alpha, n_chars in [(small1, 5, 136), (small2, 5, 156)]:
        assert pool.num_classes == n_chars
        assert len(pool.images) == 20 * n_chars
        assert np.all(np.diff(pool.starts) == 20)
        assert len(alphabets(ClassSet(pool))) == n_alpha
    assert alphabets(ClassSet(small1)) == ["Balinese", "Early_Aramaic", "Greek", "Korean",
                                           "Latin"]


@needs_data
def test_union_deduplicates_shared_alphabets(small1, small2, union):
    assert len(union) == 242 and len(union.pool.images) == 4840
    assert len(alphabets(union)) == 8
    names = union.pool.names.tolist()
    assert names == sorted(names)
    c1 = small1.names.tolist().index("Greek/character05")
    c2 = small2.names.tolist().index("Greek/character05")
    cu = names.index("Greek/character05")
    np.testing.assert_array_equal(union.pool.class_images(cu), small1.class_images(c1))
    np.testing.assert_array_equal(union.pool.class_images(cu), small2.class_images(c2))


def test_merge_rejects_same_class_with_different_images():
    def pool(value):
        return ImagePool.from_classes(["Greek/character01"], [np.full((2, 4, 4), value,
                                      np.uint8)], [["a.png", "b.png"]], 1.0, (4, 4))
    assert merge_pools([pool(1), pool(1)]).num_classes == 1
    with pytest.raises(InputError, match="'Greek/character01' is in both a.zip and b.zip"):
        merge_pools([pool(1), pool(0)], ["a.zip", "b.zip"])


@needs_data
def test_images_match_the_reference_preprocessing(small1):
    classes = augment_rotations(ClassSet(small1))
    assert len(classes) == 4 * 136
    with zipfile.ZipFile(SMALL1) as archive:
        for c in (0, 77, 135):
            name = str(small1.names[c])
            for j in (0, 19):
                member = f"images_background_small1/{name}/{small1.class_files(c)[j]}"
                raw = Image.open(io.BytesIO(archive.read(member)))
                for k in range(4):
                    # the reference: Image.open(f).resize((28, 28)).rotate(rotation)
                    expected = np.array(raw.resize((28, 28)).rotate(90 * k)).astype("float32")
                    got = classes.images(4 * c + k, [j])[0]
                    assert got.dtype == np.float32 and got.shape == (28, 28)
                    np.testing.assert_array_equal(got, expected)


@needs_data
def test_pixel_values_and_polarity(small1):
    images = ClassSet(small1).images(3, np.arange(20))
    assert set(np.unique(images).tolist()) == {0.0, 1.0}
    assert images.mean() > 0.8  # white background is 1, strokes 0, as the reference


@needs_data
def test_rotations_really_rotate(small1):
    classes = augment_rotations(ClassSet(small1))
    plain = classes.images(0, np.arange(20))
    for k in (1, 2, 3):
        rotated = classes.images(k, np.arange(20))
        assert not np.array_equal(rotated, plain)
        np.testing.assert_array_equal(rotated, np.rot90(plain, k, axes=(1, 2)))
    assert classes.class_name(2).endswith("rotated 180°")


@needs_data
def test_cache_hit_is_identical_and_decodes_nothing(tmp_path, small1, monkeypatch):
    import minireptile.data.omniglot as omniglot

    first = load_omniglot_source(SMALL1, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("omniglot-images_background_small1-*.npz"))
    assert len(files) == 1
    # A hit reads the stored arrays: not one image is decoded.
    monkeypatch.setattr(omniglot, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    second = load_omniglot_source(SMALL1, cache_dir=tmp_path, progress=False)
    for a, b, c in zip(first.to_arrays().values(), second.to_arrays().values(),
                       small1.to_arrays().values()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_cache_location_env_var_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert default_cache_dir() == str(tmp_path / "env")
    assert default_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
    monkeypatch.delenv(ENV_VAR)
    assert default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "minireptile")


def test_cache_rebuilds_a_damaged_file_and_follows_content(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"one")
    calls = []

    def build():
        calls.append(1)
        return ImagePool.from_classes(["A/character01"], [np.ones((1, 2, 2), np.uint8)],
                                      [["x.png"]], 1.0, (2, 2))

    cache = tmp_path / "cache"
    load_cached("test", str(source), {}, build, cache_dir=cache)
    load_cached("test", str(source), {}, build, cache_dir=cache)
    assert len(calls) == 1
    (target,) = cache.glob("test-src.bin-*.npz")
    target.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable image cache"):
        load_cached("test", str(source), {}, build, cache_dir=cache)
    assert len(calls) == 2
    source.write_bytes(b"two")  # new content, new key
    load_cached("test", str(source), {}, build, cache_dir=cache)
    assert len(calls) == 3
    load_cached("test", str(source), {}, build, use_cache=False, cache_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def write_drawing(path, seed):
    """A random 1-bit 28×28 drawing at ``path``; returns it decoded (0 ink, 1 background).

    The seed fixes the drawing, so two seeds give drawings with different pixels."""
    ink = np.random.default_rng(seed).random((28, 28)) > 0.7
    Image.fromarray(~ink).convert("1").save(path)
    return (~ink).astype(np.uint8)


def assert_same_pool(a, b):
    """Two image pools hold the same classes, file names and pixels."""
    arrays_a, arrays_b = a.to_arrays(), b.to_arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


@pytest.mark.parametrize("change", ["added", "replaced", "removed", "character removed"])
def test_a_changed_folder_source_is_decoded_again(tmp_path, monkeypatch, change):
    import minireptile.data.omniglot as omniglot

    root = tmp_path / "data"
    drawings = {}
    for c in (1, 2):
        folder = root / "Greek" / f"character{c:02d}"
        folder.mkdir(parents=True)
        for d in (1, 2):
            drawings[f"character{c:02d}/{d}"] = write_drawing(folder / f"{c}_{d}.png", 10 * c + d)
    cache = tmp_path / "cache"

    def load():
        return load_omniglot_source(root, cache_dir=cache, progress=False)

    first = load()
    assert len(list(cache.glob("*.npz"))) == 1
    # Unchanged, the folder is answered from the cache: nothing is decoded again.
    with monkeypatch.context() as patch:
        patch.setattr(omniglot, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
        assert_same_pool(load(), first)

    character = root / "Greek" / "character01"
    if change == "added":
        new = write_drawing(character / "1_3.png", 99)
    elif change == "replaced":
        new = write_drawing(character / "1_2.png", 99)
        assert not np.array_equal(new, drawings["character01/2"])
    elif change == "removed":
        (character / "1_2.png").unlink()
    else:
        shutil.rmtree(root / "Greek" / "character02")
    second = load()

    # What the cache answers is what decoding the folder now gives...
    assert_same_pool(second, read_omniglot_source(root, progress=False))
    # ...and that is the change: one class's images, file names and pixels.
    expected = {
        "added": (["Greek/character01", "Greek/character02"], [3, 2]),
        "replaced": (["Greek/character01", "Greek/character02"], [2, 2]),
        "removed": (["Greek/character01", "Greek/character02"], [1, 2]),
        "character removed": (["Greek/character01"], [2]),
    }[change]
    assert second.names.tolist() == expected[0]
    assert np.diff(second.starts).tolist() == expected[1]
    files = second.class_files(0).tolist()
    images = second.class_images(0)
    if change == "added":
        assert files == ["1_1.png", "1_2.png", "1_3.png"]
        np.testing.assert_array_equal(images[2], new)
    elif change == "replaced":
        np.testing.assert_array_equal(images[1], new)
    elif change == "removed":
        assert files == ["1_1.png"]
    np.testing.assert_array_equal(images[0], drawings["character01/1"])
    # The entry of the old content can never be hit again: it is gone.
    assert len(list(cache.glob("*.npz"))) == 1


def test_a_replacement_keeping_size_and_modification_time_is_decoded_again(tmp_path):
    char = tmp_path / "data" / "Greek" / "character01"
    char.mkdir(parents=True)
    path = char / "1_1.png"

    def write(seed):
        # compress_level=0 stores the pixels: every drawing gives a file of the same size.
        ink = np.random.default_rng(seed).random((28, 28)) > 0.7
        Image.fromarray(~ink).convert("1").save(path, compress_level=0)
        return (~ink).astype(np.uint8)

    write(1)
    before = os.stat(path)
    load_omniglot_source(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    new = write(2)
    assert os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p leaves it
    pool = load_omniglot_source(tmp_path / "data", cache_dir=tmp_path / "cache",
                                progress=False)
    np.testing.assert_array_equal(pool.class_images(0)[0], new)


@needs_data
def test_zip_and_extracted_folder_give_identical_arrays(tmp_path, small1):
    with zipfile.ZipFile(SMALL1) as archive:
        archive.extractall(tmp_path)
    folder = read_omniglot_source(tmp_path / "images_background_small1", progress=False)
    for key, value in small1.to_arrays().items():
        np.testing.assert_array_equal(folder.to_arrays()[key], value, err_msg=key)


def test_folder_holding_the_one_top_folder_is_accepted(tmp_path):
    char = tmp_path / "images_background" / "Greek" / "character02"
    char.mkdir(parents=True)
    Image.fromarray(np.ones((105, 105), bool)).save(char / "0395_01.png")
    for root in (tmp_path, tmp_path / "images_background"):
        pool = read_omniglot_source(root, progress=False)
        assert pool.names.tolist() == ["Greek/character02"]
        assert pool.files.tolist() == ["0395_01.png"]


@needs_data
def test_splits_by_character_and_alphabet(union):
    train, test = split_by_character(union, np.random.default_rng(0), num_train=200)
    assert len(train) == 200 and len(test) == 42
    assert set(train.base.tolist()).isdisjoint(test.base.tolist())
    again, _ = split_by_character(union, np.random.default_rng(0), num_train=200)
    np.testing.assert_array_equal(train.base, again.base)
    with pytest.raises(InputError, match="cannot keep 1200 training classes out of 242"):
        split_by_character(union, np.random.default_rng(0))
    train, test = split_by_alphabet(union, ["Greek", "Latin"])
    assert alphabets(train) == ["Greek", "Latin"] and len(train) == 24 + 26
    assert len(test) == 242 - 50 and "Greek" not in alphabets(test)
    with pytest.raises(InputError, match=r"unknown alphabet\(s\) \['Klingon'\]"):
        split_by_alphabet(union, ["Klingon"])


@needs_data
def test_omniglot_splits_augments_training_only(cache):
    train, test = omniglot_splits([SMALL1, SMALL2], np.random.default_rng(1), num_train=100,
                                  cache_dir=cache, progress=False)
    assert len(train) == 400 and len(test) == 142
    assert set(train.turns.tolist()) == {0, 1, 2, 3} and set(test.turns.tolist()) == {0}


# --- bad input ---------------------------------------------------------------------------

def test_missing_source(tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        load_omniglot([tmp_path / "nowhere"], cache_dir=tmp_path)
    assert "minireptile data omniglot" in one_line(err)


def test_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(InputError, match="is empty") as err:
        load_omniglot(tmp_path / "data", cache_dir=tmp_path / "c")
    one_line(err)


def test_folder_without_the_layout(tmp_path):
    (tmp_path / "data" / "Greek").mkdir(parents=True)
    (tmp_path / "data" / "Greek" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"holds no Omniglot images .*characterNN") as err:
        load_omniglot(tmp_path / "data", cache_dir=tmp_path / "c")
    one_line(err)


def test_corrupt_png(tmp_path):
    char = tmp_path / "data" / "Greek" / "character01"
    char.mkdir(parents=True)
    Image.fromarray(np.ones((105, 105), bool)).save(char / "0001_01.png")
    (char / "0001_02.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"0001_02.png' is not a readable PNG") as err:
        load_omniglot(tmp_path / "data", cache_dir=tmp_path / "c", progress=False)
    one_line(err)


def test_zip_of_wrong_content(tmp_path):
    bad = tmp_path / "strokes.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("strokes_background/Greek/character01/0394_01.txt", "1,2,3")
    with pytest.raises(InputError, match="holds no Omniglot images") as err:
        load_omniglot(bad, cache_dir=tmp_path / "c")
    one_line(err)
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(InputError, match="is not a readable zip file"):
        load_omniglot(not_zip, cache_dir=tmp_path / "c")


def test_non_1bit_png_is_thresholded(tmp_path):
    char = tmp_path / "data" / "Greek" / "character01"
    char.mkdir(parents=True)
    gray = np.full((105, 105), 200, np.uint8)
    gray[40:60, 40:60] = 30
    Image.fromarray(gray).save(char / "0001_01.png")
    pool = read_omniglot_source(tmp_path / "data", progress=False)
    assert pool.images.shape == (1, 28, 28)
    assert set(np.unique(pool.images).tolist()) == {0, 1}


# --- command line ------------------------------------------------------------------------

@needs_data
def test_data_info_command(tmp_path, cache, union, capsys):
    from minireptile.cli import main

    argv = ["data", "info", "--data", str(SMALL1), "--data", str(SMALL2), "--num-train", "200",
            "--cache-dir", str(cache), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8 alphabets, 242 characters, 4840 images of (28, 28)" in out
    assert "800 training classes" in out and "42 test characters" in out
    assert main(argv[:6] + ["--cache-dir", str(cache)]) == 2  # 1200 of 242
    err = capsys.readouterr().err.strip()
    assert err.startswith("minireptile: error: cannot keep 1200") and "\n" not in err
    assert main(["data", "info", "--data", str(tmp_path / "nope")]) == 2
