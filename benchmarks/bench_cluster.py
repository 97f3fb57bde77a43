"""Evaluation tasks, meta-batches and a sweep on a local Dask cluster of 1 and 2 workers,
against the local executors measured in the same run; from the measured per-task cost and
transfer size, an estimate of the speedup on 8 and 64 workers.

    python benchmarks/bench_cluster.py [--tasks 1000] [--eval-iters 5] [--rounds 3]

Needs the cluster extra (``pip install ".[cluster]"``). Data: the real small Omniglot sets
when ``../shared/data/omniglot`` holds them, else random 28×28 binary images. Every worker
(local process or Dask worker) runs with one thread per pool, as the command line does.

Measured, each as the median of ``--rounds``:

* evaluation of ``--tasks`` 5-way 1-shot tasks (``--eval-iters`` fine-tuning steps of 5);
* one meta-iteration of ``--meta-batch`` independent tasks (inner SGD, 5 steps of 10, the
  paper's Omniglot setting), i.e. one map whose arguments (Φ and the optimiser state) are
  scattered once to every worker;
* a 4-point sweep (``minireptile sweep``, 2 × 2 grid, ``--sweep-iters`` meta-iterations and
  20 evaluation tasks per split and point), once per executor, in the first round.

Transfer per meta-iteration is the pickled size of what one map scatters (the learner: model
description, Φ and optimiser state) times the workers; the data set is scattered once per
worker per command. The estimate for N workers:

    T(N) = work / N + per-map overhead (measured on 1 Dask worker) + N × bytes / bandwidth

with the client's bandwidth assumed (``--bandwidth``, default 1 Gbit/s: 117 MB/s).
"""

import argparse
import math
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SOURCES = [DATA / "images_background_small1.zip", DATA / "images_background_small2.zip"]


def load_classes():
    """``(train, test, description, sources)``: real small sets or random images."""
    from minireptile.data import ClassSet, ImagePool
    from minireptile.data.omniglot import omniglot_splits

    if all(p.is_file() for p in SOURCES):
        train, test = omniglot_splits(SOURCES, np.random.default_rng(0), num_train=200,
                                      progress=False)
        return train, test, "real small Omniglot sets", [str(p) for p in SOURCES]
    rng = np.random.default_rng(0)
    images = [(rng.random((20, 28, 28)) < 0.2).astype(np.uint8) for _ in range(100)]
    files = [[f"c{i}/{j}" for j in range(20)] for i in range(100)]
    pool = ImagePool.from_classes([f"A/c{i:03d}" for i in range(100)], images, files, 1.0,
                                  (28, 28))
    return ClassSet(pool), ClassSet(pool), "random binary images (real data not found)", None


def learner(sgd):
    from minireptile.models.cnn import omniglot_cnn
    from minireptile.problems.fewshot import FewShotLearner, InnerConfig

    model = omniglot_cnn(5)
    inner = InnerConfig(learning_rate=0.001, sgd=sgd, batch=10, iters=5)
    return FewShotLearner(model, model.init_params(np.random.default_rng(0)), inner)


def time_evaluation(executor, classes, args):
    from minireptile.problems.fewshot import evaluate_accuracy

    start = time.perf_counter()
    _, _, per_task = evaluate_accuracy(learner(False), classes, 5, 1, 5, args.eval_iters,
                                       args.tasks, np.random.default_rng(1), executor=executor)
    return time.perf_counter() - start, per_task


def time_meta_iterations(executor, classes, args):
    """Seconds per meta-iteration (median over ``--iterations``) and the final Φ."""
    from minireptile.parallel.executor import SerialExecutor

    sgd = learner(True)
    rng = np.random.default_rng(2)
    executor = executor or SerialExecutor()
    seconds = []
    for _ in range(args.iterations + 1):
        start = time.perf_counter()
        sgd.train_step(classes, 5, 10, args.meta_batch, 1.0, rng, executor)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]), sgd.phi.copy()


def time_overhead(executor, items, args):
    """Seconds of a map of no-op items that carries the learner: the executor's own cost
    (scatter of the arguments, chunk scheduling, gathering) without any work."""
    start = time.perf_counter()
    executor.map(_noop, range(items), learner(True), (5, 10))
    return time.perf_counter() - start


