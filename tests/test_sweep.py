"""``minireptile sweep``: the grid, the table, resuming a stopped sweep, and its bad input."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.npzfile import load_npz

# A small 3-way task family on the synthetic characters: a point trains in about a second.
SMALL = ["--num-train", "8", "--classes", "3", "--shots", "1", "--train-shots", "2",
         "--inner-batch", "4", "--inner-iters", "2", "--eval-iters", "2", "--eval-interval", "2",
         "--no-progress"]
GRID = ["--grid", "learning-rate=0.001,0.003", "--grid", "meta-step=0.5,1"]
ACCURACY_COLUMNS = ("train_accuracy", "train_interval", "test_accuracy", "test_interval")


def sweep_args(data, out, cache, *extra):
    return ["sweep", "omniglot", "--data", str(data), "--cache-dir", str(cache),
            "--out", str(out), *SMALL, *extra]


def read_table(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def final_parameters(out):
    return {run.name: load_npz(run / "checkpoint.npz")[0]["phi"]
            for run in sorted(out.iterdir()) if run.is_dir()}


def assert_same_sweep(a, b):
    """Same runs, same configurations, same accuracies, same final parameters, bit for bit."""
    rows_a, rows_b = read_table(a), read_table(b)
    assert [r["run"] for r in rows_a] == [r["run"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "data"} == \
            {k: v for k, v in rb.items() if k != "data"}
    phi_a, phi_b = final_parameters(a), final_parameters(b)
    assert phi_a.keys() == phi_b.keys()
    for name in phi_a:
        np.testing.assert_array_equal(phi_a[name], phi_b[name], err_msg=name)


def test_sweep_writes_one_run_per_point_a_table_and_a_plot(tmp_path, synthetic_omniglot,
                                                          capsys):
    pytest.importorskip("matplotlib", reason="plotting is the optional [plot] extra")
    out = tmp_path / "sweep"
    args = sweep_args(synthetic_omniglot, out, tmp_path / "cache", "--meta-iters", "3",
                      "--eval-samples", "4", "--workers", "2", *GRID)
    assert main(args) == 0
    rows = read_table(out)
    assert [r["run"] for r in rows] == [
        "learning-rate=0.001,meta-step=0.5", "learning-rate=0.001,meta-step=1",
        "learning-rate=0.003,meta-step=0.5", "learning-rate=0.003,meta-step=1"]
    assert [(float(r["learning_rate"]), float(r["meta_step"])) for r in rows] == [
        (0.001, 0.5), (0.001, 1.0), (0.003, 0.5), (0.003, 1.0)]
    # The full configuration of every run, shared flags included.
    assert all(r["classes"] == "3" and r["inner_iters"] == "2" and r["meta_iters"] == "3"
               and r["num_train"] == "8" and r["eval_samples"] == "4" for r in rows)
    assert all(0 <= float(r[c]) <= 1 for r in rows for c in ("train_accuracy", "test_accuracy"))
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # A point is the run 'train' makes with the same flags: same parameters, same accuracy.
    capsys.readouterr()
    single = tmp_path / "single"
    assert main(["train", "omniglot", "--data", str(synthetic_omniglot), "--cache-dir",
                 str(tmp_path / "cache"), *SMALL, "--meta-iters", "3", "--eval-samples", "4",
                 "--learning-rate", "0.003", "--meta-step", "1", "--checkpoint",
                 str(single), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    np.testing.assert_array_equal(load_npz(single / "checkpoint.npz")[0]["phi"],
                                  final_parameters(out)["learning-rate=0.003,meta-step=1"])
    test_line = [line for line in printed.splitlines() if line.startswith("Test accuracy")][0]
    assert test_line.split()[2] == f"{float(rows[3]['test_accuracy']):.4f}"

    # Started again, the sweep finds every run finished and trains nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.npz")}
    assert main(args) == 0
    assert "4 finished, 0 to train" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.npz")} == stamps


def test_sweep_results_do_not_depend_on_the_workers(tmp_path, synthetic_omniglot):
    common = ["--meta-iters", "2", "--eval-samples", "3", "--no-plot", "--sgd",
              "--meta-batch", "2", "--grid", "learning-rate=0.01,0.02"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(sweep_args(synthetic_omniglot, one, tmp_path / "c", *common,
                           "--workers", "1")) == 0
    assert main(sweep_args(synthetic_omniglot, two, tmp_path / "c", *common,
                           "--workers", "2")) == 0
    assert_same_sweep(one, two)


def test_sweep_killed_midway_finishes_only_the_missing_work(tmp_path, synthetic_omniglot):
    common = sweep_args(synthetic_omniglot, None, tmp_path / "cache", "--meta-iters", "30",
                        "--checkpoint-interval", "1", "--eval-samples", "3", "--no-plot",
                        "--workers", "1", "--grid", "meta-step=0.5,1")
    del common[common.index("--out"):common.index("--out") + 2]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(common + ["--out", str(straight)]) == 0

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "minireptile", *common, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=tmp_path)
    first = killed / "meta-step=0.5" / "result.json"
    second = killed / "meta-step=1" / "checkpoint.npz"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if first.exists() and second.exists():
                try:
                    if load_npz(second)[1]["next_iteration"] >= 5:
                        break
                except Exception:  # read while being replaced: look again
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    stopped_at = load_npz(second)[1]["next_iteration"]
    assert 5 <= stopped_at < 30
    assert not (killed / "meta-step=1" / "result.json").exists()
    finished_stamp = first.stat().st_mtime_ns

    again = subprocess.run([sys.executable, "-m", "minireptile", *common, "--out", str(killed)],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "1 finished, 1 to train (1 resuming from a checkpoint)" in again.stdout
    assert "meta-step=1: " in again.stdout
    assert f"resumed at iteration {stopped_at}" in again.stdout
    assert "meta-step=0.5: " not in again.stdout.split("to train")[1].split("\n\n")[0]
    assert first.stat().st_mtime_ns == finished_stamp
    assert_same_sweep(straight, killed)


@pytest.mark.parametrize("grid, message", [
    (["--grid", "learnig-rate=0.1,0.2"], "unknown --grid flag 'learnig-rate'"),
    (["--grid", "meta-step="], "--grid meta-step has an empty list of values"),
    (["--grid", "meta-step=,"], "--grid meta-step has an empty list of values"),
    (["--grid", "meta-step"], "is not FLAG=VALUE"),
    (["--grid", "meta-step=0.5,-1"], "--grid meta-step: expected a positive number, got -1"),
    (["--grid", "sgd=maybe"], "--grid sgd takes true or false, got 'maybe'"),
    (["--grid", "outer=sgd,rmsprop"], "--grid outer: 'rmsprop' is not one of"),
    (["--grid", "meta-step=1", "--grid", "meta-step=2"], "--grid meta-step is given twice"),
    (["--grid", "foml-tail=1,2"], "run foml-tail=1: --foml-tail 1 needs --foml"),
    (["--resume"], "drop --resume"),
    (["--checkpoint", "x"], "drop --checkpoint x"),
])
def test_bad_grid_exits_2_with_one_line_naming_it(tmp_path, synthetic_omniglot, capsys, grid,
                                                  message):
    out = tmp_path / "out"
    code = main(sweep_args(synthetic_omniglot, out, tmp_path / "cache", "--no-plot", *grid))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # rejected before any work


def test_a_worker_that_cannot_read_the_data_names_itself_and_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(sweep_args(missing, tmp_path / "out", tmp_path / "cache", "--no-plot",
                           "--workers", "2", "--grid", "meta-step=0.5,1"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "worker" in err and f"cannot read the data path {str(missing)!r}" in err
