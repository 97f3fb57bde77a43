"""``minireptile experiment taylor``: the paper's Taylor expansion of the Reptile, FOMAML and
MAML meta-gradients, measured on Omniglot (``--data``) or on sine waves (``--sine``)."""

import argparse
import os
import time

import numpy as np

from ..algorithms import taylor
from ..errors import InputError
from ..problems import sine
from ..runs.config import TrainConfig, make_learner
from ..runs.run import generators
from .data_commands import add_omniglot_arguments, omniglot_from_args
from .options import non_negative_int, positive_int


def _list(kind, check, what):
    def parse(text):
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, "
                                             f"got {text!r}") from None
        if not values or not all(check(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, "
                                             f"got {text!r}")
        return sorted(set(values))
    return parse


def register(sub):
    p = sub.add_parser(
        "taylor",
        help="measure the paper's O(α²) expansion of the Reptile, FOMAML and MAML gradients",
        description="Estimate E[g] of Reptile (g1+…+gk), first-order MAML (gk) and MAML over "
        "many task and mini-batch draws, at initialisation and at a meta-trained Φ, and the "
        "paper's leading terms AvgGrad and AvgGradInner at the same Φ; for each inner SGD "
        "step α (on the mean loss) report the residual ‖E[g] − expansion‖ (which falls like "
        "α², slope 2 on log-log axes) with Monte-Carlo standard errors, and the fitted "
        "coefficient of α·AvgGradInner against the paper's ½k(k−1), k−1 and 2(k−1). Writes "
        "taylor.csv and taylor.png into --out. Computes in float64.")
    add_omniglot_arguments(p, required=False)
    p.add_argument("--sine", action="store_true",
                   help="use the sine-wave tasks instead of Omniglot (no --data)")
    p.add_argument("--k", type=_list(int, lambda v: v >= 1, "integers >= 1"), default="2,3,4",
                   help="mini-batches per draw (default %(default)s)")
    p.add_argument("--lrs", type=_list(float, lambda v: 0 < v < float("inf"),
                                       "positive numbers"),
                   default=None, help="inner SGD step sizes α on the mean loss, at least two "
                   "(default 0.0005,0.001,0.002,0.004)")
    p.add_argument("--draws", type=positive_int, default=100,
                   help="Monte-Carlo draws of a task and its k mini-batches (default 100)")
    p.add_argument("--classes", type=positive_int, default=5,
                   help="Omniglot: classes per task (default 5)")
    p.add_argument("--shots", type=positive_int, default=4,
                   help="Omniglot: examples per class in a task; its classes·shots examples "
                        "are dealt into k distinct mini-batches (default 4)")
    p.add_argument("--inner-batch", type=positive_int, default=None,
                   help="mini-batch size (default 5 for Omniglot, 10 for sine)")
    p.add_argument("--checkpoint", metavar="DIR_OR_FILE",
                   help="Omniglot: take the meta-trained Φ from this training run "
                        "(default: meta-train for --train-iters first)")
    p.add_argument("--train-iters", type=non_negative_int, default=None,
                   help="Reptile meta-iterations giving the meta-trained Φ; 0 measures at "
                        "initialisation only (default 300 for Omniglot, 3000 for sine)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--out", default="taylor", metavar="DIR",
                   help="folder for taylor.csv and taylor.png (default %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")
    p.set_defaults(run=run)


def _deal(rng, n, k, batch):
    """k distinct mini-batches of ``batch`` rows out of ``n`` (a random permutation, dealt)."""
    order = rng.permutation(n)
    return [order[i * batch:(i + 1) * batch] for i in range(k)]


def _sine_problem(args):
    batch = args.inner_batch or 10
    if max(args.k) * batch > len(sine.X_ALL):
        raise InputError(f"--k {max(args.k)} mini-batches of --inner-batch {batch} need "
                         f"{max(args.k) * batch} points; a sine task has {len(sine.X_ALL)}")
    model = sine.sine_model(np.float64)
    x = sine.X_ALL

    def draw(rng, k):
        task = sine.sample_task(rng)
        return [(x[rows], task(x[rows])) for rows in _deal(rng, len(x), k, batch)]

    points = {"init": model.init_params(np.random.default_rng(args.seed))}
    iters = 3000 if args.train_iters is None else args.train_iters
    if iters:
        phi, _ = sine.train(sine.SineConfig(iterations=iters, seed=args.seed),
                            progress=not args.no_progress)
        points[f"Reptile, {iters} iterations"] = phi.astype(np.float64)
    return model, draw, points


def _omniglot_problem(args):
    from ..models.cnn import omniglot_cnn
    from ..problems.tasks import sample_task

    batch = args.inner_batch or 5
    if max(args.k) * batch > args.classes * args.shots:
        raise InputError(f"--k {max(args.k)} mini-batches of --inner-batch {batch} need "
                         f"{max(args.k) * batch} examples; a task has --classes {args.classes}"
                         f" × --shots {args.shots} = {args.classes * args.shots}")
    *_, split_rng = generators(args.seed)
    train_classes, _ = omniglot_from_args(args, split_rng, progress=not args.no_progress)
    model = omniglot_cnn(args.classes, np.float64)

    def draw(rng, k):
        task = sample_task(train_classes, args.classes, args.shots, rng)
        return [(task.images[rows].astype(np.float64), task.labels[rows])
                for rows in _deal(rng, len(task.labels), k, batch)]

    train_rng, _, _ = generators(args.seed)
    points = {"init": model.init_params(train_rng).astype(np.float64)}
    if args.checkpoint:
        from ..models.cnn import omniglot_cnn
        from ..runs.run import open_run

        _, arrays, _ = open_run(args.checkpoint, omniglot_cnn, args.classes)
        points["checkpoint"] = arrays["phi"].astype(np.float64)
        return model, draw, points
    iters = 300 if args.train_iters is None else args.train_iters
    if iters:
        # The reference's 5-way Omniglot settings (inner Adam), for a short run.
        config = TrainConfig(classes=args.classes, shots=1, train_shots=10, inner_batch=10,
                             inner_iters=5, learning_rate=0.001, meta_step=1.0,
                             meta_step_final=0.0, meta_batch=5, meta_iters=iters)
        learner = make_learner(omniglot_cnn(args.classes), points["init"].astype(np.float32),
                               config)
        for it in range(iters):
            learner.train_step(train_classes, args.classes, config.train_shots,
                               config.meta_batch, 1.0 - it / iters, train_rng)
        points[f"Reptile, {iters} iterations"] = learner.phi.astype(np.float64)
    return model, draw, points


def run(args):
    if args.sine == bool(args.data):
        raise InputError("give --data (Omniglot) or --sine, one of the two")
    if args.sine and args.checkpoint:
        raise InputError("--checkpoint holds an Omniglot run; with --sine use --train-iters")
    if not args.no_plot:
        from ..runs.plotting import require_matplotlib

        require_matplotlib()
    lrs = args.lrs or [0.0005, 0.001, 0.002, 0.004]
    if len(lrs) < 2:
        raise InputError(f"--lrs needs at least two step sizes to fit a slope, got {lrs}")
    model, draw, points = (_sine_problem if args.sine else _omniglot_problem)(args)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    rows = taylor.residual_table(model, points, draw, args.k, lrs, args.draws, args.seed)
    csv_path = os.path.join(args.out, "taylor.csv")
    taylor.write_csv(csv_path, rows)
    print(f"{args.draws} draws per Φ and k in {time.perf_counter() - start:.0f} s; "
          f"rows written to {csv_path}")
    if not args.no_plot:
        from ..runs.plotting import plot_taylor

        png = os.path.join(args.out, "taylor.png")
        plot_taylor(png, rows)
        print(f"plot written to {png}")
    print(f"\nα from {lrs[0]:g} to {lrs[-1]:g}; slope of log residual against log α "
          f"(paper: 2); coefficient of α·AvgGradInner at the smallest α (paper in brackets)")
    print(f"{'Φ':<26} {'k':>2} {'algorithm':<9} {'slope':>6} {'coefficient':>18} "
          f"{'‖AvgGrad‖':>10} {'‖AvgGradInner‖ ± se':>22}")
    for s in taylor.summarise(rows):
        print(f"{s['point']:<26} {s['k']:>2} {s['algorithm']:<9} {s['slope']:6.2f} "
              f"{s['coefficient']:9.3f} [{s['predicted']:5.2f}] {s['avg_grad_norm']:10.4g} "
              f"{s['avg_grad_inner_norm']:12.4g} ± {s['avg_grad_inner_se']:.2g}")
    summary = {(s["point"], s["k"], s["algorithm"]): s for s in taylor.summarise(rows)}
    print("\nleading-term ratios (MAML/FOMAML coefficient, paper 2; Reptile/FOMAML, "
          "paper k/2):")
    for point in points:
        for k in args.k:
            if k < 2:
                continue
            foml = summary[(point, k, "foml")]["coefficient"]
            print(f"{point:<26} k={k}: MAML/FOMAML {summary[(point, k, 'maml')]['coefficient'] / foml:.3f}"
                  f", Reptile/FOMAML {summary[(point, k, 'reptile')]['coefficient'] / foml:.3f}")
    return 0
