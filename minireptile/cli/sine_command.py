"""``minireptile sine``: meta-train on sine waves, then evaluate on held-out tasks."""

import time

from ..problems import sine
from .options import (
    add_parallel_arguments,
    add_setting_options,
    config_from_args,
    non_negative_int,
    output_path,
)


def register(subparsers):
    p = subparsers.add_parser(
        "sine",
        help="few-shot sine regression (the paper's toy problem)",
        description="Meta-train a 1-64-64-1 tanh MLP on sine waves with Reptile, then "
        "fine-tune it on held-out tasks and report the mean squared error.",
    )
    add_setting_options(p, sine.SineConfig, ("iterations", "seed", "inner_lr", "inner_batch",
                                             "inner_epochs", "meta_step", "meta_step_final",
                                             "meta_batch", "outer"))
    algorithm = p.add_mutually_exclusive_group()
    algorithm.add_argument("--foml", action="store_const", dest="algorithm", const="foml",
                           default="reptile", help="first-order MAML on the same mini-batches")
    algorithm.add_argument("--maml", action="store_const", dest="algorithm", const="maml",
                           help="second-order MAML (exact meta-gradient through the inner "
                                "SGD steps)")
    p.add_argument("--eval-tasks", "--eval-samples", type=non_negative_int, default=1000,
                   help="held-out tasks evaluated after training (default %(default)s)")
    p.add_argument("--eval-seed", type=non_negative_int, default=1000,
                   help="seed of the held-out tasks (default %(default)s)")
    p.add_argument("--plot", type=output_path, metavar="PATH",
                   help="write a PNG of predictions on a fixed task after 0, 8, 16, 24, 32 steps")
    p.add_argument("--save", type=output_path, metavar="PATH",
                   help="write the trained parameters to this .npz file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_parallel_arguments(p)
    p.set_defaults(run=run)


def run(args):
    from ..parallel import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run(args, executor)


def _run(args, executor):
    from ..npzfile import save_npz_atomic
    from ..stats import format_interval

    config = config_from_args(sine.SineConfig, args).validate()
    if args.plot:
        from ..runs.plotting import require_matplotlib

        require_matplotlib()
    model = sine.sine_model()
    print(model.describe())
    start = time.perf_counter()
    phi, losses = sine.train(config, progress=not args.no_progress, model=model)
    print(f"meta-training: {config.iterations} iterations in {time.perf_counter() - start:.1f} s,"
          f" final inner loss {losses[-min(len(losses), 1000):].mean():.4f}")

    task, idx = sine.plot_task(args.eval_seed)
    curve = sine.finetune_curve(model, phi, task, idx, config.inner_lr, sine.PLOT_STEPS)
    print(f"loss on plotted curve after 32 steps: {curve[32][0]:.3f}")

    if args.eval_tasks:
        tasks = sine.heldout_tasks(args.eval_tasks, args.eval_seed)
        results = sine.evaluate(model, phi, tasks, config.inner_lr, executor=executor)
        print(f"held-out mean squared error over {args.eval_tasks} tasks (95% interval), "
              f"fine-tuned on 10 points:")
        for step, (mean, half) in results.items():
            print(f"after {step:2d} steps: {format_interval(mean, half)}")
    # Files last: a failure to write them (a disk filled since the start) loses none of the
    # results printed above.
    if args.save:
        save_npz_atomic(args.save, {"params": phi},
                        {"model": model.name, "config": sine.config_dict(config)})
        print(f"parameters saved to {args.save}")
    if args.plot:
        from ..runs.plotting import plot_sine_fit

        plot_sine_fit(args.plot, sine.X_ALL, task, idx, curve)
        print(f"plot written to {args.plot}")
    return 0
