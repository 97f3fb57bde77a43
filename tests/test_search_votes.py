"""benchmarks/search_votes.py: its whole vote is what ``eval omniglot`` prints for the same
ensemble, a saved file re-prints the same table, a file of other settings is refused, and
the one-to-one assignment is the most probable one."""

import importlib.util
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_omniglot
from hypothesis import given, settings
from hypothesis import strategies as st

from minireptile.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_votes.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("search_votes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_votes = _load_script()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny within-alphabet runs of other seeds on the same classes."""
    root = tmp_path_factory.mktemp("votes")
    data = write_synthetic_omniglot(root / "data", alphabets=3, characters=6, drawings=4)
    runs = []
    for seed in ("0", "1"):
        run = root / f"run{seed}"
        assert main(["train", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
                     "--within-alphabet", "--classes", "4", "--shots", "1",
                     "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "1",
                     "--meta-iters", "2", "--eval-iters", "1", "--eval-batch", "4",
                     "--eval-interval", "1", "--eval-samples", "2", "--augment",
                     "--transductive", "--seed", seed, "--checkpoint", str(run),
                     "--no-progress", "--workers", "1", "--cache-dir",
                     str(root / "cache")]) == 0
        runs.append(run)
    return data, runs


VOTE = ["--finetunings", "2", "--query-views", "2", "--eval-iters", "2", "--eval-samples", "6",
        "--workers", "1"]


def _table(out):
    """The printed accuracies: {(networks, fine-tunings, query views): percent}."""
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+) ±", out, re.MULTILINE)
    return {tuple(map(int, row[:3])): float(row[3]) for row in rows}


def _eval_percent(data, runs, capsys, *extra):
    args = ["eval", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
            "--checkpoint", str(runs[0]), "--split", "test", "--eval-samples", "6",
            "--eval-augment", "--eval-iters", "2", "--no-progress", "--workers", "1",
            *extra]
    capsys.readouterr()
    assert main(args) == 0
    accuracy = re.search(r"accuracy: ([\d.]+)", capsys.readouterr().out).group(1)
    return round(100 * float(accuracy), 1)


def test_the_whole_vote_is_what_eval_prints_and_a_saved_file_reprints_it(two_runs, tmp_path,
                                                                         capsys):
    data, runs = two_runs
    saved = tmp_path / "votes.npz"
    run_flags = [part for run in runs for part in ("--run", str(run))]
    assert search_votes.main(run_flags + VOTE + ["--save", str(saved)]) == 0
    printed = capsys.readouterr().out
    table = _table(printed)
    assert set(table) >= {(1, 1, 0), (2, 2, 2)}
    # 6 tasks of 4 queries: accuracies are multiples of 1/24, so one decimal tells them apart.
    assert table[(2, 2, 2)] == _eval_percent(data, runs, capsys, "--ensemble", str(runs[1]),
                                             "--finetunings", "2", "--query-views", "2")
    assert table[(1, 1, 0)] == _eval_percent(data, runs, capsys)

    assert search_votes.main(run_flags + VOTE + ["--load", str(saved)]) == 0
    # The same report, without the data's description (--load reads no images).
    reprinted = capsys.readouterr().out
    assert "the whole vote" in reprinted and printed.endswith(reprinted)
    # Other ranges, settings or networks than the file's are refused, naming the mismatch.
    with pytest.raises(SystemExit, match="distortion ranges"):
        search_votes.main(run_flags + VOTE + ["--load", str(saved),
                                              "--augment-rotation", "14"])
    with pytest.raises(SystemExit, match="eval iters"):
        search_votes.main(run_flags + VOTE + ["--load", str(saved), "--eval-iters", "3"])
    with pytest.raises(SystemExit, match="eval batch"):
        search_votes.main(run_flags + VOTE + ["--load", str(saved), "--eval-batch", "8"])
    with pytest.raises(SystemExit, match="other networks"):
        search_votes.main(["--run", str(runs[1]), "--run", str(runs[0])] + VOTE
                          + ["--load", str(saved)])


def test_another_fine_tuning_batch_is_the_one_eval_uses(two_runs, capsys):
    data, runs = two_runs
    capsys.readouterr()
    assert search_votes.main(["--run", str(runs[0]), "--eval-batch", "8"] + VOTE) == 0
    printed = capsys.readouterr().out
    assert "2 fine-tuning steps of 8 with" in printed
    # A batch of 8 spans the 4 support images twice: other draws than the run's batch of 4.
    assert _table(printed)[(1, 2, 2)] == _eval_percent(data, runs, capsys, "--eval-batch", "8",
                                                        "--finetunings", "2",
                                                        "--query-views", "2")


def test_bad_ranges_and_missing_runs_are_one_line_exits(two_runs, tmp_path, capsys):
    _, runs = two_runs
    with pytest.raises(SystemExit) as bad_range:
        search_votes.main(["--run", str(runs[0]), "--augment-rotation", "200"] + VOTE)
    assert bad_range.value.code == 2
    assert ("argument --augment-rotation: expected a number in [0, 180), got 200"
            in capsys.readouterr().err)
    for flag, value, accepted in (("--eval-iters", "0", "a positive integer"),
                                  ("--finetunings", "0", "a positive integer"),
                                  ("--query-views", "-1", "an integer >= 0")):
        with pytest.raises(SystemExit) as bad_count:
            search_votes.main(["--run", str(runs[0])] + VOTE + [flag, value])
        assert bad_count.value.code == 2
        assert (f"argument {flag}: expected {accepted}, got {value}"
                in capsys.readouterr().err)
    with pytest.raises(SystemExit, match="search_votes: .*absent") as missing:
        search_votes.main(["--run", str(tmp_path / "absent")] + VOTE)
    assert "\n" not in str(missing.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5).flatmap(
    lambda n: st.lists(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
                       min_size=n, max_size=n)))
def test_one_to_one_is_the_most_probable_assignment(rows):
    probabilities = np.array(rows)
    n = len(probabilities)
    assignment = search_votes.one_to_one(probabilities[None])[0]
    assert sorted(assignment) == list(range(n))

    def log_product(classes):
        return np.log(np.maximum(probabilities[np.arange(n), classes],
                                 np.finfo(float).tiny)).sum()

    best = max(log_product(list(p)) for p in itertools.permutations(range(n)))
    assert log_product(assignment) >= best - 1e-9


def test_one_to_one_needs_one_query_per_class():
    with pytest.raises(ValueError, match="3 queries for 2 classes"):
        search_votes.one_to_one(np.full((1, 3, 2), 0.5))
