"""Within-alphabet tasks: one alphabet per task, small alphabets skipped, the setting stored
with the run and reused by evaluation, and clear errors."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import write_synthetic_omniglot

from minireptile.cli import main
from minireptile.data import ClassSet, ImagePool
from minireptile.data.alphabets import AlphabetClassSet, alphabet_of, as_within_alphabet
from minireptile.data.classes import augment_rotations
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.npzfile import load_npz
from minireptile.problems.tasks import sample_eval_task, sample_task
from minireptile.runs.config import TrainConfig
from minireptile.runs.run import open_for_evaluation

SIZES = {"Alpha": 7, "Beta": 3, "Gamma": 5, "Delta": 2, "Epsilon": 9}


def labelled_pool(sizes=SIZES, drawings=4):
    """A pool whose every pixel holds its class's index (so an image names its class)."""
    names, images, files = [], [], []
    for alphabet, count in sizes.items():
        for c in range(count):
            names.append(f"{alphabet}/character{c + 1:02d}")
    names.sort()
    for index, _ in enumerate(names):
        images.append(np.full((drawings, 4, 4), index, np.uint8))
        files.append([f"{index}_{d}.png" for d in range(drawings)])
    return ClassSet(ImagePool.from_classes(names, images, files, 1.0, (4, 4)))


def task_alphabets(classes, task):
    """The alphabet of each label of a task drawn from ``labelled_pool``."""
    names = classes.pool.names
    return [alphabet_of(names[int(task.images[task.labels == label][0, 0, 0])])
            for label in np.unique(task.labels)]


def test_tasks_never_mix_alphabets_and_skip_small_ones():
    classes = labelled_pool()
    within = AlphabetClassSet(classes, 5, "test")
    assert within.names == ["Alpha", "Epsilon", "Gamma"]
    assert within.skipped == {"Beta": 3, "Delta": 2}
    rng = np.random.default_rng(0)
    drawn = Counter()
    for _ in range(600):
        task = sample_task(within, 5, 2, rng)
        alphabets = task_alphabets(classes, task)
        assert len(set(alphabets)) == 1, alphabets
        assert len(set(task.images[:, 0, 0].tolist())) == 5  # five distinct classes
        drawn[alphabets[0]] += 1
    # Uniform over the eligible alphabets, whatever their size: about 200 each.
    assert set(drawn) == {"Alpha", "Epsilon", "Gamma"}
    assert all(150 < count < 250 for count in drawn.values()), drawn


def test_evaluation_tasks_stay_within_one_alphabet():
    classes = labelled_pool()
    within = AlphabetClassSet(classes, 3, "test")
    rng = np.random.default_rng(1)
    for _ in range(100):
        task = sample_eval_task(within, 3, 1, rng)
        support = task_alphabets(classes, task.support)
        assert len(set(support + task_alphabets(classes, task.query))) == 1
    assert within.skipped == {"Delta": 2}


def test_rotations_are_separate_classes_of_their_alphabet():
    within = AlphabetClassSet(augment_rotations(labelled_pool()), 8, "training")
    # Beta's 3 characters make 12 rotated classes, Delta's 2 make 8: both now eligible.
    assert within.names == ["Alpha", "Beta", "Delta", "Epsilon", "Gamma"]
    rng = np.random.default_rng(2)
    for _ in range(50):
        rows = within.sample_rows(8, rng)
        assert len(set(rows.tolist())) == 8
        assert len({alphabet_of(within.class_name(r)) for r in rows}) == 1


def test_too_many_classes_names_the_largest_alphabet():
    with pytest.raises(InputError, match="largest alphabet of the test split, Epsilon, has 9"):
        AlphabetClassSet(labelled_pool(), 10, "test")


def test_plain_class_sets_draw_as_before():
    classes = labelled_pool()
    rows = classes.sample_rows(6, np.random.default_rng(3))
    np.testing.assert_array_equal(rows,
                                  np.random.default_rng(3).permutation(len(classes))[:6])


def test_wrapping_is_idempotent_and_reports_skips():
    lines = []
    within = as_within_alphabet(labelled_pool(), 5, "test", lines.append)
    assert as_within_alphabet(within, 5, "test", lines.append) is within
    assert lines == ["test: 5-way tasks within one of 3 alphabets; 2 alphabets with fewer "
                     "than 5 classes skipped (Beta: 3, Delta: 2)"]


