"""Supervised pre-training before meta-training (``--pretrain-steps``): the wide network's
gradient, learning, reproducibility, the run's start from the trained body, exact resume and
bad input."""

import os

import numpy as np
import pytest
from conftest import write_synthetic_omniglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minireptile.runs.training as training
from minireptile.cli import main
from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.guard import DivergedError
from minireptile.models.cnn import omniglot_cnn
from minireptile.models.gradcheck import check_model
from minireptile.models.model import Model, mlp
from minireptile.nn import Flatten, Linear, ReLU, Sequential
from minireptile.npzfile import load_npz
from minireptile.problems.augment import AffineAugmentation
from minireptile.problems.pretrain import Pretraining, class_examples
from minireptile.runs.config import TrainConfig
from minireptile.runs.run import Run, generators
from minireptile.runs.training import train
from test_filters import train_args as filters_train_args
from test_training import _cli, assert_same_run, kill_when, run_to_the_end

SIZE = 12


def pattern_classes(num_classes=6, per_class=5, seed=0):
    """Classes of binary SIZE×SIZE images: a random pattern per class with a few pixels
    flipped in every image (Omniglot's 0/1 values, separable by class)."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((num_classes, SIZE, SIZE)) < 0.5
    images = [(p ^ (rng.random((per_class, SIZE, SIZE)) < 0.05)).astype(np.uint8)
              for p in patterns]
    pool = ImagePool.from_classes([f"A/character{i:02d}" for i in range(num_classes)], images)
    return ClassSet(pool)


def small_cnn(num_classes=3, dtype=np.float32):
    return omniglot_cnn(num_classes, dtype=dtype, image_size=SIZE, filters=4)


# -- the wide network ------------------------------------------------------------------------

@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=st.integers(2, 9), batch=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_wide_network_shares_the_body_and_its_gradient_matches_finite_differences(
        outputs, batch, seed):
    model = small_cnn(3, dtype=np.float64)
    wide = model.with_outputs(outputs)
    assert wide.output_shape == (outputs,)
    assert wide.body_size == model.body_size
    assert wide.layout.names[:-2] == model.layout.names[:-2]
    assert wide.layout.shapes[:-2] == model.layout.shapes[:-2]
    assert model.size - model.body_size == (model.layout.shapes[-2][0] + 1) * 3
    rng = np.random.default_rng(seed)
    params = wide.init_params(rng)
    x = (rng.random((batch, SIZE, SIZE)) < 0.4).astype(np.float64)
    y = rng.integers(0, outputs, size=batch)
    assert check_model(wide, params, x, y) < 1e-6


def test_a_network_without_a_final_dense_layer_has_no_body():
    model = Model(Sequential(Flatten(), Linear(4, 3), ReLU()), "mse", (4,), name="no head")
    with pytest.raises(InputError, match="does not end in a dense layer"):
        model.with_outputs(5)
    with pytest.raises(InputError, match="num_outputs"):
        mlp([2, 3]).with_outputs(0)


# -- the stage -------------------------------------------------------------------------------

def test_class_examples_label_every_image_with_its_class():
    classes = pattern_classes(num_classes=3, per_class=4)
    labels, which = class_examples(classes)
    images = classes.examples(labels, which)
    assert images.shape == (12, SIZE, SIZE) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(3), 4))
    np.testing.assert_array_equal(images[4:8], classes.images(1, np.arange(4)))


def test_examples_of_many_classes_are_the_images_of_each():
    """``ClassSet.examples`` against the obvious loop over ``ClassSet.images``, rotated
    classes and a pool scale that is no byte divisor included."""
    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 256, size=(3, 5, 5), dtype=np.uint8) for _ in range(4)]
    for scale in (1 / 255, 0.3):
        pool = ImagePool.from_classes(list("abcd"), raw, scale=scale)
        classes = ClassSet(pool, base=[0, 1, 2, 3, 1, 2], turns=[0, 1, 2, 3, 0, 3])
        rows = rng.integers(0, 6, size=20)
        which = rng.integers(0, 3, size=20)
        expected = np.stack([classes.images(r, [w])[0] for r, w in zip(rows, which)])
        got = classes.examples(rows, which)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_pretraining_learns_to_tell_the_training_classes_apart():
    classes = pattern_classes()
    stage = Pretraining(small_cnn(), classes, batch=10, learning_rate=0.01,
                        rng=np.random.default_rng(0))
    labels, which = class_examples(classes)
    images = classes.examples(labels, which)
    before = np.mean(np.argmax(stage.wide.predict(stage.params, images), 1) == labels)
    losses = stage.run(120)
    after = np.mean(np.argmax(stage.wide.predict(stage.params, images), 1) == labels)
    assert stage.step == 120
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    # 6 classes: chance is 1/6.
    assert before < 0.5 and after >= 0.9


def test_pretraining_is_reproducible_and_resumes_bit_for_bit():
    classes = pattern_classes()
    augmentation = AffineAugmentation()

    def stage(seed):
        return Pretraining(small_cnn(), classes, batch=7, learning_rate=0.01,
                           rng=np.random.default_rng(seed), augmentation=augmentation)

    straight = stage(3)
    losses = straight.run(13)             # 30 images of 7: an epoch is 4 steps
    first = stage(3)
    first.run(6)
    state = first.state_dict()
    resumed = stage(99)                   # another generator: the state replaces it
    resumed.load_state_dict(state)
    later = resumed.run(7)
    np.testing.assert_array_equal(straight.params, resumed.params)
    np.testing.assert_array_equal(losses[6:], later)
    np.testing.assert_array_equal(straight.body(), resumed.body())
    assert straight.body().shape == (small_cnn().body_size,)
    assert not np.array_equal(straight.params, stage(4).params)


def test_a_batch_larger_than_the_data_takes_every_image():
    classes = pattern_classes(num_classes=2, per_class=3)
    stage = Pretraining(small_cnn(), classes, batch=50, learning_rate=0.01,
                        rng=np.random.default_rng(0))
    stage.run(2)
    assert stage.position == 6 and stage.step == 2


def test_pretraining_refuses_what_it_cannot_train():
    with pytest.raises(InputError, match="at least 2 training classes"):
        Pretraining(small_cnn(), pattern_classes(num_classes=1), batch=4, learning_rate=0.01,
                    rng=np.random.default_rng(0))
    other = Pretraining(small_cnn(), pattern_classes(num_classes=4), batch=4,
                        learning_rate=0.01, rng=np.random.default_rng(0))
    stage = Pretraining(small_cnn(), pattern_classes(num_classes=5), batch=4,
                        learning_rate=0.01, rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="other training classes"):
        stage.load_state_dict(other.state_dict())


# -- a run that pre-trains -------------------------------------------------------------------

def config(**changes):
    values = dict(classes=3, shots=1, train_shots=2, inner_batch=3, inner_iters=2,
                  meta_iters=6, eval_interval=2, eval_iters=2, checkpoint_interval=2,
                  pretrain_steps=12, pretrain_batch=8, pretrain_learning_rate=0.01,
                  augment=True, seed=5)
    values.update(changes)
    return TrainConfig(**values)


def run_arrays(folder):
    return load_npz(folder / "checkpoint.npz")[0]


def test_meta_training_starts_from_the_pretrained_body_and_a_fresh_head(tmp_path, monkeypatch):
    classes, settings_ = pattern_classes(), config()
    started = []
    make_learner = training.make_learner
    monkeypatch.setattr(training, "make_learner",
                        lambda model, phi, c: started.append(phi.copy()) or
                        make_learner(model, phi, c))
    model = small_cnn()
    train(model, classes, classes, settings_, tmp_path / "run", progress=False)
    (phi,) = started
    expected = settings_.pretraining(model, classes)
    expected.run(12)
    np.testing.assert_array_equal(phi[:model.body_size], expected.body())
    # The head as a run without pre-training draws it: the pre-training has its own stream.
    fresh = model.init_params(generators(5)[0])
    np.testing.assert_array_equal(phi[model.body_size:], fresh[model.body_size:])
    assert not np.array_equal(phi[:model.body_size], fresh[:model.body_size])
    saved, meta = load_npz(tmp_path / "run" / "pretraining.npz")
    assert int(saved["step"]) == 12 and meta["config"]["pretrain_steps"] == 12
    np.testing.assert_array_equal(saved["params"][:model.body_size], expected.body())


class Stop(Exception):
    """Stands for the process being killed."""


@pytest.mark.parametrize("stop_at", [4, 7, 12])
def test_a_run_stopped_during_pretraining_resumes_bit_identically(tmp_path, monkeypatch,
                                                                   stop_at):
    """Stopped right after a save of the pre-training (step 4), between two saves (step 7:
    three steps are lost and redone) and after the last one, before meta-training's first
    checkpoint (step 12)."""
    monkeypatch.setattr(training, "PRETRAINING_SAVE_STEPS", 4)
    classes = pattern_classes()
    train(small_cnn(), classes, classes, config(), tmp_path / "straight", progress=False)

    run = Pretraining.run

    def stopping(stage, steps, on_step=None):
        def step(stage, loss):
            on_step(stage, loss)
            if stage.step == stop_at:
                raise Stop
        return run(stage, steps, step)

    monkeypatch.setattr(Pretraining, "run", stopping)
    with pytest.raises(Stop):
        train(small_cnn(), classes, classes, config(), tmp_path / "stopped", progress=False)
    assert not Run(tmp_path / "stopped").exists()
    monkeypatch.setattr(Pretraining, "run", run)
    with pytest.raises(InputError, match="pass resume=True"):
        train(small_cnn(), classes, classes, config(), tmp_path / "stopped", progress=False)
    for changed in (13, 0):
        with pytest.raises(InputError, match=f"pretrain_steps={changed} "):
            train(small_cnn(), classes, classes, config(pretrain_steps=changed),
                  tmp_path / "stopped", resume=True, progress=False)
    logged = []
    train(small_cnn(), classes, classes, config(), tmp_path / "stopped", resume=True,
          progress=False, log=logged.append)
    saved_at = stop_at // 4 * 4
    assert f"at step {saved_at} of 12" in logged[0]
    straight, stopped = run_arrays(tmp_path / "straight"), run_arrays(tmp_path / "stopped")
    assert straight.keys() == stopped.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], stopped[key], err_msg=key)
    assert ((tmp_path / "straight" / "metrics.jsonl").read_text().count("\n")
            == (tmp_path / "stopped" / "metrics.jsonl").read_text().count("\n"))


def test_a_diverging_pretraining_stops_with_the_setting_to_lower(tmp_path):
    classes = pattern_classes()
    with pytest.raises(DivergedError, match="pretrain_learning_rate=1e\\+30"):
        train(small_cnn(), classes, classes, config(pretrain_learning_rate=1e30),
              tmp_path / "run", progress=False)


# -- the command line ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_omniglot(tmp_path_factory.mktemp("pretrain") / "data",
                                    alphabets=2, characters=6, drawings=4)


def train_args(data, run, *extra):
    return filters_train_args(data, run, "--filters", "4", *extra)


def test_the_command_pretrains_on_every_training_class(data, tmp_path, capsys):
    assert main(train_args(data, tmp_path / "run", "--pretrain-steps", "3",
                           "--pretrain-batch", "5")) == 0
    out = capsys.readouterr().out
    # 6 training characters in four rotations each.
    assert "pre-trained on 24 classes for 3 steps" in out
    arrays, meta = load_npz(tmp_path / "run" / "pretraining.npz")
    assert int(arrays["step"]) == 3 and "24 outputs" in meta["model"]


def pretraining_step(folder):
    """The step of the run's saved pre-training, 0 while none is readable yet."""
    try:
        return int(load_npz(folder / "pretraining.npz")[0]["step"])
    except (InputError, OSError, KeyError):
        return 0


