"""Reptile meta-iterations per second on 5-way Omniglot: minireptile against PyTorch.

    python benchmarks/bench_omniglot.py [--iterations 20] [--rounds 3] [--threads 1]

The paper's 5-way setting: train shots 10, inner batch 10, 5 inner Adam steps (lr 0.001,
β1 = 0, its state carried from task to task), meta-batch 5, then Φ ← Φ + ε(W̄ − Φ). Both sides
run the same architecture (TensorFlow ``same`` padding, batch norm in training mode, summed
cross-entropy) on the same tasks, drawn by minireptile's sampler from the real small Omniglot
sets when ``../shared/data/omniglot`` holds them, else from random 28×28 binary images. Each
side runs in its own process with every thread pool (BLAS, OpenMP, Numba, PyTorch) set to
``--threads``; rounds alternate between the sides and the medians are compared.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
SETTING = dict(classes=5, train_shots=10, inner_batch=10, inner_iters=5, meta_batch=5,
               learning_rate=0.001, meta_step=1.0)


def classes():
    """Training classes: the real small sets' rotated characters, or random images."""
    import numpy as np

    from minireptile.data import ClassSet, ImagePool
    from minireptile.data.omniglot import omniglot_splits

    sources = [DATA / "images_background_small1.zip", DATA / "images_background_small2.zip"]
    if all(p.is_file() for p in sources):
        train, _ = omniglot_splits(sources, np.random.default_rng(0), num_train=200,
                                   progress=False)
        return train, "real small Omniglot sets"
    rng = np.random.default_rng(0)
    images = [(rng.random((20, 28, 28)) < 0.2).astype(np.uint8) for _ in range(100)]
    files = [[f"c{i}/{j}" for j in range(20)] for i in range(100)]
    pool = ImagePool.from_classes([f"A/c{i:03d}" for i in range(100)], images, files, 1.0,
                                  (28, 28))
    return ClassSet(pool), "random binary images (real data not found)"


def task_stream(count, seed=0):
    """The inner mini-batches of ``count`` meta-iterations, as (images, labels) lists."""
    import numpy as np

    from minireptile.problems.tasks import mini_batches, sample_task

    train, _ = classes()
    rng = np.random.default_rng(seed)
    stream = []
    for _ in range(count):
        tasks = []
        for _ in range(SETTING["meta_batch"]):
            task = sample_task(train, SETTING["classes"], SETTING["train_shots"], rng)
            tasks.append([(b.images, b.labels) for b in mini_batches(
                task, SETTING["inner_batch"], SETTING["inner_iters"], False, rng)])
        stream.append(tasks)
    return stream


def worker_minireptile(iterations, rounds):
    import numpy as np

    from minireptile.models.cnn import omniglot_cnn
    from minireptile.runs.config import TrainConfig, make_learner

    train, _ = classes()
    config = TrainConfig(classes=5, shots=1, train_shots=10, inner_batch=10, inner_iters=5,
                         meta_batch=5, learning_rate=0.001, meta_step=1.0)
    model = omniglot_cnn(5)
    rng = np.random.default_rng(0)
    learner = make_learner(model, model.init_params(rng), config)
    learner.train_step(train, 5, 10, 5, 1.0, rng)  # warm-up: compiled kernels, work arrays
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            learner.train_step(train, 5, 10, 5, 1.0, rng)
        times.append(iterations / (time.perf_counter() - start))
    return times


def worker_torch(iterations, rounds, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    from _torch_omniglot import OmniglotNet
    from _torch_reptile import reptile_meta_iteration

    net = OmniglotNet()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=SETTING["learning_rate"], betas=(0.0, 0.999), eps=1e-8)
    stream = task_stream(iterations * rounds + 1)

    def meta_iteration(tasks):
        reptile_meta_iteration(net, opt, tasks, SETTING["meta_step"])

    meta_iteration(stream[0])
    times = []
    for r in range(rounds):
        chunk = stream[1 + r * iterations: 1 + (r + 1) * iterations]
        start = time.perf_counter()
        for tasks in chunk:
            meta_iteration(tasks)
        times.append(iterations / (time.perf_counter() - start))
    return times


def run_worker(side, args, script=__file__):
    """One round of ``side`` in a fresh process of ``script``, its thread variables set to
    ``args.threads`` (or all unset for 0: the libraries' defaults); the worker's JSON line."""
    env = dict(os.environ)
    for v in THREAD_VARIABLES:
        env.pop(v, None)
    if args.threads:
        env.update({v: str(args.threads) for v in THREAD_VARIABLES})
    cmd = [sys.executable, script, "--worker", side, "--iterations", str(args.iterations),
           "--rounds", "1", "--threads", str(args.threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="meta-iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=("minireptile", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "minireptile":
        print(json.dumps(worker_minireptile(args.iterations, args.rounds)))
        return
    if args.worker == "torch":
        print(json.dumps(worker_torch(args.iterations, args.rounds, args.threads)))
        return

    _, source = classes()
    print(f"5-way Omniglot Reptile: train shots 10, inner batch 10, 5 inner Adam steps, "
          f"meta-batch 5; tasks from {source}; {args.threads} thread(s) per side")
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
    has_torch = probe.returncode == 0
    if not has_torch:
        print("PyTorch is not installed: timing minireptile only "
              "(pip install torch==2.13.0 to compare).")
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours += run_worker("minireptile", args)
        if has_torch:
            theirs += run_worker("torch", args)
    ours_med = statistics.median(ours)
    print(f"minireptile: {ours_med:.2f} meta-iterations/s (median of "
          f"{', '.join(f'{v:.2f}' for v in ours)})")
    if has_torch:
        theirs_med = statistics.median(theirs)
        print(f"PyTorch {probe.stdout.strip()}: {theirs_med:.2f} meta-iterations/s (median of "
              f"{', '.join(f'{v:.2f}' for v in theirs)})")
        print(f"ratio minireptile / PyTorch: {ours_med / theirs_med:.2f}x")


if __name__ == "__main__":
    main()
