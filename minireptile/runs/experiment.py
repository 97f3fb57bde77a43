"""The gradient-combination comparison of the reference README, as one function.

Every variant meta-trains the Omniglot network with inner SGD and evaluates one 5-way task of
the training and of the test characters after every iteration (25-example batches, 5 inner
steps), exactly as the reference's ``run_omniglot.py ... --eval-interval 1`` commands:

    shared: --sgd --seed 0 --inner-batch 25 --learning-rate 0.003 --meta-step-final 0
            --eval-batch 25 --eval-iters 5 --eval-interval 1
    per variant: --inner-iters k --train-shots 5k --meta-step 0.25, with the gradients
            combined as named (the reference expresses the averages "(g1+…+gk)/k" as Reptile
            with meta-step 0.25/k; here they are weights 1/k with meta-step 0.25, the same
            update)

The learning rate is 0.003: versions of that README give 0.003 and 0.0003, and with 0.0003 a
run of a few hundred iterations barely leaves chance (``--learning-rate`` sets it).

Each variant is an ordinary training run in ``<out>/<variant>/`` (checkpoint and metrics), so
an interrupted experiment continues where it stopped when started again.
"""

import csv
import json
import os
import re

import numpy as np

from ..algorithms.combinations import parse_combination
from ..parallel.executor import SerialExecutor
from .config import TrainConfig
from .run import METRICS_FILE, Run
from .training import train

SHARED = dict(sgd=True, inner_batch=25, learning_rate=0.003, meta_step=0.25,
              meta_step_final=0.0, eval_batch=25, eval_iters=5, eval_interval=1,
              classes=5, shots=5)


def folder_name(name):
    """A file-system-safe folder name for a combination, e.g. ``(g1+g2)/2`` → ``avg_g1_g2``."""
    average = name.startswith("(")
    body = re.sub(r"[^a-z0-9]+", "_", name.split("/")[0].lower()).strip("_")
    return ("avg_" if average else "") + body


def variant_config(combination, meta_iters, seed, overrides=None):
    """The :class:`TrainConfig` of one variant."""
    k = combination.needs_k
    values = dict(SHARED, inner_iters=k, train_shots=5 * k, meta_iters=meta_iters, seed=seed,
                  combination=combination.name,
                  checkpoint_interval=max(1, min(100, meta_iters)))
    values.update(overrides or {})
    return TrainConfig(**values)


def smooth(values, window):
    """Trailing mean over ``window`` points (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[start]) / (idx - start)


def read_curve(directory):
    """Iterations, train and test accuracies from a run's metrics file."""
    with open(os.path.join(directory, METRICS_FILE), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return (np.array([r["iteration"] for r in records]),
            np.array([r["train_accuracy"] for r in records]),
            np.array([r["test_accuracy"] for r in records]))


def run_experiment(model_factory, train_classes, test_classes, names, meta_iters, out, seed=0,
                   overrides=None, progress=True, log=print, executor=None, data=None):
    """Train every variant (resuming unfinished ones) and return their learning curves.

    The variants are independent runs, so they are trained on the ``executor``'s workers
    (default: here, one after another); each run is the same whichever worker trains it.
    ``model_factory`` must then be a module-level function (it is sent by name). ``data`` is
    the data record stored with each variant's run (see :mod:`minireptile.runs.rundata`); an
    unfinished variant resumes only on the same data.

    Returns
    -------
    dict of name to dict(iterations, train, test, seconds)
    """
    executor = executor or SerialExecutor()
    jobs = []
    for name in names:
        combination = parse_combination(name)
        config = variant_config(combination, meta_iters, seed, overrides)
        directory = os.path.join(out, folder_name(combination.name))
        log(f"== {combination.name}: k = {config.inner_iters}, train shots "
            f"{config.train_shots}" + (" (resuming)" if Run(directory).exists() else ""))
        jobs.append((config, directory))
    # Progress bars of several processes would overwrite each other: one process, one bar.
    alone = executor.workers == 1
    executor.map(_train_variant, jobs, model_factory, executor.share(train_classes),
                 executor.share(test_classes), progress and alone, log if alone else None,
                 data)
    results = {}
    for name, (config, directory) in zip(names, jobs):
        iterations, train_acc, test_acc = read_curve(directory)
        with open(Run(directory).metrics_path, encoding="utf-8") as f:
            last = json.loads(f.readlines()[-1])
        results[parse_combination(name).name] = dict(iterations=iterations, train=train_acc,
                                                     test=test_acc, seconds=last["seconds"])
    return results


def _train_variant(model_factory, train_classes, test_classes, progress, log, data, job):
    """Train (or finish) one variant's run."""
    config, directory = job
    train(model_factory(config.classes), train_classes, test_classes, config, directory,
          resume=Run(directory).exists(), progress=progress, log=log or (lambda *_: None),
          data=data)


def write_curves_csv(path, results, window):
    """One row per variant and iteration: raw and smoothed accuracies."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "iteration", "train_accuracy", "test_accuracy",
                         "train_smoothed", "test_smoothed"])
        for name, r in results.items():
            for row in zip(r["iterations"], r["train"], r["test"], smooth(r["train"], window),
                           smooth(r["test"], window)):
                writer.writerow([name, int(row[0])] + [f"{v:.4f}" for v in row[1:]])


def final_table(results, tail_fraction=0.1):
    """Rows ``(name, train, test, test_half_width)``: mean accuracy over the last
    ``tail_fraction`` of the iterations (one evaluation task each), with a 95% interval."""
    from ..stats import mean_and_interval

    rows = []
    for name, r in results.items():
        n = max(1, int(round(len(r["test"]) * tail_fraction)))
        train_mean, _ = mean_and_interval(r["train"][-n:])
        test_mean, test_half = mean_and_interval(r["test"][-n:])
        rows.append((name, train_mean, test_mean, test_half, n))
    return rows


def plot_curves(path, results, window):
    """Smoothed test accuracy against meta-iteration, one line per variant."""
    from .plotting import require_matplotlib

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in results.items():
        ax.plot(r["iterations"], smooth(r["test"], window), label=name)
    ax.axhline(0.2, color="grey", linestyle=":", linewidth=1, label="chance (5-way)")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"test accuracy (trailing mean of {window})")
    ax.set_title("Omniglot 5-way: meta-gradients from inner gradients g1…gk")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