def time_sweep(flags, data_flags, args):
    from minireptile.cli import main

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        code = main(["sweep", "omniglot", *data_flags, "--meta-iters", str(args.sweep_iters),
                     "--inner-iters", "5", "--train-shots", "10", "--inner-batch", "10",
                     "--eval-iters", str(args.eval_iters), "--eval-samples", "20",
                     "--eval-interval", "10", "--grid", "learning-rate=0.0005,0.001",
                     "--grid", "meta-step=0.5,1", "--out", out, "--no-plot",
                     "--no-progress", *flags])
        assert code == 0
        seconds = time.perf_counter() - start
        with open(os.path.join(out, "results.csv")) as f:
            table = [line.split(",")[-4:] for line in f.read().splitlines()[1:]]
    return seconds, table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--eval-iters", type=int, default=5)
    parser.add_argument("--meta-batch", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10,
                        help="meta-iterations timed per round")
    parser.add_argument("--sweep-iters", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bandwidth", type=float, default=117e6, help="bytes per second")
    args = parser.parse_args()

    import contextlib
    import io
    import logging

    from distributed import LocalCluster

    from minireptile.parallel.dask_cluster import DaskExecutor
    from minireptile.parallel.executor import ProcessExecutor, SerialExecutor
    from minireptile.parallel.threads import set_threads

    set_threads(1)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    train, test, description, sources = load_classes()
    print(f"data: {description}; {len(train)} training and {len(test)} test classes")
    if sources is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import write_synthetic_omniglot

        folder = Path(tempfile.mkdtemp()) / "data"
        write_synthetic_omniglot(folder, characters=8, drawings=11)
        data_flags = ["--data", str(folder), "--num-train", "10"]
    else:
        data_flags = [x for p in sources for x in ("--data", p)] + ["--num-train", "200"]

    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                host="127.0.0.1", dashboard_address=None,
                                silence_logs=logging.ERROR) for n in (1, 2)}
    executors = {"local, 1 process": SerialExecutor(), "local, 2 processes": ProcessExecutor(2),
                 "Dask, 1 worker": DaskExecutor(clusters[1].scheduler_address),
                 "Dask, 2 workers": DaskExecutor(clusters[2].scheduler_address)}
    sweep_flags = {"local, 1 process": ["--workers", "1"],
                   "local, 2 processes": ["--workers", "2"],
                   "Dask, 1 worker": ["--scheduler", clusters[1].scheduler_address],
                   "Dask, 2 workers": ["--scheduler", clusters[2].scheduler_address]}
    try:
        # Warm-up: compile the kernels in every worker, scatter the data sets once.
        for executor in executors.values():
            executor.map(_warm, range(8), executor.share(test), executor.share(train))
        evaluation = {name: [] for name in executors}
        meta = {name: [] for name in executors}
        sweep = {name: [] for name in executors}
        noop = {(name, items): [] for name in executors for items in (args.tasks,
                                                                      args.meta_batch)}
        results, phis, tables = {}, {}, {}
        names = list(executors)
        for round_ in range(args.rounds):
            # A different order each round, so a change of the machine's load does not
            # always fall on the same executor.
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                executor = executors[name]
                seconds, results[name] = time_evaluation(executor, test, args)
                evaluation[name].append(seconds)
                seconds, phis[name] = time_meta_iterations(executor, train, args)
                meta[name].append(seconds)
                for items in (args.tasks, args.meta_batch):
                    noop[name, items].append(statistics.median(
                        time_overhead(executor, items, args) for _ in range(5)))
                if round_ == 0:
                    with contextlib.redirect_stdout(io.StringIO()):
                        seconds, tables[name] = time_sweep(sweep_flags[name], data_flags, args)
                    sweep[name].append(seconds)
            print(f"round {round_ + 1} of {args.rounds} done (load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
        for name in executors:
            np.testing.assert_array_equal(results[name], results["local, 1 process"])
            np.testing.assert_array_equal(phis[name], phis["local, 1 process"])
            assert tables[name] == tables["local, 1 process"], name
        print("every executor gave bit-identical per-task results, Φ and sweep tables")
    finally:
        for executor in executors.values():
            executor.close()
        for cluster in clusters.values():
            cluster.close()

    median = {k: {n: statistics.median(v) for n, v in d.items()}
              for k, d in (("evaluation", evaluation), ("meta", meta), ("sweep", sweep))}
    base = "local, 1 process"
    print(f"\n{'':24}{'evaluation':>14}{'meta-iteration':>18}{'4-point sweep':>16}")
    print(f"{'':24}{f'({args.tasks} tasks)':>14}{f'(batch {args.meta_batch})':>18}"
          f"{f'({args.sweep_iters} its)':>16}")
    for name in executors:
        e, m, s = (median[k][name] for k in ("evaluation", "meta", "sweep"))
        print(f"{name:<24}{e:9.2f} s {median['evaluation'][base] / e:3.1f}x"
              f"{1000 * m:11.1f} ms {median['meta'][base] / m:3.1f}x"
              f"{s:9.1f} s {median['sweep'][base] / s:3.1f}x")
    print(f"(speedups against '{base}'; medians of {args.rounds} rounds, sweep: 1 round)")

    # Transfer and overhead.
    overhead = {k: statistics.median(v) for k, v in noop.items()}
    sgd = learner(True)
    per_map = len(pickle.dumps(((0,), (sgd, (5, 10))), protocol=pickle.HIGHEST_PROTOCOL))
    data_bytes = len(pickle.dumps(train, protocol=pickle.HIGHEST_PROTOCOL))
    task_cost = median["evaluation"][base] / args.tasks
    iteration_cost = median["meta"][base]
    dask2 = "Dask, 2 workers"
    print(f"\ntransfer per meta-iteration: {per_map / 1e6:.2f} MB scattered once to each "
          f"worker (Φ, optimiser state, model), {2 * per_map / 1e6:.2f} MB on 2 workers; "
          f"results back: {args.meta_batch} updates of {sgd.phi.nbytes / 1e6:.2f} MB; "
          f"data set once per worker per command: {data_bytes / 1e6:.1f} MB")
    print(f"cost of the work, in one local process: {1000 * task_cost:.1f} ms per evaluation "
          f"task, {1000 * iteration_cost / args.meta_batch:.1f} ms per meta-batch task")
    print("cost of the executor alone (a map of no-op items carrying the learner):")
    for name in executors:
        print(f"  {name:<22} {1000 * overhead[name, args.tasks]:8.1f} ms per {args.tasks} "
              f"items, {1000 * overhead[name, args.meta_batch]:6.1f} ms per "
              f"{args.meta_batch} items")

    print(f"\nestimated speedup over one local process: the work divided among N workers, "
          f"plus the overhead measured on 2 Dask workers, plus the scatter to the N − 2 "
          f"others at {args.bandwidth / 1e6:.0f} MB/s from the client:")
    for workers in (2, 8, 64):
        more = max(workers - 2, 0) * per_map / args.bandwidth
        for tasks in (args.tasks, 10000):
            work = tasks * task_cost
            estimate = work / workers + overhead[dask2, args.tasks] + more \
                + max(workers - 2, 0) * data_bytes / args.bandwidth
            print(f"  {workers:>2} workers: evaluation of {tasks:>5} tasks "
                  f"{work / estimate:5.1f}x")
        estimate = (math.ceil(args.meta_batch / workers) * iteration_cost / args.meta_batch
                    + overhead[dask2, args.meta_batch] + more)
        print(f"  {workers:>2} workers: meta-iteration of {args.meta_batch} tasks "
              f"{iteration_cost / estimate:5.1f}x (at most {args.meta_batch}x: one task per "
              f"worker); a 4-point sweep {min(workers, 4)}x at most (one point per worker)")


def _noop(learner, settings, item):
    return item


def _warm(test, train, item):
    from minireptile.problems.fewshot import evaluate_task

    return evaluate_task(learner(True), test, (5, 1, 5, 2, False), item)


if __name__ == "__main__":
    main()
