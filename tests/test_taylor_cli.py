"""``minireptile experiment taylor`` end to end on sine (small), on synthetic Omniglot, and its
refusals of bad input (one line, exit 2)."""

import csv

import numpy as np
import pytest

from minireptile.cli import main


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sine_taylor_writes_csv_and_plot_and_the_residual_falls_like_alpha_squared(tmp_path,
                                                                                  capsys):
    out = tmp_path / "taylor"
    assert main(["experiment", "taylor", "--sine", "--draws", "4", "--train-iters", "20",
                 "--k", "2,3", "--lrs", "0.001,0.002,0.004", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "MAML/FOMAML" in printed
    rows = read_rows(out / "taylor.csv")
    assert (out / "taylor.png").stat().st_size > 10_000
    # 2 points × 2 k × 3 algorithms × 3 step sizes
    assert len(rows) == 36
    for point in ("init", "Reptile, 20 iterations"):
        for k in ("2", "3"):
            for name in ("reptile", "foml", "maml"):
                line = sorted((r for r in rows if r["point"] == point and r["k"] == k
                               and r["algorithm"] == name), key=lambda r: float(r["lr"]))
                lrs = [float(r["lr"]) for r in line]
                residual = [float(r["residual"]) for r in line]
                slope = np.polyfit(np.log(lrs), np.log(residual), 1)[0]
                assert 1.8 <= slope <= 2.2, (point, k, name, residual)


def test_omniglot_taylor_on_synthetic_data(tmp_path, synthetic_omniglot, capsys):
    out = tmp_path / "taylor"
    assert main(["experiment", "taylor", "--data", str(synthetic_omniglot), "--num-train", "8",
                 "--classes", "3", "--shots", "4", "--inner-batch", "4", "--k", "2,3",
                 "--draws", "2", "--train-iters", "2", "--lrs", "0.001,0.002",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-plot",
                 "--no-progress"]) == 0
    rows = read_rows(out / "taylor.csv")
    assert {r["point"] for r in rows} == {"init", "Reptile, 2 iterations"}
    assert all(float(r["residual"]) > 0 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--draws", "2"], "give --data (Omniglot) or --sine"),
    (["--sine", "--lrs", "0.01"], "at least two step sizes"),
    (["--sine", "--k", "6"], "need 60 points"),
    (["--sine", "--checkpoint", "x"], "with --sine use --train-iters"),
])
def test_taylor_rejects_bad_input_in_one_line(tmp_path, capsys, args, message):
    assert main(["experiment", "taylor", *args, "--out", str(tmp_path / "t"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_taylor_rejects_a_bad_list(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "taylor", "--sine", "--k", "2,x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "comma-separated list of integers" in err and err.count("\n") == 1
