"""Thread pools and the executor: results never depend on ``--workers`` or ``--threads``."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.errors import InputError
from minireptile.npzfile import load_npz
from minireptile.parallel import make_executor
from minireptile.parallel.executor import ProcessExecutor, SerialExecutor, check_workers, task_seeds

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def clean_environment(**extra):
    """The environment of a user who set no thread variable."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(extra, PYTHONUNBUFFERED="1")
    return env


def cli(args, cwd, **env):
    """Run the installed command in a fresh process (outside the source tree)."""
    return subprocess.run([sys.executable, "-m", "minireptile", *args], capture_output=True,
                          text=True, cwd=cwd, env=clean_environment(**env), timeout=600)


# -- the executor ----------------------------------------------------------------------------

def scaled(factor, offset, item):
    return factor * item + offset


def fails_on_three(item):
    if item == 3:
        raise ValueError("three is not allowed")
    return item


def length_of(shared, item):
    return len(shared) + item


def test_maps_return_results_in_item_order_on_any_executor():
    items = list(range(23))
    expected = [2 * i + 1 for i in items]
    assert SerialExecutor().map(scaled, items, 2, 1) == expected
    with ProcessExecutor(2) as executor:
        assert executor.map(scaled, items, 2, 1) == expected
        assert list(executor.imap(scaled, items, 2, 1)) == expected
        pending = executor.submit(scaled, items, 2, 1)
        assert pending.result() == expected
        assert executor.map(scaled, [], 2, 1) == []


def test_shared_objects_reach_workers_started_before_they_were_shared():
    with ProcessExecutor(2) as executor:
        first = executor.share(list(range(5)))
        assert executor.map(length_of, [0, 1], first) == [5, 6]
        # Shared after the workers started: the pool is forked again and sees it.
        second = executor.share(list(range(7)))
        assert executor.map(length_of, [0, 1], second) == [7, 8]
        assert executor.map(length_of, [0], first) == [5]


def test_a_workers_error_reaches_the_caller_and_the_executor_still_works():
    with ProcessExecutor(2) as executor:
        with pytest.raises(ValueError, match="three is not allowed"):
            executor.map(fails_on_three, range(8))
        assert executor.map(fails_on_three, [1, 2]) == [1, 2]


def test_make_executor_and_bad_worker_counts():
    assert isinstance(make_executor(1), SerialExecutor)
    with make_executor(2) as executor:
        assert isinstance(executor, ProcessExecutor) and executor.workers == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="workers must be a positive integer"):
            check_workers(bad)


def test_task_seeds_depend_only_on_the_generator():
    a = task_seeds(np.random.default_rng(4), 6)
    b = task_seeds(np.random.default_rng(4), 6)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and len(set(a.tolist())) == 6
    with pytest.raises(InputError, match="Generator"):
        task_seeds(4, 6)


# -- thread pools ----------------------------------------------------------------------------

POOL_SIZES = """
import json, sys
import numpy as np
import minireptile
if len(sys.argv) > 1:
    minireptile.set_threads(int(sys.argv[1]))
from minireptile.models.cnn import omniglot_cnn
model = omniglot_cnn(5)
phi = model.init_params(np.random.default_rng(0))
x = np.random.default_rng(1).random((10, 28, 28)).astype(np.float32)
model.loss_and_grad(phi, x, np.arange(10) % 5)
np.ones((300, 300)) @ np.ones((300, 300))        # NumPy's own BLAS, used
from threadpoolctl import threadpool_info
print(json.dumps([(p["internal_api"], p["filepath"], p["num_threads"])
                  for p in threadpool_info()]))
"""


