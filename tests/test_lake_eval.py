"""``minireptile eval lake``: scoring of Lake's one-shot runs with a meta-learned network."""

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.data.lake_runs import load_lake_runs
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.problems.lake_benchmark import evaluate_runs, summary
from minireptile.runs.config import TrainConfig, make_learner
from minireptile.runs.run import Run, generators
from minireptile.testing import make_lake_fixture


def characters(n_chars=24, n_drawings=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_chars):
        base = np.ones((105, 105), dtype=np.uint8)
        r, q = divmod(c, 6)
        base[10 + 15 * r: 22 + 15 * r, 10 + 15 * q: 22 + 15 * q] = 0
        out.append([np.where(rng.random((105, 105)) < 0.01, 1 - base, base)
                    for _ in range(n_drawings)])
    return out


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake") / "all_runs"
    make_lake_fixture(root, characters(), 2, np.random.default_rng(1))
    return root


@pytest.fixture(scope="module")
def all_runs_dir(tmp_path_factory):
    """All 20 runs, as Lake's release has them."""
    root = tmp_path_factory.mktemp("lake20") / "all_runs"
    make_lake_fixture(root, characters(), 20, np.random.default_rng(2))
    return root


def save_checkpoint(directory, classes, seed=0):
    model = omniglot_cnn(classes)
    config = TrainConfig(classes=classes, shots=1, eval_batch=5, eval_iters=2, meta_iters=1)
    train_rng, eval_rng, _ = generators(seed)
    learner = make_learner(model, model.init_params(train_rng), config)
    Run(directory).save(model, learner, (train_rng, eval_rng), 1, config)
    return learner


def test_error_rate_counts_wrong_test_items(runs_dir, tmp_path):
    learner = save_checkpoint(tmp_path, 20)
    runs = load_lake_runs(runs_dir)
    rng = np.random.default_rng(0)
    # The network's outputs stand in for the fine-tuned network's: one-hot on given labels.
    learner.query_logits = lambda w, support, queries, transductive: np.eye(20)[
        runs_by_size[len(queries)]]
    runs_by_size = {20: runs[0].test_labels}
    assert evaluate_runs(learner, runs[:1], 5, 1, rng, True) == [("run01", 0.0)]
    runs_by_size = {20: (runs[0].test_labels + 1) % 20}
    assert evaluate_runs(learner, runs[:1], 5, 1, rng, True) == [("run01", 1.0)]
    half_right = runs[0].test_labels.copy()
    half_right[:10] = (half_right[:10] + 1) % 20
    runs_by_size = {20: half_right}
    assert evaluate_runs(learner, runs[:1], 5, 1, rng, True) == [("run01", 0.5)]
    mean, half = summary([("a", 0.1), ("b", 0.3)])
    assert mean == pytest.approx(0.2) and half > 0


def test_fine_tuning_leaves_the_learner_unchanged(runs_dir, tmp_path):
    learner = save_checkpoint(tmp_path, 20)
    phi = learner.phi.copy()
    evaluate_runs(learner, load_lake_runs(runs_dir), 5, 2, np.random.default_rng(0), False)
    np.testing.assert_array_equal(learner.phi, phi)
    assert learner.optimizer.t == 0


def test_command_prints_each_run_and_overall(all_runs_dir, tmp_path, capsys):
    save_checkpoint(tmp_path / "run", 20)
    code = main(["eval", "lake", "--runs", str(all_runs_dir), "--checkpoint",
                 str(tmp_path / "run"), "--eval-iters", "1", "--transductive"])
    out = capsys.readouterr().out
    assert code == 0
    assert "run01: error" in out and "run20: error" in out
    assert "overall error:" in out and "over 20 runs)" in out and "published" in out
    # With distorted training images at every fine-tuning step the runs are fine-tuned anew.
    code = main(["eval", "lake", "--runs", str(all_runs_dir), "--checkpoint",
                 str(tmp_path / "run"), "--eval-iters", "3", "--transductive"])
    plain = capsys.readouterr().out
    code_distorted = main(["eval", "lake", "--runs", str(all_runs_dir), "--checkpoint",
                           str(tmp_path / "run"), "--eval-iters", "3", "--transductive",
                           "--eval-augment"])
    distorted = capsys.readouterr().out
    assert code == code_distorted == 0
    assert "training images distorted at every step" in distorted
    assert _errors(plain) != _errors(distorted)


