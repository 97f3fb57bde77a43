"""What a user gets: minireptile against PyTorch as installed, pinned, and on a busy machine.

    python benchmarks/bench_defaults.py [--quick] [--only WORKLOAD ...] [--eval-tasks 1000]

Three configurations, measured side by side in one run:

default  no ``*_NUM_THREADS`` variable on either side, PyTorch's default thread count:
         what a user gets after ``pip install``;
pinned   both sides on one thread (minireptile ``--threads 1``, PyTorch
         ``torch.set_num_threads(1)`` and OMP/MKL variables set to 1);
busy     the default configuration while one other CPU-bound process runs.

Workloads (each side in fresh processes; medians of several blocks, and the ratio
PyTorch time / minireptile time, so > 1 means minireptile is faster):

cnn10, cnn50   one Omniglot training step (forward, backward, Adam with β1 = 0) at batch 10/50;
omniglot       one meta-iteration of the paper's 5-way 1-shot Omniglot setting (train shots 10,
               inner batch 10, 5 inner Adam steps, meta-batch 5) on the same tasks;
miniimagenet   one meta-iteration of the paper's 5-way 5-shot Mini-ImageNet setting (84×84,
               train shots 15, inner batch 10, 8 inner Adam steps, meta-batch 5), generated
               images, the same architecture in PyTorch;
train          ``minireptile train omniglot`` with the paper's 5-way 1-shot flags as a whole
               process, (60 − 10 iterations) / 50: a meta-iteration including the evaluation
               every 10 iterations (minireptile only; the PyTorch loop has none);
sine           whole processes: ``minireptile sine --iterations 3000 --eval-tasks 1000``
               against the seed's PyTorch script (``seed_sine_torch.py``) with the same
               arguments, and the default job ``minireptile sine`` (30,000 iterations and
               1,000 held-out tasks) on its own;
eval           ``minireptile eval omniglot`` on ``--eval-tasks`` tasks of the test split with
               ``--workers 1`` and ``--workers 2``: tasks per second and the speedup;
memory         the peak proportional set size (PSS: shared pages split between the processes
               that share them) of ``eval omniglot`` and all its workers, 1 against 2 workers.

Omniglot tasks come from the real small sets in ``../shared/data/omniglot`` when present,
else from random binary images. The PyTorch side is skipped when torch is not installed
(``pip install torch==2.13.0``).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import call_times

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0].parent / "shared" / "data" / "omniglot"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
CONFIGURATIONS = ("default", "pinned", "busy")
WORKLOADS = ("cnn10", "cnn50", "omniglot", "miniimagenet", "train", "sine", "eval", "memory")
PAPER_OMNIGLOT = ["--shots", "1", "--inner-batch", "10", "--inner-iters", "5",
                  "--meta-step", "1", "--meta-batch", "5", "--eval-batch", "5",
                  "--eval-iters", "50", "--learning-rate", "0.001", "--meta-step-final", "0",
                  "--train-shots", "10", "--transductive"]


def environment(configuration):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if configuration == "pinned":
        env.update({v: "1" for v in THREAD_VARIABLES})
    env["PYTHONPATH"] = str(HERE)
    return env


class Competitor:
    """One other CPU-bound process, for the ``busy`` configuration."""

    def __init__(self, active):
        self.proc = None
        if active:
            # Spins until its parent is gone, so a benchmark killed outright leaves none behind.
            self.proc = subprocess.Popen([sys.executable, "-c", "import os\nparent = os.getppid()\n"
                                          "while os.getppid() == parent: pass"])
            time.sleep(0.3)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Workers: each prints one JSON line, the seconds of every repetition


def worker_step(side, batch, repeats):
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.random((batch, 28, 28)) < 0.2).astype(np.float32)
    y = np.arange(batch) % 5
    if side == "minireptile":
        from minireptile.algorithms.optim import Adam
        from minireptile.models.cnn import omniglot_cnn

        model = omniglot_cnn(5)
        phi = model.init_params(rng)
        grad = np.empty_like(phi)
        adam = Adam(0.001, beta1=0.0)

        def step():
            model.loss_and_grad(phi, x, y, out=grad)
            adam.step(phi, grad)
    else:
        import torch
        import torch.nn.functional as F
        from _torch_omniglot import OmniglotNet

        net = OmniglotNet()
        opt = torch.optim.Adam(net.parameters(), lr=0.001, betas=(0.0, 0.999))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xt), yt, reduction="sum").backward()
            opt.step()
    return call_times(step, repeats)


def worker_meta(side, dataset, repeats):
    """Seconds per meta-iteration on the same task stream on both sides."""
    import numpy as np

    from minireptile.problems.tasks import mini_batches, sample_task

    if dataset == "omniglot":
        classes, shots, batch, iters = omniglot_classes(), 10, 10, 5
    else:
        classes, shots, batch, iters = miniimagenet_classes(), 15, 10, 8
    rng = np.random.default_rng(0)
    stream = []
    for _ in range(repeats + 1):
        tasks = [[(b.images, b.labels) for b in mini_batches(
            sample_task(classes, 5, shots, rng), batch, iters, False, rng)] for _ in range(5)]
        stream.append(tasks)
    if side == "minireptile":
        from minireptile.models.cnn import miniimagenet_cnn, omniglot_cnn
        from minireptile.problems.fewshot import FewShotLearner, InnerConfig
        from minireptile.problems.tasks import Task

        model = omniglot_cnn(5) if dataset == "omniglot" else miniimagenet_cnn(5)
        learner = FewShotLearner(model, model.init_params(rng),
                                 InnerConfig(learning_rate=0.001, batch=batch, iters=iters))

        def meta_iteration(tasks):
            # train_step's work on tasks drawn in advance: adapt each, average, update.
            updates = []
            for batches in tasks:
                w = learner.phi.copy()
                start = w.copy()
                for images, labels in batches:
                    learner._step(w, Task(images, labels))
                updates.append(w - start)
            learner.outer.update(learner.phi, -np.mean(updates, axis=0, dtype=np.float32),
                                 1.0)
    else:
        import torch

        if dataset == "omniglot":
            from _torch_omniglot import OmniglotNet as Net
        else:
            from _torch_miniimagenet import MiniImageNetNet as Net
        from _torch_reptile import reptile_meta_iteration

        torch.manual_seed(0)
        net = Net()
        params = list(net.parameters())
        opt = torch.optim.Adam(params, lr=0.001, betas=(0.0, 0.999), eps=1e-8)

        def meta_iteration(tasks):
            reptile_meta_iteration(net, opt, tasks, 1.0)

    meta_iteration(stream[0])
    times = []
    for tasks in stream[1:]:
        start = time.perf_counter()
        meta_iteration(tasks)
        times.append(time.perf_counter() - start)
    return times


def omniglot_classes():
    import numpy as np

    from minireptile.data import ClassSet, ImagePool
    from minireptile.data.omniglot import omniglot_splits

    sources = omniglot_sources()
    if sources:
        train, _ = omniglot_splits(sources, np.random.default_rng(0), num_train=200,
                                   progress=False)
        return train
    rng = np.random.default_rng(0)
    images = [(rng.random((20, 28, 28)) < 0.2).astype(np.uint8) for _ in range(100)]
    files = [[f"c{i}/{j}" for j in range(20)] for i in range(100)]
    pool = ImagePool.from_classes([f"A/c{i:03d}" for i in range(100)], images, files, 1.0,
                                  (28, 28))
    return ClassSet(pool)


def miniimagenet_classes():
    import numpy as np

    from minireptile.data import ClassSet, ImagePool

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 84, 84, 3), dtype=np.uint8) for _ in range(10)]
    files = [[f"n{i}/{j}" for j in range(16)] for i in range(10)]
    pool = ImagePool.from_classes([f"n{i:08d}" for i in range(10)], images, files, 1 / 255,
                                  (84, 84, 3))
    return ClassSet(pool)


def omniglot_sources():
    sources = [DATA / "images_background_small1.zip", DATA / "images_background_small2.zip"]
    return [str(p) for p in sources] if all(p.is_file() for p in sources) else None


# ---------------------------------------------------------------------------------------------
# The parent: runs workers and commands in each configuration


def run_worker(configuration, *args):
    cmd = [sys.executable, __file__, "--worker", *map(str, args)]
    with Competitor(configuration == "busy"):
        done = subprocess.run(cmd, env=environment(configuration), capture_output=True,
                              text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_command(configuration, cmd, cwd):
    """Wall-clock seconds of a whole process."""
    with Competitor(configuration == "busy"):
        start = time.perf_counter()
        done = subprocess.run(cmd, env=environment(configuration), capture_output=True,
                              text=True, cwd=cwd)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return seconds


def peak_pss_mib(cmd, cwd, env):
    """Run ``cmd``; the peak over time of the summed PSS of it and its children, in MiB."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        total = 0
        for pid in [proc.pid] + children(proc.pid):
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            except (OSError, StopIteration):
                pass
        peak = max(peak, total)
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    return peak / 1024


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            direct = [int(c) for c in f.read().split()]
    except OSError:
        return []
    return direct + [g for c in direct for g in children(c)]


