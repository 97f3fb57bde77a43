"""Hyper-parameter sweeps: a grid of training configurations, one resumable run each.

A sweep lives in one folder::

    <out>/<flag=value,...>/   an ordinary training run (checkpoint.npz, metrics.jsonl), plus
                              result.json once it is trained and evaluated
    <out>/results.csv         one row per finished run: its full configuration and its final
                              accuracies with their 95% intervals
    <out>/results.png         those accuracies, one bar per run

Every point of the grid is independent, so ``minireptile sweep`` maps the points onto an
executor's workers (local processes or a Dask cluster); this module holds the files and the
figure (the grid of flags is the command line's, :mod:`minireptile.cli.sweep_grid`). A worker loads the point's data set itself, from the
data path (which must be readable where the worker runs), once per process and data
configuration. A point whose ``result.json`` exists is skipped; one with a checkpoint resumes
from it, so a stopped sweep started again finishes only the missing work, with the numbers an
uninterrupted sweep gives.
"""

import csv
import json
import os

from ..errors import InputError

RESULT_FILE = "result.json"
TABLE_FILE = "results.csv"
PLOT_FILE = "results.png"


def read_result(directory):
    """A finished point's ``result.json`` as a dict, or None."""
    path = os.path.join(directory, RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json_atomic(path, value):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_readable(paths):
    """Raise :class:`InputError`, naming this worker and the path, unless every path is
    readable here."""
    from ..parallel.dask_cluster import worker_name

    for path in paths:
        if not os.access(path, os.R_OK):
            raise InputError(f"{worker_name()} cannot read the data path {path!r}; every "
                             f"worker needs the data at that path (e.g. a shared file system)")


def plain(value):
    """A NumPy scalar as the Python number JSON can write."""
    return value.item() if hasattr(value, "item") else value


def write_table(path, results, splits):
    """``results.csv``: one row per run, its whole configuration, then its accuracies."""
    config_keys = list(results[0]["config"]) if results else []
    grid_keys = list(results[0]["grid"]) if results else []
    header = (["run"] + [f"grid.{k}" for k in grid_keys] + config_keys
              + ["data", "num_train", "train_alphabet", "eval_samples"]
              + [f"{s}_{what}" for s in splits for what in ("accuracy", "interval")])
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in results:
            acc = r["accuracies"]
            data = r["data"]
            writer.writerow(
                [r["run"]] + [r["grid"][k] for k in grid_keys]
                + [r["config"][k] for k in config_keys]
                + [";".join(data["sources"]), data["num_train"],
                   ";".join(data["train_alphabet"] or []), r["eval_samples"]]
                + [_number(acc.get(s, {}).get(what)) for s in splits
                   for what in ("accuracy", "interval")])
    os.replace(tmp, path)


def _number(value):
    return "" if value is None else repr(float(value))


def plot_results(path, results, splits):
    """Final accuracy of every run with its 95% interval, one group of bars per run."""
    import numpy as np

    from .plotting import require_matplotlib

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(results) + 2), 5))
    x = np.arange(len(results))
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        means = [r["accuracies"].get(split, {}).get("accuracy", np.nan) for r in results]
        halves = [r["accuracies"].get(split, {}).get("interval") or 0 for r in results]
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, means, width, yerr=halves,
               capsize=3, label=split)
    ax.set_xticks(x)
    ax.set_xticklabels([r["run"].replace(",", "\n") for r in results], fontsize=8)
    ax.set_ylabel("final accuracy (95% interval)")
    ax.set_ylim(0, 1)
    ax.set_title("sweep: final evaluation of every configuration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
