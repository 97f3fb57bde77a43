"""``minireptile sweep DATASET``: train a grid of configurations and tabulate their results."""

import json
import math
import os
import time
from argparse import Namespace

from ..errors import InputError
from ..runs.config import TrainConfig
from .fewshot_commands import DATASETS, _data_record, add_train_arguments
from .options import config_from_args

# Flags a grid may vary: the training configuration, the data split, the final evaluation.
GRIDABLE = {f for f in TrainConfig.__dataclass_fields__} | {"eval_samples", "num_train"}
# The sweep's own settings and those of ``train`` it decides itself: not sent to the runs.
NOT_SENT = ("run", "few_shot", "grid", "grid_actions", "out", "no_plot", "workers", "threads",
            "scheduler", "checkpoint", "resume", "pretrained", "no_progress", "command",
            "dataset")
# Settings of the data set a worker loads for a point (with the seed: it splits Omniglot).
DATA_SETTINGS = ("data", "num_train", "train_alphabet", "render", "image_size", "cache_dir",
                 "no_cache", "seed")
# Loaded data sets of this process, newest last: (key, splits).
_loaded = []
_KEEP_LOADED = 2


def register(subparsers):
    p = subparsers.add_parser(
        "sweep", help="train a grid of configurations (any train flag) and tabulate them",
        description="Meta-train one run per point of a grid of training configurations, "
        "evaluate each as 'train' does, and write results.csv and results.png in --out.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for dataset in DATASETS:
        s = sub.add_parser(
            dataset.name, help=f"sweep 'train {dataset.name}' configurations",
            description=f"Every flag of 'minireptile train {dataset.name}' sets what the "
            "points share; each --grid FLAG=V1,V2,... varies one of them, and the sweep runs "
            "every combination, one run folder each in --out, on --workers local processes "
            "or the workers of --scheduler. A sweep started again skips finished runs and "
            "resumes unfinished ones from their checkpoints. The data path must be readable "
            "by every worker; so must --out.")
        add_train_arguments(s, dataset)
        s.add_argument("--grid", action="append", default=[], metavar="FLAG=V1,V2,...",
                       help="a training flag (without --) and its values, e.g. "
                            "learning-rate=0.0005,0.001 or sgd=true,false (repeatable)")
        s.add_argument("--out", default="sweep", metavar="DIR",
                       help="folder for the runs, results.csv and results.png "
                            "(default %(default)s)")
        s.add_argument("--no-plot", action="store_true", help="write no PNG")
        actions = {a.option_strings[0][2:]: a for a in s._actions
                   if a.option_strings and a.dest in GRIDABLE}
        s.set_defaults(run=run, few_shot=dataset, grid_actions=actions)


def run(args):
    from ..parallel import make_executor

    points, base, out = _plan(args)
    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run(args, executor, points, base, out)


def _plan(args):
    """Check everything before any work: ``(points, base flags, out folder)``."""
    from .sweep_grid import grid_points, parse_grid

    if args.resume or args.pretrained:
        raise InputError("a sweep resumes its unfinished runs by itself; drop "
                         + ("--resume" if args.resume else "--pretrained"))
    if args.checkpoint != "model_checkpoint":
        raise InputError(f"a sweep keeps each run in a folder of --out; drop --checkpoint "
                         f"{args.checkpoint}")
    grid = parse_grid(args.grid, args.grid_actions)
    if not args.no_plot:
        from ..runs.plotting import require_matplotlib

        require_matplotlib()
    base = {k: v for k, v in vars(args).items() if k not in NOT_SENT}
    # The workers may start elsewhere: every path they read is absolute.
    base["data"] = ([os.path.abspath(p) for p in args.data] if isinstance(args.data, list)
                    else os.path.abspath(args.data))
    if args.cache_dir is not None:
        base["cache_dir"] = os.path.abspath(args.cache_dir)
    out = os.path.abspath(args.out)
    points = []
    for name, values in grid_points(grid, args.grid_actions):
        try:
            config_from_args(TrainConfig, Namespace(**dict(base, **values))).validate()
        except InputError as err:
            raise InputError(f"run {name}: {err}") from None
        points.append((os.path.join(out, name), values))
    return points, base, out


def _run(args, executor, points, base, out):
    from ..runs.run import Run
    from ..runs.sweep import PLOT_FILE, TABLE_FILE, plot_results, read_result, write_table
    from ..stats import format_interval

    os.makedirs(out, exist_ok=True)
    finished = {d: read_result(d) for d, _ in points}
    todo = [p for p in points if finished[p[0]] is None]
    resuming = sum(Run(d).exists() for d, _ in todo)
    print(f"{len(points)} runs in {out}: {len(points) - len(todo)} finished, {len(todo)} to "
          f"train ({resuming} resuming from a checkpoint) on {executor.workers} worker(s)")
    start = time.perf_counter()
    for (directory, _), result in zip(todo, executor.imap(run_point, todo, args.few_shot.name,
                                                          base)):
        finished[directory] = result
        note = f", resumed at iteration {result['resumed_at']}" if result["resumed_at"] else ""
        print(f"{result['run']}: " + ", ".join(
            f"{split} {a['accuracy']:.4f}" for split, a in result["accuracies"].items())
            + f" ({result['seconds']:.1f} s{note})")
    results = [finished[d] for d, _ in points]
    splits = args.few_shot.final if args.eval_samples else ()
    table = os.path.join(out, TABLE_FILE)
    write_table(table, results, splits)
    print(f"\n{len(results)} runs in {time.perf_counter() - start:.1f} s; table written to "
          f"{table}")
    if not args.no_plot:
        png = os.path.join(out, PLOT_FILE)
        plot_results(png, results, splits)
        print(f"plot written to {png}")
    for r in results:
        print(f"{r['run']:<40} " + "  ".join(
            f"{s} {format_interval(a['accuracy'], _half(a['interval']), 3)}"
            for s, a in r["accuracies"].items()))
    return 0


def _half(value):
    return float("nan") if value is None else value


def _load_splits(dataset, args):
    """The point's splits, loaded once per process and data configuration."""
    from ..runs.sweep import check_readable

    key = json.dumps([dataset.name] + [getattr(args, k, None) for k in DATA_SETTINGS])
    for known, splits in _loaded:
        if known == key:
            return splits
    sources = args.data if isinstance(args.data, list) else [args.data]
    check_readable(sources)
    splits = dataset.load(args, args.seed, False, getattr(args, "image_size", 0))
    _loaded.append((key, splits))
    del _loaded[:-_KEEP_LOADED]
    return splits


def run_point(dataset_name, base, point):
    """Worker side: train (or finish) one point of the grid and evaluate it.

    Parameters
    ----------
    dataset_name : str
        ``omniglot`` or ``miniimagenet``.
    base : dict
        The sweep's ``train`` flags (absolute paths), by argparse destination.
    point : (str, dict)
        The run folder and the flags this point sets.

    Returns the dict written to the run's ``result.json``.
    """
    from ..runs.evaluation import evaluate_splits
    from ..runs.run import Run, generators
    from ..runs.sweep import RESULT_FILE, plain, read_result, write_json_atomic
    from ..runs.training import train

    directory, values = point
    done = read_result(directory)
    if done is not None:
        return done
    args = Namespace(**dict(base, **values))
    dataset = {d.name: d for d in DATASETS}[dataset_name]
    config = config_from_args(TrainConfig, args).validate()
    splits = _load_splits(dataset, args)
    model = dataset.model(config.classes, **config.network_options())
    run = Run(directory)
    resumed_at = 0
    if run.exists():
        resumed_at = run.load(model)[3]
    start = time.perf_counter()
    learner = train(model, splits["train"], splits["test"], config, directory,
                    resume=run.exists(), progress=False, log=lambda *_: None,
                    data=_data_record(args, splits))
    # The final evaluation of ``minireptile train``: the same generator, the same splits,
    # recorded in the run folder as it goes, so a point stopped here resumes here.
    _, eval_rng, _ = generators(config.seed + 1)
    accuracies = {}
    if args.eval_samples:
        settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                    config.transductive)
        evaluated = evaluate_splits(learner, splits, dataset.final, settings,
                                    args.eval_samples, eval_rng, record_dir=directory,
                                    log=lambda *_: None)
        for split in dataset.final:
            mean, half, _ = evaluated[split]
            accuracies[split] = {"accuracy": mean,
                                 "interval": None if math.isnan(half) else half}
    result = {"run": os.path.basename(directory),
              "grid": {k: plain(v) for k, v in values.items()},
              "config": config.to_dict(), "data": _data_record(args, splits),
              "eval_samples": args.eval_samples, "accuracies": accuracies,
              "resumed_at": resumed_at, "seconds": round(time.perf_counter() - start, 3)}
    write_json_atomic(os.path.join(directory, RESULT_FILE), result)
    return result
