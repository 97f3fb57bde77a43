"""Networks of another width (``--filters``): trained, stored, evaluated and reopened at
their own width."""

import numpy as np
import pytest
from conftest import tiny_train_args as train_args
from conftest import write_synthetic_omniglot

from minireptile.cli import main
from minireptile.models.cnn import omniglot_cnn
from minireptile.npzfile import load_npz
from minireptile.runs.run import open_run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_omniglot(tmp_path_factory.mktemp("filters") / "data",
                                    alphabets=2, characters=6, drawings=4)


@pytest.fixture(scope="module")
def narrow_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("narrow") / "run"
    assert main(train_args(data, run, "--filters", "4")) == 0
    return run


def test_the_run_trains_and_stores_a_network_of_that_width(narrow_run):
    arrays, meta = load_npz(narrow_run / "checkpoint.npz")
    assert meta["config"]["filters"] == 4
    assert arrays["phi"].shape == (omniglot_cnn(3, filters=4).size,)
    model, _, _ = open_run(narrow_run, omniglot_cnn)
    assert model.size == omniglot_cnn(3, filters=4).size != omniglot_cnn(3).size


def test_evaluation_and_ensembles_rebuild_each_network_at_its_width(narrow_run, data, tmp_path,
                                                                    capsys):
    wide = tmp_path / "wide"
    assert main(train_args(data, wide)) == 0
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(narrow_run), "--ensemble", str(wide),
                 "--split", "test", "--eval-samples", "2", "--no-progress", "--workers", "1",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "Test accuracy" in capsys.readouterr().out


def test_the_demo_opens_a_run_of_another_width(narrow_run):
    from minireptile.demo.networks import load_run

    predictor = load_run(str(narrow_run))
    assert predictor.phi.shape == (omniglot_cnn(3, filters=4).size,)
    rng = np.random.default_rng(0)
    classes = [[(rng.random((28, 28)) < 0.2).astype(np.float32)] for _ in range(2)]
    result = predictor.predict(classes, classes[0][0], compare_random=False)
    assert len(result["probabilities"]) == 2
    assert abs(sum(result["probabilities"]) - 1) < 1e-6


def test_another_width_cannot_resume_or_reuse_the_run(narrow_run, data, capsys):
    code = main(train_args(data, narrow_run, "--resume", "--meta-iters", "3"))
    err = capsys.readouterr().err
    assert code == 2 and "filters" in err and "Traceback" not in err
    code = main(train_args(data, narrow_run, "--pretrained", "--filters", "8"))
    err = capsys.readouterr().err
    assert code == 2 and "--filters 4" in err and err.count("\n") == 1


@pytest.mark.parametrize("value", ["-1", "two"])
def test_bad_widths_exit_2(value, data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(data, tmp_path / "run", "--filters", value))
    assert exit_.value.code == 2 and "--filters" in capsys.readouterr().err
