"""``minireptile eval lake``: Lake's 20 one-shot runs with a meta-learned Omniglot network."""

from .args import add_parallel_arguments, non_negative_int, positive_int
from .fewshot import OMNIGLOT, open_for_evaluation


def register_eval(sub):
    p = sub.add_parser(
        "lake", help="Lake's one-shot runs (all_runs.zip) with a trained 20-way network",
        description="Fine-tune the meta-learned network on each run's 20 training images "
        "(20-way, 1-shot) and classify its 20 test images; print the error rate per run "
        "and overall with a 95%% interval. The network must be trained with --classes 20.")
    p.add_argument("--runs", required=True, metavar="PATH",
                   help="all_runs.zip or the folder holding run01 … run20")
    p.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a training run folder or its checkpoint.npz")
    p.add_argument("--eval-batch", type=positive_int, default=None,
                   help="fine-tuning mini-batch (default: the checkpoint's)")
    p.add_argument("--eval-iters", type=positive_int, default=None,
                   help="fine-tuning steps (default: the checkpoint's)")
    p.add_argument("--transductive", action="store_true", default=None,
                   help="classify the 20 test images in one batch")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the fine-tuning mini-batches (default 0)")
    add_parallel_arguments(p)
    p.set_defaults(run=run)


def run(args):
    from ..executor import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run(args, executor)


def _run(args, executor):
    import numpy as np

    from ..data.lake import load_lake_runs
    from ..lake import PUBLISHED, evaluate_runs, summary
    from ..stats import format_interval

    runs = load_lake_runs(args.runs)
    _, config, learner = open_for_evaluation(args.checkpoint, OMNIGLOT, {
        "eval_batch": args.eval_batch, "eval_iters": args.eval_iters,
        "transductive": args.transductive})
    print(f"{len(runs)} runs; fine-tuning {config.eval_iters} steps of {config.eval_batch}, "
          f"{'transductive' if config.transductive else 'non-transductive'}")
    results = evaluate_runs(learner, runs, config.eval_batch, config.eval_iters,
                            np.random.default_rng(args.seed), config.transductive,
                            executor=executor)
    for name, error in results:
        print(f"{name}: error {100 * error:5.1f}%")
    mean, half = summary(results)
    print(f"overall error: {format_interval(mean, half, 1, 100, '%', of='runs')} (95% interval over "
          f"{len(results)} runs)")
    print("published (30 background alphabets / small1 / small2): "
          + "; ".join(f"{who} {' / '.join(r for r in rates if r)}"
                      for who, *rates in PUBLISHED))
    return 0

