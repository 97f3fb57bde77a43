"""One second-order MAML meta-iteration on 5-way Omniglot: minireptile's handwritten
Hessian-vector products against its own first-order MAML and Reptile and against PyTorch's
``torch.autograd`` second-order MAML of the same network.

    python benchmarks/bench_maml.py [--iterations 5] [--rounds 3] [--threads 1]

The paper's Omniglot MAML setting: 5-way, train shots 10 (the reference's 5-way runs), inner
batch 10, 5 inner SGD steps (summed cross-entropy), meta-batch 5. A meta-iteration adapts to
5 tasks and combines their meta-gradients: MAML carries the last step's gradient back through
the first 4 steps (4 Hessian-vector products per task); FOMAML uses it as it is; Reptile steps
on all 5 mini-batches and moves Φ towards the mean solution. PyTorch builds the same graph with
``create_graph=True`` and differentiates it with ``torch.autograd.grad``.
All sides see the same tasks (minireptile's sampler, real small Omniglot sets when
``../shared/data/omniglot`` holds them). Each side runs in its own process with every thread
pool set to ``--threads`` (0: leave the libraries' defaults); rounds alternate between the
sides and the medians of meta-iterations per second are compared. Each side also reports the
processor time of its process per meta-iteration (all its threads), which other processes on
a shared machine disturb much less than the wall-clock.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

# The paper's 5-way setting and its tasks, as bench_omniglot.py draws them.
from bench_omniglot import SETTING, classes, task_stream
from bench_omniglot import run_worker as run_omniglot_worker

SIDES = ("minireptile-maml", "minireptile-foml", "minireptile-reptile", "torch-maml",
         "torch-foml")


def worker_minireptile(algorithm, iterations, rounds):
    import numpy as np

    from minireptile.models.cnn import omniglot_cnn
    from minireptile.runs.config import TrainConfig, make_learner

    train, _ = classes()
    config = TrainConfig(classes=5, shots=1, train_shots=10, inner_batch=10, inner_iters=5,
                         meta_batch=5, learning_rate=SETTING["learning_rate"], meta_step=1.0,
                         sgd=True, maml=algorithm == "maml", foml=algorithm == "foml")
    model = omniglot_cnn(5)
    rng = np.random.default_rng(0)
    learner = make_learner(model, model.init_params(rng), config)
    learner.train_step(train, 5, 10, 5, 1.0, rng)  # warm-up: compiled kernels, work arrays
    times = []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            learner.train_step(train, 5, 10, 5, 1.0, rng)
        times.append(_rate(iterations, start, cpu))
    return times


def _rate(iterations, start, cpu):
    """Meta-iterations per second of wall-clock, and processor seconds per meta-iteration."""
    return [iterations / (time.perf_counter() - start),
            (time.process_time() - cpu) / iterations]


def worker_torch(algorithm, iterations, rounds, threads):
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)

    from _torch_omniglot import OmniglotNet

    net = OmniglotNet()
    names = [name for name, _ in net.named_parameters()]
    phi = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    lr = SETTING["learning_rate"]
    second_order = algorithm == "maml"
    stream = task_stream(iterations * rounds + 1)

    def loss(weights, images, labels):
        logits = functional_call(net, dict(zip(names, weights)), (torch.from_numpy(images),))
        return F.cross_entropy(logits, torch.from_numpy(labels), reduction="sum")

    def meta_iteration(tasks):
        total = [torch.zeros_like(p) for p in phi]
        for batches in tasks:
            weights = phi if second_order else [p.detach().requires_grad_(True) for p in phi]
            for images, labels in batches[:-1]:
                grads = torch.autograd.grad(loss(weights, images, labels), weights,
                                            create_graph=second_order)
                weights = [w - lr * g for w, g in zip(weights, grads)]
                if not second_order:
                    weights = [w.detach().requires_grad_(True) for w in weights]
            images, labels = batches[-1]
            meta = torch.autograd.grad(loss(weights, images, labels),
                                       phi if second_order else weights)
            for t, g in zip(total, meta):
                t += g
        with torch.no_grad():
            for p, t in zip(phi, total):
                p -= SETTING["meta_step"] * lr * t / len(tasks)

    meta_iteration(stream[0])
    times = []
    for r in range(rounds):
        chunk = stream[1 + r * iterations: 1 + (r + 1) * iterations]
        start, cpu = time.perf_counter(), time.process_time()
        for tasks in chunk:
            meta_iteration(tasks)
        times.append(_rate(iterations, start, cpu))
    return times


def run_worker(side, args):
    return run_omniglot_worker(side, args, script=__file__)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="meta-iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per side; 0 leaves the libraries' defaults")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, algorithm = args.worker.split("-")
        if library == "minireptile":
            print(json.dumps(worker_minireptile(algorithm, args.iterations, args.rounds)))
        else:
            print(json.dumps(worker_torch(algorithm, args.iterations, args.rounds,
                                          args.threads)))
        return

    _, source = classes()
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    print(f"5-way Omniglot MAML: train shots 10, inner batch 10, 5 inner SGD steps, "
          f"meta-batch 5; tasks from {source}; {threads} per side")
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
    sides = list(SIDES) if probe.returncode == 0 else [s for s in SIDES if "torch" not in s]
    if probe.returncode != 0:
        print("PyTorch is not installed: timing minireptile only "
              "(pip install torch==2.13.0 to compare).")
    rates = {side: [] for side in sides}
    cpu = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            for rate, seconds in run_worker(side, args):
                rates[side].append(rate)
                cpu[side].append(seconds)
    medians = {side: statistics.median(v) for side, v in rates.items()}
    cpu_medians = {side: statistics.median(v) for side, v in cpu.items()}
    for side in sides:
        name = side if "torch" not in side else side.replace("torch", f"PyTorch {probe.stdout.strip()}")
        print(f"{name:<28} {medians[side]:7.3f} meta-iterations/s "
              f"({1000 / medians[side]:7.1f} ms; median of "
              f"{', '.join(f'{v:.3f}' for v in rates[side])}); "
              f"processor time {1000 * cpu_medians[side]:7.1f} ms")
    print(f"MAML / FOMAML / Reptile time per meta-iteration, minireptile: "
          f"{medians['minireptile-foml'] / medians['minireptile-maml']:.2f}x / 1 / "
          f"{medians['minireptile-foml'] / medians['minireptile-reptile']:.2f}x "
          f"(processor time "
          f"{cpu_medians['minireptile-maml'] / cpu_medians['minireptile-foml']:.2f}x / 1 / "
          f"{cpu_medians['minireptile-reptile'] / cpu_medians['minireptile-foml']:.2f}x)")
    if "torch-maml" in medians:
        print(f"MAML / FOMAML time per meta-iteration, PyTorch: "
              f"{medians['torch-foml'] / medians['torch-maml']:.2f}x")
        print(f"MAML speed minireptile / PyTorch: "
              f"{medians['minireptile-maml'] / medians['torch-maml']:.2f}x (above 1: faster; "
              f"processor time {cpu_medians['torch-maml'] / cpu_medians['minireptile-maml']:.2f}x)")


if __name__ == "__main__":
    main()