def test_command_scores_runs_with_an_ensemble(all_runs_dir, tmp_path, capsys):
    save_checkpoint(tmp_path / "run", 20)
    save_checkpoint(tmp_path / "other", 20, seed=3)
    argv = ["eval", "lake", "--runs", str(all_runs_dir), "--checkpoint", str(tmp_path / "run"),
            "--eval-iters", "1", "--transductive", "--runs-subset", "1-4"]
    assert main(argv) == 0
    alone = capsys.readouterr().out
    assert main(argv + ["--ensemble", str(tmp_path / "other"), "--finetunings", "2"]) == 0
    voted = capsys.readouterr().out
    assert "ensemble of 2 networks × 2 fine-tunings" in voted and "ensemble" not in alone
    assert _errors(voted) != _errors(alone)
    save_checkpoint(tmp_path / "five", 5)
    assert main(argv + ["--ensemble", str(tmp_path / "five")]) == 2
    assert "is a 5-way network, the evaluated run a 20-way" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--augment-rotation", "180"),
                                         ("--augment-scale", "-0.1"), ("--eval-iters", "0")])
def test_command_refuses_settings_out_of_range(flag, value, all_runs_dir, tmp_path, capsys):
    save_checkpoint(tmp_path / "run", 20)
    try:  # refused when parsing or when the run's settings are laid over
        code = main(["eval", "lake", "--runs", str(all_runs_dir), "--checkpoint",
                     str(tmp_path / "run"), "--eval-augment", flag, value])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err and value in err


def _errors(out):
    return [line for line in out.splitlines() if ": error" in line]


def test_a_missing_run_is_refused_unless_a_subset_is_named(all_runs_dir, tmp_path, capsys):
    import shutil

    runs = tmp_path / "all_runs"
    shutil.copytree(all_runs_dir, runs)
    shutil.rmtree(runs / "run07")
    save_checkpoint(tmp_path / "run", 20)
    argv = ["eval", "lake", "--runs", str(runs), "--checkpoint", str(tmp_path / "run"),
            "--eval-iters", "1", "--transductive"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "lacks run07 of Lake's 20 runs" in err and "--runs-subset" in err
    assert err.count("\n") == 1
    assert main(argv + ["--runs-subset", "1-6,8"]) == 0
    out = capsys.readouterr().out
    assert "over 7 runs; SUBSET run01, run02, run03, run04, run05, run06, run08 only" in out
    assert "not comparable to the published 20-run figures" in out
    assert "People" not in out and "run07" not in out
    # A subset naming the missing run is refused too.
    assert main(argv + ["--runs-subset", "7"]) == 2
    assert "lacks run07" in capsys.readouterr().err


@pytest.mark.parametrize("subset", ["0", "21", "3-1", "x", "1,,2"])
def test_bad_runs_subset_is_refused(runs_dir, tmp_path, subset, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "lake", "--runs", str(runs_dir), "--checkpoint", str(tmp_path),
              "--runs-subset", subset])
    assert stop.value.code == 2
    assert "--runs-subset" in capsys.readouterr().err


def test_a_run_with_a_missing_image_is_refused(runs_dir, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(runs_dir, runs)
    (runs / "run02" / "test" / "item05.png").unlink()
    with pytest.raises(InputError, match=r"run02/test holds 19 images but .* lists 20; "
                                         r"missing \['run02/test/item05.png'\]"):
        load_lake_runs(runs)
    shutil.copy(runs / "run01" / "training" / "class01.png",
                runs / "run01" / "training" / "class21.png")
    with pytest.raises(InputError, match="not listed"):
        load_lake_runs(runs / "run01" / "..")


def test_five_way_network_is_refused_with_a_clear_error(runs_dir, tmp_path, capsys):
    save_checkpoint(tmp_path / "run", 5)
    code = main(["eval", "lake", "--runs", str(runs_dir), "--checkpoint", str(tmp_path / "run"),
                 "--runs-subset", "1-2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "20-way but the network has 5 outputs" in err and "--classes 20" in err
    assert err.count("\n") == 1
    with pytest.raises(InputError):
        learner = save_checkpoint(tmp_path / "other", 5)
        evaluate_runs(learner, load_lake_runs(runs_dir), 5, 1, np.random.default_rng(0), True)
