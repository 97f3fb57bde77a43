"""Networks of another input size (``--image-size``): trained on images shrunk to that size,
stored with it, and evaluated, voted and scored on Lake's runs only at it."""

import argparse

import numpy as np
import pytest
from conftest import tiny_train_args as train_args
from conftest import write_synthetic_omniglot

from minireptile.cli import main
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.npzfile import load_npz
from minireptile.runs.config import TrainConfig, make_learner
from minireptile.runs.run import Run, generators, open_run
from minireptile.runs.rundata import content_hash
from minireptile.testing import make_lake_fixture

SIZE = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_omniglot(tmp_path_factory.mktemp("sizes") / "data",
                                    alphabets=2, characters=6, drawings=4)


def eval_args(run, *extra):
    return ["eval", "omniglot", "--checkpoint", str(run), "--split", "test",
            "--eval-samples", "2", "--no-progress", "--workers", "1",
            "--cache-dir", str(run) + "-cache", *extra]


@pytest.fixture(scope="module")
def small_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("small") / "run"
    assert main(train_args(data, run, "--image-size", str(SIZE))) == 0
    return run


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(data, run)) == 0
    return run


def test_the_run_stores_its_size_and_a_network_of_that_input(small_run):
    arrays, meta = load_npz(small_run / "checkpoint.npz")
    assert meta["config"]["image_size"] == SIZE
    model, _, _ = open_run(small_run, omniglot_cnn)
    assert model.input_shape == (SIZE, SIZE)
    assert arrays["phi"].shape == (omniglot_cnn(3, image_size=SIZE).size,)


def test_the_run_trained_on_the_images_shrunk_to_its_size(small_run, data):
    """The run's data record holds the content hash of what it trained on: the drawings
    shrunk to 12×12, not to 28×28."""
    from minireptile.cli.fewshot_commands import OMNIGLOT

    _, meta = load_npz(small_run / "checkpoint.npz")
    config = TrainConfig.from_dict(meta["config"])
    args = argparse.Namespace(data=[str(data)], num_train=6, train_alphabet=None,
                              render=None, cache_dir=None, no_cache=True)
    splits = {size: OMNIGLOT.load(args, config.seed, False, size) for size in (SIZE, 0)}
    assert meta["extra"]["data"]["content"] == content_hash(splits[SIZE]) != content_hash(
        splits[0])
    assert splits[SIZE]["test"].pool.images.shape[1:] == (SIZE, SIZE)


def test_evaluation_reads_the_images_at_the_runs_size(small_run, capsys):
    assert main(eval_args(small_run)) == 0
    out = capsys.readouterr().out
    assert "data: the run's images" in out and "Test accuracy" in out


def test_an_ensemble_refuses_members_of_another_size(small_run, reference_run, capsys):
    code = main(eval_args(small_run, "--ensemble", str(reference_run)))
    err = capsys.readouterr().err
    assert code == 2 and "(28, 28)" in err and f"({SIZE}, {SIZE})" in err
    assert "Traceback" not in err


def test_lakes_runs_are_shrunk_to_the_runs_size(tmp_path, capsys):
    model = omniglot_cnn(20, image_size=SIZE)
    config = TrainConfig(classes=20, shots=1, eval_batch=5, eval_iters=1, meta_iters=1,
                         image_size=SIZE)
    train_rng, eval_rng, _ = generators(0)
    learner = make_learner(model, model.init_params(train_rng), config)
    Run(tmp_path / "run").save(model, learner, (train_rng, eval_rng), 1, config)
    rng = np.random.default_rng(0)
    drawings = [[np.where(rng.random((105, 105)) < 0.05, 0, 1).astype(np.uint8)
                 for _ in range(2)] for _ in range(20)]
    make_lake_fixture(tmp_path / "all_runs", drawings, 1, rng)
    code = main(["eval", "lake", "--runs", str(tmp_path / "all_runs"), "--checkpoint",
                 str(tmp_path / "run"), "--runs-subset", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "run01: error" in captured.out


def test_another_size_cannot_resume_or_reuse_the_run(small_run, data, capsys):
    code = main(train_args(data, small_run, "--resume", "--meta-iters", "3"))
    err = capsys.readouterr().err
    assert code == 2 and f"{SIZE}x{SIZE}" in err and "28x28" in err and "image size" in err
    assert "Traceback" not in err
    code = main(train_args(data, small_run, "--pretrained", "--image-size", "16"))
    err = capsys.readouterr().err
    assert code == 2 and f"--image-size {SIZE}" in err and err.count("\n") == 1


def test_the_demo_refuses_a_network_of_another_size(small_run):
    from minireptile.demo.networks import load_run

    with pytest.raises(InputError, match=f"{SIZE}×{SIZE} images.*28×28"):
        load_run(str(small_run))


@pytest.mark.parametrize("value", ["-1", "257", "big"])
def test_bad_sizes_exit_2(value, data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(data, tmp_path / "run", "--image-size", value))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--image-size" in err and "[0, 256]" in err


def test_mini_imagenet_trains_and_evaluates_at_another_size(tmp_path, capsys):
    from minireptile.testing import make_miniimagenet_fixture

    data = make_miniimagenet_fixture(tmp_path / "data", 4, 3, np.random.default_rng(4))
    run = str(tmp_path / "run")
    common = ["--data", data, "--cache-dir", str(tmp_path / "cache"), "--no-progress",
              "--workers", "1"]
    assert main(["train", "miniimagenet", *common, "--checkpoint", run, "--image-size", "20",
                 "--meta-iters", "1", "--inner-iters", "1", "--eval-iters", "1",
                 "--eval-samples", "1", "--classes", "2", "--shots", "1", "--train-shots",
                 "1", "--inner-batch", "2", "--eval-batch", "2"]) == 0
    assert "mini-imagenet cnn 20x20 (2 classes)" in capsys.readouterr().out
    assert main(["eval", "miniimagenet", *common, "--checkpoint", run, "--eval-samples", "1",
                 "--split", "test"]) == 0
    assert "data: the run's images" in capsys.readouterr().out


def test_a_sweep_over_sizes_trains_each_point_on_images_of_its_size(data, tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "omniglot", "--data", str(data), "--num-train", "6", "--classes",
                 "3", "--shots", "1", "--train-shots", "2", "--inner-batch", "3",
                 "--inner-iters", "1", "--meta-iters", "1", "--eval-iters", "1",
                 "--eval-interval", "1", "--eval-samples", "1", "--no-progress", "--no-plot",
                 "--workers", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--grid", f"image-size=0,{SIZE}"]) == 0
    for point, side in ((f"image-size={SIZE}", SIZE), ("image-size=0", 28)):
        model, _, _ = open_run(out / point, omniglot_cnn)
        assert model.input_shape == (side, side)
