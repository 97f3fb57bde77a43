"""The Dask executor (``--scheduler``): the same numbers as here and as a local pool, and
clear errors when Dask, the scheduler or the data is missing.

The cluster is a ``LocalCluster`` of two worker processes on 127.0.0.1, started once for the
module and closed at its end.
"""

import json
import logging
import shutil
import sys
import warnings

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.npzfile import load_npz

SMALL = ["--num-train", "8", "--classes", "3", "--shots", "1", "--train-shots", "2",
         "--inner-batch", "4", "--inner-iters", "2", "--eval-iters", "2", "--no-progress"]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a two-worker local Dask cluster (skips without the cluster extra)."""
    distributed = pytest.importorskip("distributed",
                                      reason='needs the cluster extra: pip install ".[cluster]"')
    with warnings.catch_warnings():  # "port 8787 in use": its HTTP server moves elsewhere
        warnings.simplefilter("ignore", UserWarning)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close(timeout=30)


def train_args(data, cache, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--cache-dir", str(cache), *SMALL,
            "--checkpoint", str(checkpoint), *extra]


def metrics(folder):
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        del r["seconds"]
    return records


@pytest.mark.parametrize("algorithm", [["--sgd", "--meta-batch", "3"], []],
                         ids=["inner-sgd", "inner-adam"])
def test_training_and_evaluation_are_identical_here_on_two_processes_and_on_dask(
        tmp_path, synthetic_omniglot, scheduler, capsys, algorithm):
    where = {"here": ["--workers", "1"], "pool": ["--workers", "2"],
             "dask": ["--scheduler", scheduler]}
    printed = {}
    for name, flags in where.items():
        args = train_args(synthetic_omniglot, tmp_path / "cache", tmp_path / name,
                          "--meta-iters", "4", "--eval-interval", "1", "--eval-samples", "6",
                          *algorithm, *flags)
        assert main(args) == 0
        printed[name] = [line for line in capsys.readouterr().out.splitlines()
                         if "accuracy" in line]
    assert len(printed["here"]) == 2
    for name in ("pool", "dask"):
        assert printed[name] == printed["here"]
        assert metrics(tmp_path / name) == metrics(tmp_path / "here")
        a = load_npz(tmp_path / "here" / "checkpoint.npz")[0]
        b = load_npz(tmp_path / name / "checkpoint.npz")[0]
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")

    # A separate evaluation of the run: the same per-split results wherever it runs. Each
    # evaluates its own copy, as an evaluation records its results in the run's folder.
    evaluated = {}
    for name, flags in where.items():
        copy = tmp_path / f"eval-{name}"
        copy.mkdir()
        shutil.copy(tmp_path / "here" / "checkpoint.npz", copy)
        assert main(["eval", "omniglot", "--data", str(synthetic_omniglot), "--cache-dir",
                     str(tmp_path / "cache"), "--num-train", "8", "--checkpoint", str(copy),
                     "--eval-samples", "12", "--no-progress", *flags]) == 0
        assert len(list((copy / "evaluations").glob("[!.]*.npz"))) == 1
        evaluated[name] = [line for line in capsys.readouterr().out.splitlines()
                           if "accuracy" in line]
    assert evaluated["pool"] == evaluated["here"] == evaluated["dask"]


def test_per_task_results_are_identical_on_dask(synthetic_omniglot, tmp_path, scheduler):
    from minireptile.data.omniglot import load_omniglot
    from minireptile.models.cnn import omniglot_cnn
    from minireptile.parallel.dask_cluster import DaskExecutor
    from minireptile.problems.fewshot import FewShotLearner, InnerConfig, evaluate_accuracy

    classes = load_omniglot([str(synthetic_omniglot)], cache_dir=tmp_path / "cache",
                            progress=False)
    model = omniglot_cnn(3)
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(batch=4, iters=2))
    here = evaluate_accuracy(learner, classes, 3, 1, 4, 3, 20, np.random.default_rng(7))
    with DaskExecutor(scheduler) as executor:
        assert executor.workers == 2
        there = evaluate_accuracy(learner, classes, 3, 1, 4, 3, 20, np.random.default_rng(7),
                                  executor=executor)
        # Sharing the same object again sends nothing new.
        assert executor.share(classes).key is executor.share(classes).key
    np.testing.assert_array_equal(here[2], there[2])
    assert here[:2] == there[:2]


def test_sweep_on_dask_equals_the_local_sweep(tmp_path, synthetic_omniglot, scheduler):
    from test_sweep import assert_same_sweep, sweep_args

    common = ["--meta-iters", "2", "--eval-samples", "3", "--no-plot",
              "--grid", "learning-rate=0.001,0.003", "--grid", "meta-step=0.5,1"]
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(sweep_args(synthetic_omniglot, local, tmp_path / "c", *common,
                           "--workers", "1")) == 0
    assert main(sweep_args(synthetic_omniglot, dask, tmp_path / "c", *common,
                           "--scheduler", scheduler)) == 0
    assert_same_sweep(local, dask)


def test_a_dask_worker_that_cannot_read_the_data_is_named(tmp_path, scheduler, capsys):
    from test_sweep import sweep_args

    missing = tmp_path / "not-on-the-workers"
    code = main(sweep_args(missing, tmp_path / "out", tmp_path / "c", "--no-plot",
                           "--meta-iters", "2", "--scheduler", scheduler))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "worker tcp://127.0.0.1:" in err
    assert f"cannot read the data path {str(missing)!r}" in err


def test_unreachable_scheduler_fails_in_one_line_naming_the_timeout(tmp_path, synthetic_omniglot, capsys):
    pytest.importorskip("distributed", reason='needs the cluster extra: pip install ".[cluster]"')
    import socket

    from minireptile.parallel.dask_cluster import CONNECT_TIMEOUT

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["eval", "omniglot", "--data", str(synthetic_omniglot), "--checkpoint",
                 str(tmp_path / "run"), "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"cannot reach the Dask scheduler 'tcp://127.0.0.1:{port}' within " \
           f"{CONNECT_TIMEOUT} s" in err


def test_missing_dask_says_how_to_install_it(tmp_path, synthetic_omniglot, capsys,
                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    code = main(["eval", "omniglot", "--data", str(synthetic_omniglot), "--checkpoint",
                 str(tmp_path / "run"), "--scheduler", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert 'pip install "minireptile[cluster]"' in err


def test_workers_and_scheduler_exclude_each_other(tmp_path, synthetic_omniglot, capsys):
    code = main(["eval", "omniglot", "--data", str(synthetic_omniglot), "--checkpoint",
                 str(tmp_path / "run"), "--workers", "2", "--scheduler", "tcp://x:1"])
    err = capsys.readouterr().err
    assert code == 2 and "--workers 2 and --scheduler" in err


def test_sine_and_experiment_variants_are_identical_on_dask(tmp_path, synthetic_omniglot,
                                                           scheduler, capsys):
    from minireptile.runs.experiment import read_curve

    outputs = {}
    for name, flags in (("here", ["--workers", "1"]), ("dask", ["--scheduler", scheduler])):
        assert main(["sine", "--iterations", "5", "--eval-tasks", "12", "--no-progress",
                     *flags]) == 0
        outputs[name] = [x for x in capsys.readouterr().out.splitlines() if "after" in x]
        assert main(["experiment", "gradient-combinations", "--data", str(synthetic_omniglot),
                     "--num-train", "10", "--combinations", "g1,g1+g2", "--meta-iters", "2",
                     "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / "cache"),
                     "--no-plot", "--no-progress", *flags]) == 0
        capsys.readouterr()
    assert len(outputs["here"]) == 5 and outputs["dask"] == outputs["here"]
    for variant in ("g1", "g1_g2"):
        for a, b in zip(read_curve(tmp_path / "here" / variant),
                        read_curve(tmp_path / "dask" / variant)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(
            load_npz(tmp_path / "here" / variant / "checkpoint.npz")[0]["phi"],
            load_npz(tmp_path / "dask" / variant / "checkpoint.npz")[0]["phi"])