def pool_sizes(tmp_path, *args, **env):
    out = subprocess.run([sys.executable, "-c", POOL_SIZES, *args], capture_output=True,
                         text=True, cwd=tmp_path, env=clean_environment(**env), timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_no_pool_is_larger_than_the_threads_asked_for(tmp_path):
    pools = pool_sizes(tmp_path)
    apis = [api for api, _, _ in pools]
    # NumPy's and SciPy's OpenBLAS (the one the Numba kernels call) are both loaded...
    assert apis.count("openblas") >= 2, pools
    # ...and with nothing set, every pool has one thread.
    assert all(n == 1 for _, _, n in pools), pools
    assert all(n <= 2 for _, _, n in pool_sizes(tmp_path, "2")), pools
    # An explicit setting of the user's is respected.
    assert all(n == 2 for _, _, n in pool_sizes(tmp_path, OPENBLAS_NUM_THREADS="2"))


# -- the same results for every --workers and --threads ----------------------------------------

def train_args(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--num-train", "8", "--classes", "3",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "2",
            "--meta-iters", "12", "--eval-interval", "3", "--eval-iters", "2",
            "--eval-samples", "12", "--checkpoint", str(checkpoint), "--no-progress",
            "--cache-dir", str(checkpoint.parent / "cache"), *extra]


def run_state(folder):
    """Arrays of the checkpoint, and the metrics without wall-clock seconds."""
    arrays, meta = load_npz(folder / "checkpoint.npz")
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        del r["seconds"]
    return arrays, meta["next_iteration"], records


def result_lines(stdout):
    return [line for line in stdout.splitlines()
            if "accuracy:" in line or line.startswith("after ")]


def assert_same_runs(a, b):
    arrays_a, next_a, metrics_a = run_state(a)
    arrays_b, next_b, metrics_b = run_state(b)
    assert next_a == next_b
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert metrics_a == metrics_b


@pytest.mark.parametrize("algorithm", [
    [],                                         # inner Adam: tasks in order, evaluation aside
    ["--sgd", "--meta-batch", "3"],             # inner SGD: a meta-batch's tasks in parallel
])
def test_training_and_evaluation_do_not_depend_on_workers(tmp_path, synthetic_omniglot,
                                                          algorithm):
    variants = {"w1": ["--workers", "1"], "w2": ["--workers", "2"]}
    outputs = {}
    for name, flags in variants.items():
        done = cli(train_args(synthetic_omniglot, tmp_path / name, *algorithm, *flags), tmp_path)
        assert done.returncode == 0, done.stderr
        outputs[name] = result_lines(done.stdout)
    assert len(outputs["w1"]) == 2 and outputs["w1"] == outputs["w2"]
    assert_same_runs(tmp_path / "w1", tmp_path / "w2")

    evaluations = [
        cli(["eval", "omniglot", "--data", str(synthetic_omniglot), "--num-train", "8",
             "--checkpoint", str(tmp_path / "w1"), "--eval-samples", "9", "--no-progress",
             "--cache-dir", str(tmp_path / "cache"), "--workers", str(workers)], tmp_path)
        for workers in (1, 2)]
    assert all(e.returncode == 0 for e in evaluations), [e.stderr for e in evaluations]
    lines = [result_lines(e.stdout) for e in evaluations]
    assert len(lines[0]) == 2 and lines[0] == lines[1]


def test_sine_does_not_depend_on_workers_or_threads(tmp_path):
    # The sine network's products are the package's own loops, not BLAS: here even the
    # thread count leaves every bit in place.
    common = ["sine", "--iterations", "300", "--eval-tasks", "40", "--no-progress"]
    runs = [cli(common + flags + ["--save", str(tmp_path / f"{i}.npz")], tmp_path)
            for i, flags in enumerate((["--workers", "1"], ["--workers", "2"],
                                       ["--threads", "2", "--workers", "1"]))]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    lines = [result_lines(r.stdout) for r in runs]
    assert len(lines[0]) == 4 and lines[0] == lines[1] == lines[2]
    params = [load_npz(tmp_path / f"{i}.npz")[0]["params"] for i in range(3)]
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(params[0], params[2])


def test_experiment_variants_do_not_depend_on_workers(tmp_path, synthetic_omniglot):
    def experiment(name, workers):
        return cli(["experiment", "gradient-combinations", "--data", str(synthetic_omniglot),
                    "--train-alphabet", "Alphabet0", "--combinations", "g1,g2,g1+g2",
                    "--meta-iters", "3", "--out", str(tmp_path / name), "--no-plot",
                    "--no-progress", "--cache-dir", str(tmp_path / "cache"),
                    "--workers", str(workers)], tmp_path)

    one, two = experiment("one", 1), experiment("two", 2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one" / "curves.csv").read_text() == \
        (tmp_path / "two" / "curves.csv").read_text()
    for variant in ("g1", "g2", "g1_g2"):
        assert_same_runs(tmp_path / "one" / variant, tmp_path / "two" / variant)


def test_run_killed_with_two_workers_resumes_bit_identically(tmp_path, synthetic_omniglot):
    flags = ["--sgd", "--meta-batch", "2", "--meta-iters", "60", "--checkpoint-interval", "1",
             "--workers", "2", "--eval-samples", "0"]
    straight = cli(train_args(synthetic_omniglot, tmp_path / "straight", *flags), tmp_path)
    assert straight.returncode == 0, straight.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minireptile", *train_args(synthetic_omniglot, killed, *flags)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env=clean_environment(), start_new_session=True)
    checkpoint = killed / "checkpoint.npz"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if load_npz(checkpoint)[1]["next_iteration"] >= 10:
                break
        except (InputError, OSError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)           # the command alone: its workers follow it
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and children_of_session(proc.pid):
        time.sleep(0.2)
    assert not children_of_session(proc.pid), "workers outlived the killed command"
    stopped_at = load_npz(checkpoint)[1]["next_iteration"]
    assert 10 <= stopped_at < 60

    resumed = cli(train_args(synthetic_omniglot, killed, *flags, "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {stopped_at}" in resumed.stdout
    assert_same_runs(tmp_path / "straight", killed)


def children_of_session(session):
    """Processes still alive in the session that the killed command led."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    alive.append(int(entry))
            except OSError:
                pass
    return alive


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [["--workers", "0"], ["--workers", "-1"],
                                   ["--workers", "two"], ["--threads", "0"],
                                   ["--threads", "1.5"]])
def test_bad_worker_and_thread_counts_are_one_line_errors(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sine", "--iterations", "1", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flags[0] in err and "positive integer" in err, err


# -- the final evaluation resumes --------------------------------------------------------------

def test_interrupted_final_evaluation_resumes_with_the_same_result(tmp_path, synthetic_omniglot):
    import shutil

    trained = cli(train_args(synthetic_omniglot, tmp_path / "run", "--eval-samples", "0"),
                  tmp_path)
    assert trained.returncode == 0, trained.stderr
    shutil.copytree(tmp_path / "run", tmp_path / "copy")

    def evaluate(folder, popen=False):
        args = ["eval", "omniglot", "--data", str(synthetic_omniglot), "--num-train", "8",
                "--checkpoint", str(folder), "--eval-samples", "300", "--eval-iters", "5",
                "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--workers", "2"]
        if popen:
            return subprocess.Popen([sys.executable, "-m", "minireptile", *args],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    cwd=tmp_path, env=clean_environment(),
                                    start_new_session=True)
        return cli(args, tmp_path)

    straight = evaluate(tmp_path / "run")
    assert straight.returncode == 0, straight.stderr

    from minireptile.runs import evaluation

    records = tmp_path / "copy" / evaluation.RECORD_FOLDER
    proc = evaluate(tmp_path / "copy", popen=True)
    deadline, done = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            (record,) = records.glob("[!.]*.npz")  # not a temporary file being written
            arrays, _ = load_npz(record)
            done = sum(int(np.sum(a >= 0)) for a in arrays.values())
        except (InputError, OSError, ValueError):  # ValueError: no record file yet
            done = 0
        if done > 0:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < done < 600

    resumed = evaluate(tmp_path / "copy")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the evaluation" in resumed.stdout
    assert result_lines(resumed.stdout) == result_lines(straight.stdout)
    assert len(result_lines(straight.stdout)) == 2
