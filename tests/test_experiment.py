"""``minireptile experiment gradient-combinations`` end to end, and its bad input."""

import csv

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.runs.experiment import folder_name, smooth


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([1, 2, 3], 10), [1, 1.5, 2])


@pytest.mark.parametrize("name, folder", [("g1", "g1"), ("g1+g2", "g1_g2"),
                                          ("(g1+g2)/2", "avg_g1_g2"), ("reptile", "reptile")])
def test_folder_names(name, folder):
    assert folder_name(name) == folder


def test_short_run_writes_curves_plot_and_table(tmp_path, synthetic_omniglot, capsys):
    pytest.importorskip("matplotlib", reason="plotting is the optional [plot] extra")
    out = tmp_path / "exp"
    args = ["experiment", "gradient-combinations", "--data", str(synthetic_omniglot),
            "--num-train", "10", "--combinations", "g1,(g1+g2)/2,g2", "--meta-iters", "3",
            "--smooth", "2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["g1"] * 3 + ["(g1+g2)/2"] * 3 + ["g2"] * 3
    assert [int(r["iteration"]) for r in rows[:3]] == [0, 1, 2]
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    table = printed[printed.index("final accuracy"):].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["g1", "(g1+g2)/2", "g2"]
    # Each variant is a resumable run: a second call finds them finished and redoes nothing.
    before = (out / "g2" / "checkpoint.npz").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "g2" / "checkpoint.npz").stat().st_mtime_ns == before


@pytest.mark.parametrize("extra, message", [
    (["experiment", "gradient-combinations", "--combinations", "g1,g5x"],
     "unknown gradient combination 'g5x'"),
    (["train", "omniglot", "--sgd", "--combination", "g1+g3", "--inner-iters", "2"],
     "needs at least 3 inner steps, got --inner-iters 2"),
    (["train", "omniglot", "--sgd", "--combination", "sideways"],
     "unknown gradient combination"),
    (["train", "omniglot", "--combination", "g1+g2", "--inner-iters", "2"],
     "needs --sgd"),
])
def test_bad_combinations_exit_2_with_one_line(tmp_path, synthetic_omniglot, capsys, extra,
                                               message):
    code = main(extra + ["--data", str(synthetic_omniglot), "--num-train", "8",
                         "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                         *(["--out", str(tmp_path / "o")] if extra[0] == "experiment" else
                           ["--checkpoint", str(tmp_path / "c")])])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
