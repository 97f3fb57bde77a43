"""Training curves of one-shot runs: held-out accuracy against meta-iteration.

    python benchmarks/plot_oneshot.py --run "trained on small1=RUN_DIR" \
        --run "trained on small2=RUN_DIR2" --out docs/oneshot_curve.png [--smooth 20]

Reads each run folder's ``metrics.jsonl`` (one 20-way task of the training and of the
held-out alphabets at every logged iteration, as training records them) and draws the
trailing mean of ``--smooth`` records of both accuracies, one colour per run, with chance
(1/N) and, with ``--final LABEL=ACCURACY``, the final evaluation's accuracy as a mark at
the last iteration.
"""

import argparse
import json
import os
import sys

import numpy as np


def read_metrics(directory):
    with open(os.path.join(directory, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return (np.array([r["iteration"] for r in records]),
            np.array([r["train_accuracy"] for r in records], dtype=float),
            np.array([r["test_accuracy"] for r in records], dtype=float),
            np.array([r["seconds"] for r in records], dtype=float))


def trailing_mean(values, window):
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[start]) / (idx - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--final", action="append", default=[], metavar="LABEL=ACCURACY")
    parser.add_argument("--out", required=True)
    parser.add_argument("--smooth", type=int, default=20)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--legend-outside", action="store_true",
                        help="draw the legend to the right of the axes, not over the curves")
    args = parser.parse_args(argv)

    from minireptile.runs.plotting import require_matplotlib

    plt = require_matplotlib()
    finals = dict(item.split("=", 1) for item in args.final)
    fig, ax = plt.subplots(figsize=(11.5 if args.legend_outside else 8, 5))
    for colour, item in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), args.run):
        label, directory = item.split("=", 1)
        iterations, train, test, seconds = read_metrics(directory)
        ax.plot(iterations, trailing_mean(test, args.smooth), color=colour,
                label=f"{label}: held-out alphabets")
        ax.plot(iterations, trailing_mean(train, args.smooth), color=colour, linestyle="--",
                alpha=0.6, label=f"{label}: training alphabets")
        if label in finals:
            ax.plot([iterations[-1]], [float(finals[label])], "o", color=colour,
                    label=f"{label}: final evaluation")
        print(f"{label}: {len(iterations)} records, last iteration {iterations[-1]}, "
              f"{seconds[-1]:.0f} s; held-out trailing mean {trailing_mean(test, args.smooth)[-1]:.3f}")
    ax.axhline(1 / args.classes, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"accuracy (trailing mean of {args.smooth} one-task evaluations)")
    ax.set_title(f"Omniglot minimal protocol: {args.classes}-way 1-shot within one alphabet")
    ax.set_ylim(0, 1)
    if args.legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    else:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100, bbox_inches="tight" if args.legend_outside else None)
    plt.close(fig)
    print(f"plot written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