# -- the command line ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_alphabets(tmp_path_factory):
    """Three alphabets of 6 characters, 4 drawings each."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("alphabets") / "data",
                                    alphabets=3, characters=6, drawings=4)


def _train_args(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "1",
            "--meta-iters", "3", "--eval-iters", "1", "--eval-batch", "4",
            "--eval-interval", "1", "--eval-samples", "4", "--checkpoint", str(checkpoint),
            "--no-progress", "--workers", "1", "--cache-dir", str(checkpoint) + "-cache",
            *extra]


def test_cli_too_many_classes_exits_2_naming_the_largest_alphabet(three_alphabets, tmp_path,
                                                                  capsys):
    code = main(_train_args(three_alphabets, tmp_path / "run", "--within-alphabet",
                            "--classes", "7"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "largest alphabet of the test split" in err and "has 6" in err


@pytest.mark.parametrize("flag, value", [("--augment-scale", "-0.2"),
                                         ("--augment-rotation", "180"),
                                         ("--augment-rotation", "200"),
                                         ("--augment-interpolation", "cubic")])
def test_cli_bad_augmentation_ranges_exit_2(flag, value, three_alphabets, tmp_path, capsys):
    try:  # refused when parsing (a negative range) or when the run is configured
        code = main(_train_args(three_alphabets, tmp_path / "run", "--augment", flag, value))
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err and value in err


def test_run_stores_the_setting_and_evaluation_reuses_it(three_alphabets, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(three_alphabets, run, "--within-alphabet", "--classes", "4",
                            "--augment")) == 0
    out = capsys.readouterr().out
    assert "test: 4-way tasks within one of 2 alphabets; 0 alphabets" in out
    _, meta = load_npz(run / "checkpoint.npz")
    assert meta["config"]["within_alphabet"] is True and meta["config"]["augment"] is True
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    eval_args = ["eval", "omniglot", "--data", str(three_alphabets), "--train-alphabet",
                 "Alphabet0", "--checkpoint", str(run),
                 "--eval-samples", "5", "--split", "test", "--no-progress", "--workers", "1",
                 "--cache-dir", str(run) + "-cache"]
    assert main(eval_args) == 0
    out = capsys.readouterr().out
    assert "4-way 1-shot within one alphabet" in out and "Test accuracy" in out
    # Resuming needs the same setting, like any other.
    code = main(_train_args(three_alphabets, run, "--classes", "4", "--augment", "--resume"))
    assert code == 2 and "no --within-alphabet (checkpoint: True)" in capsys.readouterr().err


def test_bilinear_distortions_are_stored_and_reach_training(three_alphabets, tmp_path, capsys):
    runs = {}
    for interpolation in ("nearest", "bilinear"):
        run = tmp_path / interpolation
        assert main(_train_args(three_alphabets, run, "--classes", "4", "--augment",
                                "--augment-interpolation", interpolation)) == 0
        phi, meta = load_npz(run / "checkpoint.npz")
        config = TrainConfig.from_dict(meta["config"])
        assert config.augmentation().interpolation == interpolation
        runs[interpolation] = phi["phi"]
    # The same seed draws the same distortions; only their resampling differs.
    assert not np.array_equal(runs["nearest"], runs["bilinear"])
    capsys.readouterr()
    code = main(_train_args(three_alphabets, tmp_path / "bilinear", "--classes", "4",
                            "--augment", "--resume"))
    assert code == 2
    assert "--augment-interpolation 'nearest' (checkpoint: 'bilinear')" in capsys.readouterr().err


def test_eval_within_alphabet_on_a_run_trained_on_random_tasks(three_alphabets, tmp_path,
                                                               capsys):
    run = tmp_path / "run"
    assert main(_train_args(three_alphabets, run, "--classes", "4", "--transductive")) == 0
    eval_args = ["eval", "omniglot", "--data", str(three_alphabets), "--train-alphabet",
                 "Alphabet0", "--checkpoint", str(run),
                 "--eval-samples", "5", "--split", "test", "--no-progress", "--workers", "1",
                 "--cache-dir", str(run) + "-cache"]
    assert main(eval_args) == 0
    random_tasks = capsys.readouterr().out
    assert "within one alphabet" not in random_tasks
    # The same settings within one alphabet are another evaluation, not the recorded one.
    assert main(eval_args + ["--within-alphabet"]) == 0
    within = capsys.readouterr().out
    assert "within one alphabet" in within and "resuming the evaluation" not in within
    assert ", transductive" in within
    # Transduction is the run's setting unless turned off.
    assert main(eval_args + ["--within-alphabet", "--no-transductive"]) == 0
    assert "non-transductive" in capsys.readouterr().out
    # Fine-tuning on distorted support images is another evaluation again, with other results.
    assert main(eval_args + ["--within-alphabet", "--eval-augment", "--eval-iters", "3"]) == 0
    distorted = capsys.readouterr().out
    assert "support images distorted at every step" in distorted
    assert "resuming the evaluation" not in distorted
    assert main(eval_args + ["--within-alphabet", "--eval-iters", "3"]) == 0
    plain = capsys.readouterr().out
    assert "distorted" not in plain
    assert _accuracy(plain) != _accuracy(distorted)
    with pytest.raises(SystemExit) as refused:
        main(eval_args + ["--eval-augment", "--augment-rotation", "180"])
    assert refused.value.code == 2 and "--augment-rotation" in capsys.readouterr().err


def test_evaluation_ranges_are_the_evaluations_alone(three_alphabets, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(three_alphabets, run, "--classes", "4", "--augment")) == 0
    wide = {"rotation": 14.0, "shear": 0.42, "scale": 0.28, "translate": 2.8}
    overrides = {f"augment_{name}": value for name, value in wide.items()}
    _, _, learner, meta = open_for_evaluation(run, omniglot_cnn,
                                              dict(overrides, eval_augment=True))
    assert {name: getattr(learner.eval_augmentation, name) for name in wide} == wide
    stored = TrainConfig.from_dict(meta["config"])
    assert (stored.augment_rotation, stored.augment_shear) == (10.0, 0.3)
    # On the command line they are another evaluation, kept in a record of its own.
    eval_args = ["eval", "omniglot", "--data", str(three_alphabets), "--train-alphabet",
                 "Alphabet0", "--checkpoint", str(run), "--eval-samples", "3", "--split",
                 "test", "--no-progress", "--workers", "1", "--cache-dir",
                 str(run) + "-cache", "--eval-augment"]
    flags = [part for name, value in wide.items()
             for part in (f"--augment-{name}", str(value))]
    records = set((run / "evaluations").iterdir())  # the training's own final evaluation
    for extra in ([], flags):
        capsys.readouterr()
        assert main(eval_args + extra) == 0
        assert "resuming the evaluation" not in capsys.readouterr().out
    assert len(set((run / "evaluations").iterdir()) - records) == 2
    assert TrainConfig.from_dict(load_npz(run / "checkpoint.npz")[1]["config"]) == stored


def _accuracy(out):
    return [line for line in out.splitlines() if "accuracy:" in line]


def test_workers_do_not_change_a_within_alphabet_augmented_run(three_alphabets, tmp_path):
    phis = []
    for workers in ("1", "2"):
        run = tmp_path / f"run{workers}"
        args = _train_args(three_alphabets, run, "--within-alphabet", "--classes", "4",
                           "--augment", "--sgd", "--meta-batch", "3")
        args[args.index("--workers") + 1] = workers
        done = subprocess.run([sys.executable, "-m", "minireptile", *args], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        arrays, _ = load_npz(run / "checkpoint.npz")
        phis.append(arrays["phi"])
    np.testing.assert_array_equal(*phis)


def _experiment_args(data, out, *train_alphabets, extra=()):
    return (["experiment", "gradient-combinations", "--data", str(data)]
            + [a for name in train_alphabets for a in ("--train-alphabet", name)]
            + ["--combinations", "g1,g2", "--meta-iters", "2", "--out", str(out), "--no-plot",
               "--cache-dir", str(out) + "-cache", "--no-progress", "--workers", "1",
               "--within-alphabet", *extra])


def test_experiment_trains_its_variants_within_one_alphabet(tmp_path, capsys):
    data = write_synthetic_omniglot(tmp_path / "data", alphabets=3, characters=6, drawings=11)
    out = tmp_path / "exp"
    assert main(_experiment_args(data, out, "Alphabet0", "Alphabet1")) == 0
    printed = capsys.readouterr().out
    assert "train: 5-way tasks within one of 2 alphabets" in printed
    assert "test: 5-way tasks within one of 1 alphabets" in printed
    assert "mirror images" not in printed
    _, meta = load_npz(out / "g2" / "checkpoint.npz")
    assert meta["config"]["within_alphabet"] is True
    assert meta["config"]["mirror_classes"] is False
    # With mirror images: 12 training characters in 4 rotations, each also mirrored.
    mirrored = tmp_path / "mirrored"
    assert main(_experiment_args(data, mirrored, "Alphabet0", "Alphabet1",
                                 extra=["--mirror-classes"])) == 0
    printed = capsys.readouterr().out
    assert "train: 96 classes with their mirror images" in printed
    _, meta = load_npz(mirrored / "g2" / "checkpoint.npz")
    assert meta["config"]["mirror_classes"] is True
    assert meta["extra"]["data"] == load_npz(out / "g2" / "checkpoint.npz")[1]["extra"]["data"]
    # Too few characters per alphabet for 5-way tasks: one line, exit 2.
    small = write_synthetic_omniglot(tmp_path / "small", alphabets=2, characters=4, drawings=11)
    assert main(_experiment_args(small, tmp_path / "exp2", "Alphabet0")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "largest alphabet of the test split, Alphabet1, has 4" in err