def minireptile_command(configuration, *args):
    threads = ["--threads", "1"] if configuration == "pinned" else []
    return [sys.executable, "-m", "minireptile", *args, *threads]


def row(table, workload, configuration, ours, theirs=None, unit="ms", note=""):
    table.append(dict(workload=workload, configuration=configuration, ours=ours,
                      theirs=theirs, unit=unit, note=note))
    scale = 1000 if unit == "ms" else 1
    text = f"{workload:<13} {configuration:<8} minireptile {scale * ours:9.2f} {unit}"
    if theirs is not None:
        text += f"   PyTorch {scale * theirs:9.2f} {unit}   ratio {theirs / ours:5.2f}x"
    print(text + (f"   {note}" if note else ""), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=WORKLOADS)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--blocks", type=int, default=3, help="processes per side and cell")
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "step":
            side, batch, repeats = rest
            print(json.dumps(worker_step(side, int(batch), int(repeats))))
        else:
            side, dataset, repeats = rest
            print(json.dumps(worker_meta(side, dataset, int(repeats))))
        return

    has_torch = subprocess.run([sys.executable, "-c", "import torch"],
                               capture_output=True).returncode == 0
    blocks = 2 if args.quick else args.blocks
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average "
          f"{os.getloadavg()[0]:.2f}; PyTorch {'present' if has_torch else 'absent'}; "
          f"Omniglot tasks from {'the real small sets' if omniglot_sources() else 'random images'}")
    sides = ["minireptile", "torch"] if has_torch else ["minireptile"]
    table = []

    def compare(workload, configuration, worker_args, repeats):
        times = {side: [] for side in sides}
        for _ in range(blocks):  # sides alternate, so background load hits both alike
            for side in sides:
                times[side].append(statistics.median(
                    run_worker(configuration, worker_args[0], side, *worker_args[1:], repeats)))
        ours = statistics.median(times["minireptile"])
        theirs = statistics.median(times["torch"]) if has_torch else None
        row(table, workload, configuration, ours, theirs)

    for configuration in CONFIGURATIONS:
        if "cnn10" in args.only:
            compare("cnn10", configuration, ("step", 10), 30 if args.quick else 100)
        if "cnn50" in args.only:
            compare("cnn50", configuration, ("step", 50), 10 if args.quick else 40)
        if "omniglot" in args.only:
            compare("omniglot", configuration, ("meta", "omniglot"), 5 if args.quick else 15)
        if "miniimagenet" in args.only:
            compare("miniimagenet", configuration, ("meta", "miniimagenet"),
                    2)

    with tempfile.TemporaryDirectory() as tmp:
        data = omniglot_sources()
        if data is None:
            sys.path.insert(0, str(HERE.parent / "tests"))
            from conftest import write_synthetic_omniglot

            data = [str(write_synthetic_omniglot(Path(tmp) / "data", characters=20,
                                                 drawings=20))]
        data_flags = [x for p in data for x in ("--data", p)]
        cache = ["--cache-dir", os.path.join(tmp, "cache"), "--no-progress"]

        if "train" in args.only:
            for configuration in CONFIGURATIONS:
                per_iteration = []
                for block in range(blocks):
                    seconds = {}
                    for iters in (10, 60):
                        cmd = minireptile_command(
                            configuration, "train", "omniglot", *data_flags, "--num-train",
                            "200", *PAPER_OMNIGLOT, "--meta-iters", str(iters),
                            "--eval-samples", "0", "--checkpoint",
                            os.path.join(tmp, f"t{configuration}{block}{iters}"), *cache)
                        seconds[iters] = time_command(configuration, cmd, tmp)
                    per_iteration.append((seconds[60] - seconds[10]) / 50)
                row(table, "train", configuration, statistics.median(per_iteration),
                    note="per meta-iteration, evaluation every 10 included")

        if "sine" in args.only:
            for configuration in CONFIGURATIONS:
                ours, theirs = [], []
                for _ in range(blocks):
                    ours.append(time_command(configuration, minireptile_command(
                        configuration, "sine", "--iterations", "3000", "--no-progress"), tmp))
                    if has_torch:
                        theirs.append(time_command(configuration, [
                            sys.executable, str(HERE / "seed_sine_torch.py"),
                            "--iterations", "3000"], tmp))
                row(table, "sine 3000", configuration, statistics.median(ours),
                    statistics.median(theirs) if theirs else None, unit="s",
                    note="whole process, 1,000 held-out tasks")
                default_job = [time_command(configuration, minireptile_command(
                    configuration, "sine", "--no-progress"), tmp) for _ in range(blocks)]
                row(table, "sine default", configuration, statistics.median(default_job),
                    unit="s", note="whole process: 30,000 iterations, 1,000 held-out tasks")

        run = os.path.join(tmp, "evalrun")
        if "eval" in args.only or "memory" in args.only:
            subprocess.run(minireptile_command("default", "train", "omniglot", *data_flags,
                                               "--num-train", "200", *PAPER_OMNIGLOT,
                                               "--meta-iters", "1", "--eval-samples", "0",
                                               "--checkpoint", run, *cache),
                           check=True, capture_output=True, env=environment("default"))
        if "eval" in args.only:
            for configuration in ("default", "busy"):
                rates = {}
                for workers in (1, 2):
                    seconds = time_command(configuration, minireptile_command(
                        configuration, "eval", "omniglot", *data_flags, "--num-train", "200",
                        "--checkpoint", run, "--split", "test", "--eval-samples",
                        str(args.eval_tasks), "--workers", str(workers), *cache), tmp)
                    shutil.rmtree(os.path.join(run, "evaluations"))
                    rates[workers] = args.eval_tasks / seconds
                    print(f"eval          {configuration:<8} {workers} worker(s): "
                          f"{rates[workers]:.2f} tasks/s", flush=True)
                table.append(dict(workload="eval", configuration=configuration,
                                  rates=rates, speedup=rates[2] / rates[1]))
                print(f"eval          {configuration:<8} speedup 2 workers / 1: "
                      f"{rates[2] / rates[1]:.2f}x", flush=True)

        if "memory" in args.only:
            peaks = {}
            for workers in (1, 2):
                peaks[workers] = peak_pss_mib(minireptile_command(
                    "default", "eval", "omniglot", *data_flags, "--num-train", "200",
                    "--checkpoint", run, "--split", "test", "--eval-samples", "200",
                    "--workers", str(workers), *cache), tmp, environment("default"))
                shutil.rmtree(os.path.join(run, "evaluations"))
            table.append(dict(workload="memory", peaks=peaks))
            print(f"memory        peak PSS of eval and its workers: 1 worker {peaks[1]:.0f} MiB, "
                  f"2 workers {peaks[2]:.0f} MiB ({peaks[2] / peaks[1]:.2f}x)", flush=True)

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