def test_a_command_killed_during_pretraining_resumes_bit_identically(data, tmp_path):
    common = train_args(data, tmp_path / "unused", "--pretrain-steps", "2500",
                        "--pretrain-batch", "4", "--eval-samples", "0")[2:]
    common = common[:common.index("--checkpoint")] + common[common.index("--checkpoint") + 2:]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run_to_the_end(_cli(*common, "--checkpoint", str(tmp_path / "straight")), tmp_path, env)
    killed = tmp_path / "killed"
    kill_when(_cli(*common, "--checkpoint", str(killed)),
              lambda: pretraining_step(killed) >= 1000, tmp_path, env)
    assert pretraining_step(killed) in (1000, 2000)
    assert not (killed / "checkpoint.npz").exists()
    resumed = run_to_the_end(_cli(*common, "--checkpoint", str(killed), "--resume"),
                             tmp_path, env)
    assert "resuming the pre-training" in resumed.stdout
    assert_same_run(tmp_path / "straight", killed)


@pytest.mark.parametrize("flag, value", [("--pretrain-steps", "-1"), ("--pretrain-batch", "0"),
                                         ("--pretrain-learning-rate", "0"),
                                         ("--pretrain-learning-rate", "fast")])
def test_bad_pretraining_settings_exit_2(flag, value, data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(data, tmp_path / "run", flag, value))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and flag in err and value in err
