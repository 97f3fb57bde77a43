"""Hyper-parameter search for 20-way 1-shot within-alphabet Omniglot on the minimal protocol.

    python benchmarks/search_oneshot.py --meta-iters 300 --eval-samples 100 \
        [--train small1|small2] [--variants base,no_augment,...] [--out DIR] [--workers 2]

Meta-trains one short run per variant on the five alphabets of one small background set
(``small1``: Balinese, Early_Aramaic, Greek, Korean, Latin; ``small2``: Greek,
Japanese_(katakana), Latin, Sanskrit, Tagalog) and evaluates it on 20-way 1-shot
within-alphabet tasks of the alphabets found only in the other set that have at least 20
characters, printing one table row per variant: held-out accuracy with its 95% interval,
training seconds and the settings that differ from ``base``. The data are read from
``../shared/data/omniglot`` relative to the repository.

Every variant is an ordinary run folder under ``--out`` (default ``oneshot_search``), so a
search that is interrupted continues where it stopped when started again, and a finished
variant is only evaluated again (at once, from its evaluation record). Short runs rank
settings, they do not give final figures: the recipe's final run is much longer.
"""

import argparse
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SETS = {
    "small1": ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"],
    "small2": ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog"],
}

# 20-way 1-shot within one alphabet, transductive evaluation; the reference's 20-way
# settings (inner Adam, β1 = 0) as the starting point.
BASE = dict(classes=20, shots=1, train_shots=5, inner_batch=20, inner_iters=5,
            learning_rate=0.001, meta_step=1.0, meta_step_final=0.0, meta_batch=5,
            eval_batch=20, eval_iters=50, transductive=True, within_alphabet=True,
            augment=True, eval_interval=25, checkpoint_interval=50)

VARIANTS = {
    "base": {},
    "no_augment": dict(augment=False),
    "random_tasks": dict(within_alphabet=False),
    "random_tasks_no_augment": dict(within_alphabet=False, augment=False),
    "lr_0.0005": dict(learning_rate=0.0005),
    "lr_0.002": dict(learning_rate=0.002),
    "inner_iters_10": dict(inner_iters=10),
    "train_shots_10": dict(train_shots=10, inner_iters=10),
    "meta_batch_2": dict(meta_batch=2),
    "small_distortions": dict(augment_rotation=5.0, augment_shear=0.15, augment_scale=0.1,
                              augment_translate=1.0),
    "sgd_0.01": dict(sgd=True, learning_rate=0.01),
}


def splits(train_set):
    """(train, test) ClassSets: one small set's alphabets train, the other's own alphabets
    test (Greek and Latin, in both, train)."""
    import numpy as np

    from minireptile.data.omniglot import omniglot_splits

    sources = [DATA / "images_background_small1.zip", DATA / "images_background_small2.zip"]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        sys.exit(f"search_oneshot: data not found: {', '.join(missing)}")
    return omniglot_splits(sources, np.random.default_rng(0), train_alphabets=SETS[train_set],
                           progress=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", choices=sorted(SETS), default="small1")
    parser.add_argument("--variants", default="base,no_augment,random_tasks",
                        help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--meta-iters", type=int, default=300)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for the evaluations (default: the cores)")
    parser.add_argument("--out", default="oneshot_search")
    args = parser.parse_args(argv)


    from minireptile.data.alphabets import as_within_alphabet
    from minireptile.models.cnn import omniglot_cnn
    from minireptile.parallel import make_executor
    from minireptile.runs.config import TrainConfig
    from minireptile.runs.evaluation import evaluate_splits
    from minireptile.runs.run import Run, generators
    from minireptile.runs.training import train
    from minireptile.stats import format_interval

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    train_classes, test_classes = splits(args.train)
    test = as_within_alphabet(test_classes, BASE["classes"], "test")
    print(f"training on {args.train} ({len(train_classes)} classes with rotations); "
          + test.describe("held-out"))
    rows = []
    with make_executor(args.workers) as executor:
        for name in names:
            config = TrainConfig(**dict(BASE, **VARIANTS[name], meta_iters=args.meta_iters,
                                        seed=args.seed))
            directory = os.path.join(args.out, args.train, name)
            start = time.perf_counter()
            learner = train(omniglot_cnn(config.classes), train_classes, test_classes, config,
                            directory, resume=Run(directory).exists(), progress=False,
                            log=lambda *_: None)
            seconds = time.perf_counter() - start
            _, eval_rng, _ = generators(args.seed + 1)
            settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                        config.transductive)
            mean, half, _ = evaluate_splits(learner, {"test": test}, ["test"], settings,
                                            args.eval_samples, eval_rng, executor=executor,
                                            record_dir=directory, log=lambda *_: None)["test"]
            rows.append((name, mean, half, seconds))
            print(f"{name:<26} {format_interval(mean, half)}  train {seconds:7.0f} s  "
                  f"{VARIANTS[name] or ''}", flush=True)
    print(f"\n{args.meta_iters} meta-iterations per variant, {args.eval_samples} held-out "
          f"20-way 1-shot within-alphabet tasks each (transductive, "
          f"{BASE['eval_iters']} fine-tuning steps)")
    best = max(rows, key=lambda r: r[1])
    print(f"best: {best[0]} ({best[1]:.3f}); chance 0.05")
    return 0


if __name__ == "__main__":
    sys.exit(main())
