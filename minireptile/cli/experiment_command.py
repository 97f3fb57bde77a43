"""``minireptile experiment gradient-combinations``: the reference's comparison of
meta-gradients built from the inner gradients g1 … gk."""

import os
import time

from ..algorithms.combinations import REFERENCE_COMBINATIONS, parse_combinations
from ..runs.config import TrainConfig
from ..runs.run import generators
from ..runs.rundata import describe_data
from .data_commands import add_omniglot_arguments, omniglot_from_args, split_options
from .options import (
    add_parallel_arguments,
    add_setting_options,
    non_negative_int,
    positive_float,
    positive_int,
)
from .taylor_command import register as register_taylor


def register(subparsers):
    p = subparsers.add_parser("experiment", help="reproduce an analysis of the paper",
                              description="Experiments from the paper's analysis.")
    sub = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    g = sub.add_parser(
        "gradient-combinations",
        help="compare meta-gradients g1, g2, g1+g2, (g1+g2)/2, … on 5-way Omniglot",
        description="Meta-train the Omniglot network once per gradient combination with the "
        "reference README's settings (inner SGD, batch 25, learning rate 0.003, meta-step "
        "0.25 annealed to 0, train shots 5·k, one evaluation task per split after every "
        "iteration), then write the smoothed learning curves (CSV and PNG) and print the "
        "final accuracies. Unfinished variants resume when the command is run again.")
    add_omniglot_arguments(g)
    g.add_argument("--combinations", default=",".join(REFERENCE_COMBINATIONS),
                   help="comma-separated list (default: the reference's ten, %(default)s)")
    g.add_argument("--meta-iters", type=positive_int, default=40000,
                   help="meta-iterations per variant (default %(default)s as the reference)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    g.add_argument("--learning-rate", type=positive_float, default=0.003,
                   help="inner SGD learning rate (default %(default)s; the reference README "
                        "first gave 0.003, later 0.0003)")
    g.add_argument("--meta-step", type=positive_float, default=0.25,
                   help="outer step size at the start (default %(default)s)")
    add_setting_options(g, TrainConfig, ("within_alphabet", "mirror_classes"))
    g.add_argument("--smooth", type=positive_int, default=50,
                   help="trailing-mean window of the curves, in iterations (default 50)")
    g.add_argument("--out", default="gradient_combinations", metavar="DIR",
                   help="folder for the runs, curves.csv and curves.png "
                        "(default %(default)s)")
    g.add_argument("--no-plot", action="store_true", help="write no PNG")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_parallel_arguments(g)
    g.set_defaults(run=run)
    register_taylor(sub)


def run(args):
    from ..parallel import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run(args, executor)


def _run(args, executor):
    from ..models.cnn import omniglot_cnn
    from ..runs.experiment import (
        SHARED,
        final_table,
        plot_curves,
        run_experiment,
        write_curves_csv,
    )
    from ..stats import format_interval
    from .fewshot_commands import task_splits

    combinations = parse_combinations(args.combinations)
    if not args.no_plot:
        from ..runs.plotting import require_matplotlib

        require_matplotlib()
    *_, split_rng = generators(args.seed)
    train_classes, test_classes = omniglot_from_args(args, split_rng, progress=not args.no_progress)
    # Tasks are drawn as `train` draws them: the mirror images added, then within alphabets.
    tasks = TrainConfig(classes=SHARED["classes"], within_alphabet=args.within_alphabet,
                        mirror_classes=args.mirror_classes)
    splits = task_splits({"train": train_classes, "test": test_classes}, tasks)
    train_classes, test_classes = splits["train"], splits["test"]
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    results = run_experiment(
        omniglot_cnn, train_classes, test_classes, [c.name for c in combinations],
        args.meta_iters, args.out, seed=args.seed,
        overrides=dict(learning_rate=args.learning_rate, meta_step=args.meta_step,
                       within_alphabet=args.within_alphabet,
                       mirror_classes=args.mirror_classes),
        progress=not args.no_progress, executor=executor,
        data=describe_data({"train": train_classes, "test": test_classes}, args.data,
                           split_options(args)))
    csv_path = os.path.join(args.out, "curves.csv")
    write_curves_csv(csv_path, results, args.smooth)
    print(f"\ncurves written to {csv_path}")
    if not args.no_plot:
        png = os.path.join(args.out, "curves.png")
        plot_curves(png, results, args.smooth)
        print(f"plot written to {png}")
    print(f"\nfinal accuracy, mean of the last 10% of iterations "
          f"({args.meta_iters} meta-iterations each, {time.perf_counter() - start:.0f} s):")
    print(f"{'variant':<20} {'train':>7} {'test':>7}   95% interval")
    for name, train_acc, test_acc, half, n in final_table(results):
        interval = format_interval(0.0, half, digits=3).split(" ", 1)[1]
        print(f"{name:<20} {train_acc:7.3f} {test_acc:7.3f}   {interval} ({n} tasks)")
    return 0
