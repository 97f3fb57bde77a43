"""``minireptile eval lake``: Lake's 20 one-shot runs with a meta-learned Omniglot network."""

import argparse

from ..errors import InputError
from ..runs.config import TrainConfig
from .data_commands import add_render_argument
from .fewshot_commands import AFFINE_SETTINGS
from .options import (
    add_ensemble_arguments,
    add_parallel_arguments,
    add_setting_options,
    describe_ensemble,
    non_negative_int,
    repeated_finetuning_warning,
)

NUM_RUNS = 20  # Lake's runs, each 20-way with one test image per class
# The evaluation settings a command line may change from the run's.
LAKE_OVERRIDES = ("eval_batch", "eval_iters", "transductive", "eval_augment") + AFFINE_SETTINGS


def register_eval(sub):
    p = sub.add_parser(
        "lake", help="Lake's one-shot runs (all_runs.zip) with a trained 20-way network",
        description="Fine-tune the meta-learned network on each run's 20 training images "
        "(20-way, 1-shot) and classify its 20 test images; print the error rate per run "
        "and overall with a 95% interval. The network must be trained with --classes 20.")
    p.add_argument("--runs", required=True, metavar="PATH",
                   help="all_runs.zip or the folder holding run01 … run20")
    p.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a training run folder or its checkpoint.npz")
    # The run's settings unless given (None: keep the checkpoint's).
    add_setting_options(p, TrainConfig, LAKE_OVERRIDES, defaults=False)
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the fine-tuning mini-batches and distortions (default 0)")
    p.add_argument("--runs-subset", type=runs_subset, metavar="LIST",
                   help="score only these runs, e.g. 1-5,7 (default: all 20 are required; the "
                        "published figures are then not shown, as they cover all 20)")
    add_render_argument(p, evaluating=True)
    add_ensemble_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(run=run)


def runs_subset(text):
    """``"1-5,7"`` -> ``[1, 2, 3, 4, 5, 7]`` (run numbers 1 to 20)."""
    numbers = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected run numbers like 1-5,7, got {text!r}") from None
        if not 1 <= lo <= hi <= NUM_RUNS:
            raise argparse.ArgumentTypeError(
                f"run numbers go from 1 to {NUM_RUNS}, got {part.strip()!r} in {text!r}")
        numbers.update(range(lo, hi + 1))
    return sorted(numbers)


def select_runs(runs, subset, where):
    """The runs to score: all 20 of Lake's (each 20-way with 20 test images) or ``subset``.

    Raises :class:`InputError` naming the runs that are missing or incomplete.
    """
    wanted = [f"run{i:02d}" for i in (subset or range(1, NUM_RUNS + 1))]
    by_name = {r.name: r for r in runs}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        hint = ("" if subset else "; the overall error is comparable to the published figures "
                "only over all 20: restore them (minireptile data omniglot --only all_runs) or "
                "pass --runs-subset to score the others")
        raise InputError(f"{where!r} lacks {', '.join(missing)} of Lake's {NUM_RUNS} runs"
                         + hint)
    if not subset:
        unknown = sorted(set(by_name) - set(wanted))
        if unknown:
            raise InputError(f"{where!r} holds runs {unknown} besides Lake's run01 … run20; "
                             "give the official all_runs.zip or its extracted folder")
    chosen = [by_name[name] for name in wanted]
    for run in chosen:
        sizes = (len(run.train_labels), len(run.test_labels))
        if sizes != (NUM_RUNS, NUM_RUNS):
            raise InputError(f"{where}/{run.name} has {sizes[0]} training and {sizes[1]} test "
                             "images; each of Lake's runs has 20 and 20, so it is not one of "
                             "them (re-extract all_runs.zip)")
    return chosen


def run(args):
    from ..parallel import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run(args, executor)


def _run(args, executor):
    import numpy as np

    from ..data.lake_runs import load_lake_runs
    from ..data.omniglot import IMAGE_SIZE
    from ..models.cnn import omniglot_cnn
    from ..problems.lake_benchmark import PUBLISHED, evaluate_runs, summary
    from ..runs.run import open_ensemble, open_for_evaluation
    from ..runs.rundata import check_render
    from ..stats import format_interval

    overrides = {name: getattr(args, name) for name in LAKE_OVERRIDES}
    _, config, learner, meta = open_for_evaluation(args.checkpoint, omniglot_cnn, overrides)
    record = meta["extra"].get("data")
    learner, _ = open_ensemble(learner, config, args.ensemble, omniglot_cnn, overrides,
                               args.finetunings, args.query_views, data=record)
    # Lake's drawings are rendered as the run's training images were, at the same size.
    render = check_render(record, args.render, what="be scored")
    size = config.image_size or IMAGE_SIZE
    runs = select_runs(load_lake_runs(args.runs, size=size, render=render), args.runs_subset,
                       args.runs)
    print(f"{len(runs)} runs; fine-tuning {config.eval_iters} steps of {config.eval_batch}, "
          f"{'transductive' if config.transductive else 'non-transductive'}"
          f"{', training images distorted at every step' if config.eval_augment else ''}"
          f"{describe_ensemble(args)}")
    warning = repeated_finetuning_warning(args, config, NUM_RUNS)
    if warning:
        print(warning)
    results = evaluate_runs(learner, runs, config.eval_batch, config.eval_iters,
                            np.random.default_rng(args.seed), config.transductive,
                            executor=executor)
    for name, error in results:
        print(f"{name}: error {100 * error:5.1f}%")
    mean, half = summary(results)
    overall = format_interval(mean, half, 1, 100, '%', of='runs')
    if args.runs_subset:
        print(f"overall error: {overall} (95% interval over {len(results)} runs; SUBSET "
              f"{', '.join(r for r, _ in results)} only, not comparable to the published "
              f"20-run figures)")
        return 0
    print(f"overall error: {overall} (95% interval over "
          f"{len(results)} runs)")
    print("published (30 background alphabets / small1 / small2): "
          + "; ".join(f"{who} {' / '.join(r for r in rates if r)}"
                      for who, *rates in PUBLISHED))
    return 0

