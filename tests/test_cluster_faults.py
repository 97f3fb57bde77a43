"""A worker lost mid-command: a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, one of them SIGKILLed while it works; the command still finishes, with the numbers
of an undisturbed run. The executor's own tests lose, on purpose, the only copy of data it
scattered (which Dask cannot recompute): the work that needed it still gives its results.

Every process is started in its own session and killed at the end of its test; the scheduler
also stops by itself after 5 idle minutes and the workers 60 s after losing it, so nothing
outlives a crashed test run for long.
"""

import operator
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile.cli import main

SMALL = ["--num-train", "8", "--classes", "3", "--shots", "1", "--train-shots", "2",
         "--inner-batch", "4", "--inner-iters", "2", "--no-progress"]
START_TIMEOUT = 60
RUN_TIMEOUT = 300


class DaskProcesses:
    """A scheduler and two workers started with Dask's own command line."""

    def __init__(self, folder):
        self.distributed = pytest.importorskip(
            "distributed", reason='needs the cluster extra: pip install ".[cluster]"')
        dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
        if dask is None:
            pytest.skip("the 'dask' command is not installed beside this Python")
        self.folder = folder
        self.scheduler_file = str(folder / "scheduler.json")
        self.processes = []
        self.workers = {}
        self.client = None
        self._start(dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", self.scheduler_file, "--idle-timeout", "300",
                    name="scheduler")
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.scheduler_file):
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        for name in ("w0", "w1"):
            self.workers[name] = self._start(
                dask, "worker", "--scheduler-file", self.scheduler_file, "--nthreads", "1",
                "--no-nanny", "--host", "127.0.0.1", "--no-dashboard", "--name", name,
                "--death-timeout", "60", name=name)
        self.client = self.distributed.Client(scheduler_file=self.scheduler_file,
                                              timeout=START_TIMEOUT, set_as_default=False)
        self.client.wait_for_workers(2, timeout=START_TIMEOUT)

    def _start(self, *command, name):
        log = open(self.folder / f"{name}.log", "wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.folder, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def kill_a_worker_while_both_work(self, command):
        """SIGKILL worker w1 as soon as both workers hold work of ``command`` (a Popen)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            assert command.poll() is None, "the command finished before a worker was lost"
            names = {address: info["name"]
                     for address, info in self.client.scheduler_info()["workers"].items()}
            busy = {names.get(a) for a, keys in self.client.processing().items() if keys}
            if busy >= {"w0", "w1"}:
                self.workers["w1"].send_signal(signal.SIGKILL)
                self.workers["w1"].wait()
                return
            time.sleep(0.02)
        raise AssertionError("the workers never both received work")

    def kill_the_holder_of_scattered_data(self):
        """Let the Active Memory Manager cut every scattered key down to one copy (a
        ``dask scheduler`` does so by itself every 2 s, broadcast or not), then SIGKILL the
        worker that holds them; the keys it held."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.client.amm.run_once()
            scattered = {key: holders for key, holders in self.client.who_has().items()
                         if not str(key).startswith("_run_chunk")}
            holders = set().union(*scattered.values())
            if scattered and len(holders) == 1:
                break
            assert time.monotonic() < deadline, f"the copies were not dropped: {scattered}"
            time.sleep(0.1)
        [address] = holders
        held = set(self.client.has_what()[address])
        name = self.client.scheduler_info()["workers"][address]["name"]
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait()
        return held

    def close(self):
        if self.client is not None:
            self.client.close()
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture
def dask_processes(tmp_path):
    folder = tmp_path / "dask"
    folder.mkdir()
    cluster = DaskProcesses(folder)
    try:
        yield cluster
    finally:
        cluster.close()


def _command(*args):
    return subprocess.Popen([sys.executable, "-m", "minireptile", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _finish(command):
    try:
        out, err = command.communicate(timeout=RUN_TIMEOUT)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, err
    return out


def test_evaluation_survives_a_killed_worker(tmp_path, synthetic_omniglot, dask_processes,
                                             capsys):
    data = ["--data", str(synthetic_omniglot), "--cache-dir", str(tmp_path / "cache")]
    run = tmp_path / "run"
    assert main(["train", "omniglot", *data, *SMALL, "--meta-iters", "2", "--eval-samples", "0",
                 "--eval-iters", "2", "--checkpoint", str(run), "--workers", "1"]) == 0
    # Each evaluation gets its own copy of the run: an evaluation records its results there.
    copies = {}
    for name in ("undisturbed", "disturbed"):
        copies[name] = tmp_path / name
        copies[name].mkdir()
        shutil.copy(run / "checkpoint.npz", copies[name])
    evaluation = ["eval", "omniglot", *data, "--num-train", "8", "--eval-iters", "20",
                  "--eval-samples", "120", "--split", "test", "--no-progress"]
    capsys.readouterr()
    assert main(evaluation + ["--checkpoint", str(copies["undisturbed"]),
                              "--workers", "1"]) == 0
    undisturbed = [x for x in capsys.readouterr().out.splitlines() if "accuracy" in x]

    command = _command(*evaluation, "--checkpoint", str(copies["disturbed"]),
                       "--scheduler", dask_processes.scheduler_file)
    dask_processes.kill_a_worker_while_both_work(command)
    disturbed = [x for x in _finish(command).splitlines() if "accuracy" in x]
    assert len(undisturbed) == 1 and disturbed == undisturbed
    assert dask_processes.workers["w0"].poll() is None  # the work moved to the survivor


def test_sweep_survives_a_killed_worker(tmp_path, synthetic_omniglot, dask_processes):
    from test_sweep import assert_same_sweep, sweep_args

    common = ["--meta-iters", "120", "--checkpoint-interval", "1", "--eval-samples", "4",
              "--eval-iters", "2", "--no-plot", "--grid", "meta-step=0.5,1"]
    undisturbed, disturbed = tmp_path / "undisturbed", tmp_path / "disturbed"
    assert main(sweep_args(synthetic_omniglot, undisturbed, tmp_path / "cache", *common,
                           "--workers", "1")) == 0

    command = _command(*sweep_args(synthetic_omniglot, disturbed, tmp_path / "cache", *common,
                                   "--scheduler", dask_processes.scheduler_file))
    dask_processes.kill_a_worker_while_both_work(command)
    out = _finish(command)
    assert "2 runs in" in out
    assert_same_sweep(undisturbed, disturbed)


def test_shared_data_lost_with_its_only_holder_is_sent_again(dask_processes):
    from minireptile.parallel.dask_cluster import DaskExecutor

    data = np.arange(10.0)
    with DaskExecutor(dask_processes.scheduler_file, threads=1) as executor:
        shared = executor.share(data)
        assert executor.map(operator.getitem, range(10), shared) == list(data)
        dask_processes.kill_the_holder_of_scattered_data()
        assert executor.map(operator.getitem, range(10), shared) == list(data)
        assert executor.share(data).key is shared.key


def test_finished_work_lost_with_the_only_copy_of_its_arguments_runs_again(dask_processes):
    from minireptile.parallel.dask_cluster import DaskExecutor

    factor = np.array([2.0])
    with DaskExecutor(dask_processes.scheduler_file, threads=1) as executor:
        pending = executor.submit(operator.mul, range(8), factor)
        executor.client.gather(pending.futures)  # every chunk done
        factor[0] = -1.0  # changed in place, as Φ is: work submitted again must not see it
        held = dask_processes.kill_the_holder_of_scattered_data()
        assert any(str(key).startswith("_run_chunk") for key in held)  # results were lost
        assert [float(x[0]) for x in pending.result()] == [2.0 * i for i in range(8)]
