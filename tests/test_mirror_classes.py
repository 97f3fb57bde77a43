"""Mirror-image classes: every training class flipped left to right is a class of its own,
added to training only, at most once, and remembered by the run."""

import numpy as np
import pytest
from conftest import tiny_train_args
from hypothesis import given, settings
from hypothesis import strategies as st

from minireptile.cli import main
from minireptile.cli.fewshot_commands import task_splits
from minireptile.data import ClassSet, ImagePool
from minireptile.data.alphabets import AlphabetClassSet, alphabet_of
from minireptile.data.classes import augment_mirrors, augment_rotations
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.npzfile import load_npz
from minireptile.runs.config import TrainConfig
from minireptile.runs.evaluation import classes_fingerprint
from minireptile.runs.training import train


def random_classes(rng, num_classes, drawings=3, side=5):
    """Classes of random (so asymmetric) square images, named by alphabet."""
    images = [rng.integers(0, 256, (drawings, side, side), dtype=np.uint8)
              for _ in range(num_classes)]
    names = [f"Alpha{c % 2}/character{c:02d}" for c in range(num_classes)]
    return ClassSet(ImagePool.from_classes(names, images, scale=1 / 255))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_mirror_images_are_flipped_then_rotated_classes_of_their_own(num_classes, side, seed):
    rng = np.random.default_rng(seed)
    plain = random_classes(rng, num_classes, side=side)
    classes = augment_mirrors(augment_rotations(plain))
    assert len(classes) == 8 * num_classes
    for row in range(len(classes)):
        base, turn, mirrored = row // 8, row % 8 // 2, row % 2 == 1
        original = plain.images(base, [0, 1, 2])
        expected = np.rot90(original[:, :, ::-1] if mirrored else original, turn, (1, 2))
        np.testing.assert_array_equal(classes.images(row, [0, 1, 2]), expected)
        name = str(plain.pool.names[base]) + (" mirrored" if mirrored else "")
        assert classes.class_name(row) == name + (f" rotated {90 * turn}°" if turn else "")
    # One image each of many classes (the path tasks take) agrees with the per-class path.
    rows = rng.integers(0, len(classes), 12)
    which = rng.integers(0, 3, 12)
    expected = np.stack([classes.images(r, [w])[0] for r, w in zip(rows, which)])
    np.testing.assert_array_equal(classes.examples(rows, which), expected)


def test_mirroring_twice_is_refused():
    classes = augment_mirrors(random_classes(np.random.default_rng(0), 3))
    with pytest.raises(InputError, match="3 of the 6 classes are mirror images already"):
        augment_mirrors(classes)
    with pytest.raises(InputError, match="mirrored"):
        ClassSet(classes.pool, base=[0, 1], turns=[0, 0], mirrored=[True])


def test_subsets_and_alphabets_keep_the_mirror_images():
    classes = augment_mirrors(random_classes(np.random.default_rng(1), 6))
    subset = classes.subset([5, 0, 3])
    assert subset.mirrored.tolist() == [True, False, True]
    within = AlphabetClassSet(classes, 6, "training")  # 3 characters per alphabet, doubled
    np.testing.assert_array_equal(within.mirrored, classes.mirrored)
    rng = np.random.default_rng(2)
    for _ in range(20):
        rows = within.sample_rows(6, rng)
        assert len({alphabet_of(within.class_name(r)) for r in rows}) == 1
        assert within.mirrored[rows].sum() == 3


def test_the_fingerprint_tells_mirror_images_apart_and_keeps_plain_ones():
    plain = random_classes(np.random.default_rng(3), 2)
    doubled = augment_mirrors(plain)
    same_rows_unmirrored = ClassSet(plain.pool, doubled.base, doubled.turns)
    assert classes_fingerprint(doubled) != classes_fingerprint(same_rows_unmirrored)
    # A set without mirror images hashes as it did before they existed.
    assert classes_fingerprint(plain) == classes_fingerprint(ClassSet(plain.pool))


def test_only_the_training_split_gains_mirror_images_and_only_once(capsys):
    plain = random_classes(np.random.default_rng(4), 4)
    test = random_classes(np.random.default_rng(5), 4)
    assert TrainConfig().training_classes(plain) is plain
    config = TrainConfig(mirror_classes=True, classes=2)
    doubled = config.training_classes(plain)
    assert len(doubled) == 8 and doubled.mirrored.sum() == 4
    assert config.training_classes(doubled) is doubled
    splits = task_splits({"train": plain, "test": test}, config)
    assert splits["train"].mirrored.sum() == 4 and splits["test"] is test
    assert capsys.readouterr().out == "train: 8 classes with their mirror images\n"


def test_the_library_adds_them_itself_when_asked(tmp_path):
    rng = np.random.default_rng(6)
    plain, test = random_classes(rng, 4, side=16), random_classes(rng, 3, side=16)
    options = {"classes": 3, "shots": 1, "inner_iters": 1, "meta_iters": 3,
               "eval_interval": 3, "checkpoint_interval": 3}
    trained = {}
    for name, classes, mirror in (("plain", plain, False), ("added", plain, True),
                                  ("given", augment_mirrors(plain), True)):
        learner = train(omniglot_cnn(3, image_size=16, filters=4), classes, test,
                        TrainConfig(mirror_classes=mirror, **options), tmp_path / name,
                        progress=False, log=lambda line: None)
        trained[name] = learner.phi
    assert not np.array_equal(trained["plain"], trained["added"])
    np.testing.assert_array_equal(trained["added"], trained["given"])


# -- the command line ------------------------------------------------------------------------

def test_the_run_stores_the_setting_trains_on_it_and_resumes_only_with_it(synthetic_omniglot,
                                                                         tmp_path, capsys):
    runs = {}
    for name, extra in (("plain", ()), ("mirrored", ("--mirror-classes",))):
        assert main(tiny_train_args(synthetic_omniglot, tmp_path / name, *extra)) == 0
        arrays, meta = load_npz(tmp_path / name / "checkpoint.npz")
        assert meta["config"]["mirror_classes"] is (name == "mirrored")
        runs[name] = arrays["phi"]
    # The same seed, other classes drawn: the mirror images reached training.
    assert not np.array_equal(runs["plain"], runs["mirrored"])
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(tmp_path / "mirrored"),
                 "--eval-samples", "3", "--no-progress", "--workers", "1",
                 "--cache-dir", str(tmp_path / "mirrored") + "-cache"]) == 0
    out = capsys.readouterr().out
    assert "train: 48 classes with their mirror images" in out
    assert "Train accuracy" in out and "Test accuracy" in out
    code = main(tiny_train_args(synthetic_omniglot, tmp_path / "mirrored", "--meta-iters", "3",
                                "--resume"))
    assert code == 2 and "no --mirror-classes (checkpoint: True)" in capsys.readouterr().err
