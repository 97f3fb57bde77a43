"""How many networks, fine-tunings and query views should vote: one pass, every combination.

    python benchmarks/search_votes.py --run oneshot_small1 [--run oneshot_small1_b] \
        [--finetunings 4] [--query-views 8] [--eval-samples 400] [--workers 2] \
        [--eval-iters 150] [--eval-batch B] \
        [--augment-rotation DEG --augment-shear S --augment-scale S --augment-translate PX] \
        [--save FILE | --load FILE]

Evaluates Omniglot runs as ``minireptile eval omniglot --split test --eval-augment`` does
(each run's own data, split and settings; ``--eval-iters`` as given, default 150, and the
fine-tuning batch and distortion ranges as given, by default the runs' own) and, on
each task, keeps the class probabilities of every fine-tuning of every network and of every
query view (:class:`minireptile.Ensemble` with ``finetunings`` and ``query_views`` at their
maximum, the runs in the order given). It then prints the accuracy of every smaller
ensemble (the first n networks, the first K fine-tunings of each, the first V views of
each fine-tuning), with its 95% interval and the paired difference against the first
network fine-tuned once on clean queries, so one evaluation prices all the combinations.

The tasks are those of ``eval omniglot`` with the first run's evaluation seed, so the full
combination gives exactly what ``eval omniglot --checkpoint RUN1 --ensemble RUN2 ...
--finetunings K --query-views V --eval-augment`` prints, and the first network fine-tuned
once what ``--eval-augment`` alone prints. A smaller combination is the same kind of vote,
but not the same draws as running it alone: its fine-tunings follow the views of the larger
one in the task's random stream.

Every task has exactly one query per class, as each of Lake's runs has. A last line scores
the whole vote with the queries assigned to the classes one to one: the assignment with the
largest product of the vote's probabilities (:func:`one_to_one`). The published figures for
Lake's benchmark do not use that structure, so the line stands apart from the table.

``--save`` writes the probabilities with what identifies them (the networks' parameters,
the settings and the task seeds); ``--load`` re-prints everything from such a file for the
same runs and settings without evaluating again, and refuses a file that does not match.
"""

import argparse
import hashlib
import sys

import numpy as np

# What --save records of the evaluation's settings, in this order, for --load to compare.
SETTINGS = ("classes, shots, eval batch, eval iters, transductive, finetunings, query views, "
            "within alphabet")
# The evaluation's distortion ranges (``eval --augment-*``), which --save records too.
RANGES = ("rotation", "shear", "scale", "translate")


def votes(ensemble, classes, settings, seed):
    """One task's probabilities, shape (networks, K, 1 + V, queries, classes)
    (:meth:`minireptile.Ensemble.votes`), and its query labels."""
    from minireptile.problems.tasks import sample_eval_task

    num_classes, num_shots, eval_batch, eval_iters, transductive = settings
    rng = np.random.default_rng(seed)
    task = sample_eval_task(classes, num_classes, num_shots, rng)
    return (ensemble.votes(task.support, task.query.images, eval_batch, eval_iters, rng,
                           transductive), task.query.labels)


def one_to_one(probabilities):
    """The most probable one-to-one assignment of each task's queries to its classes.

    Parameters
    ----------
    probabilities : ndarray, shape (tasks, N, N)
        Each task's class probabilities of its N queries (rows) over its N classes.

    Returns
    -------
    ndarray of int, shape (tasks, N)
        A class for every query, each class given to exactly one query, maximising the
        product of the chosen probabilities.
    """
    from scipy.optimize import linear_sum_assignment

    _, queries, classes = probabilities.shape
    if queries != classes:
        raise ValueError(f"one_to_one needs one query per class, got {queries} queries for "
                         f"{classes} classes")
    # log(0) would be an infinite cost, which scipy refuses when every assignment has one:
    # the smallest positive float keeps such a task solvable and still ranks it last.
    cost = -np.log(np.maximum(probabilities, np.finfo(float).tiny))
    return np.stack([linear_sum_assignment(task)[1] for task in cost])


def fingerprint(learner):
    """A network's identity in a saved file: the SHA-256 of its parameters, in hex."""
    return hashlib.sha256(np.ascontiguousarray(learner.phi).tobytes()).hexdigest()


def ranges_of(config):
    """The distortion ranges of a :class:`minireptile.TrainConfig`, in the order of RANGES."""
    return np.array([getattr(config, f"augment_{name}") for name in RANGES])


def load_votes(path, networks, settings, ranges, seeds, run, run_ranges):
    """The probabilities and labels that ``--save`` wrote to ``path``, or an exit naming
    what does not match these runs (``networks``: their fingerprints, in order), settings,
    distortion ranges and task seeds. A file that does not record its ranges was evaluated
    with the runs' own, ``run_ranges``."""
    from minireptile.errors import InputError
    from minireptile.npzfile import load_npz

    try:
        saved, _ = load_npz(path, what="vote file")
    except InputError as error:
        sys.exit(f"search_votes: --load: {error}")
    try:
        probabilities, labels = saved["probabilities"], saved["labels"]
        saved_networks, saved_settings = list(saved["networks"]), saved["settings"]
        saved_seeds = saved["task_seeds"]
        saved_ranges = saved.get("ranges", run_ranges)
    except KeyError as error:
        sys.exit(f"search_votes: --load {path}: not a file that this script's --save wrote "
                 f"(it has no {error})")
    if saved_networks != networks:
        sys.exit(f"search_votes: {path} holds the votes of other networks, or of these in "
                 "another order, than the --run folders given")
    if not np.array_equal(saved_settings, settings):
        sys.exit(f"search_votes: {path} was evaluated with {SETTINGS} = "
                 f"{saved_settings.tolist()}, not {[int(v) for v in settings]}")
    if not np.array_equal(saved_ranges, ranges):
        sys.exit(f"search_votes: {path} was evaluated with distortion ranges "
                 f"{dict(zip(RANGES, saved_ranges.tolist()))}, not "
                 f"{dict(zip(RANGES, ranges.tolist()))}")
    if not np.array_equal(saved_seeds, seeds):
        sys.exit(f"search_votes: {path} holds {len(saved_seeds)} tasks that are not the first "
                 f"{len(seeds)} evaluation draws of {run} (--eval-samples)")
    return probabilities, labels


def interval(x):
    """Half the width of the 95% interval of the mean of ``x`` (normal approximation)."""
    return 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")


def main(argv=None):
    from minireptile.cli.options import add_setting_options, non_negative_int, positive_int
    from minireptile.runs.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True,
                        help="a run folder (repeat: the networks vote in this order)")
    # Counts are refused at parsing, as the command line refuses them (exit status 2).
    parser.add_argument("--finetunings", type=positive_int, default=4)
    parser.add_argument("--query-views", type=non_negative_int, default=8)
    parser.add_argument("--eval-iters", type=positive_int, default=150)
    parser.add_argument("--eval-samples", type=positive_int, default=400)
    parser.add_argument("--workers", type=positive_int, default=None)
    # eval's own batch and range options: the same bounds, refused at parsing as eval
    # refuses them, and by default the run's
    add_setting_options(parser, TrainConfig,
                        ["eval_batch"] + [f"augment_{name}" for name in RANGES], defaults=False)
    saving = parser.add_mutually_exclusive_group()
    saving.add_argument("--save", metavar="FILE",
                        help="write the probabilities to FILE (.npz, written atomically)")
    saving.add_argument("--load", metavar="FILE",
                        help="read the probabilities that --save wrote instead of evaluating")
    args = parser.parse_args(argv)

    from minireptile.data.alphabets import as_within_alphabet
    from minireptile.data.omniglot import IMAGE_SIZE, omniglot_splits
    from minireptile.errors import InputError
    from minireptile.models.cnn import omniglot_cnn
    from minireptile.npzfile import save_npz_atomic
    from minireptile.parallel import make_executor
    from minireptile.parallel.executor import task_seeds
    from minireptile.problems.ensemble import Ensemble
    from minireptile.runs.run import generators, open_for_evaluation
    from minireptile.runs.rundata import recorded_render

    overrides = {"eval_augment": True, "eval_iters": args.eval_iters,
                 "eval_batch": args.eval_batch}
    overrides.update({f"augment_{name}": getattr(args, f"augment_{name}") for name in RANGES})
    try:  # a missing run
        opened = [open_for_evaluation(run, omniglot_cnn, overrides) for run in args.run]
    except InputError as error:
        sys.exit(f"search_votes: {error}")
    config, record = opened[0][1], opened[0][3]["extra"]["data"]
    for run, (_, _, _, meta) in zip(args.run[1:], opened[1:]):
        trained = set(meta["extra"]["data"]["train_classes"])
        if trained != set(record["train_classes"]):
            sys.exit(f"search_votes: {run} trained on other classes than {args.run[0]}")
        if recorded_render(meta["extra"]["data"]) != recorded_render(record):
            sys.exit(f"search_votes: {run} trained on images rendered otherwise than "
                     f"{args.run[0]}")
    try:  # members of other input shapes or distortion settings are refused here
        ensemble = Ensemble([learner for _, _, learner, _ in opened], args.finetunings,
                            args.query_views)
    except InputError as error:
        sys.exit(f"search_votes: {error}")
    settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                config.transductive)
    seeds = task_seeds(generators(config.seed + 1)[1], args.eval_samples)
    networks = [fingerprint(learner) for _, _, learner, _ in opened]
    identity = settings + (args.finetunings, args.query_views, config.within_alphabet)
    ranges = ranges_of(config)
    if args.load:
        run_ranges = ranges_of(TrainConfig.from_dict(opened[0][3]["config"]))
        probabilities, labels = load_votes(args.load, networks, identity, ranges, seeds,
                                           args.run[0], run_ranges)
    else:
        _, test = omniglot_splits(record["sources"], generators(config.seed)[2],
                                  train_alphabets=record["train_alphabet"], progress=False,
                                  size=config.image_size or IMAGE_SIZE,
                                  render=recorded_render(record))
        if config.within_alphabet:
            test = as_within_alphabet(test, config.classes, "test", print)
        with make_executor(args.workers) as executor:
            results = list(executor.imap(votes, seeds, ensemble, executor.share(test),
                                         settings))
        probabilities = np.stack([p for p, _ in results])  # (tasks, nets, K, 1 + V, q, N)
        labels = np.stack([y for _, y in results])
    if args.save:
        # The labels cannot tell tasks apart (every task's queries are in class order, 0 to
        # N − 1), so the file keeps what --load must check instead.
        save_npz_atomic(args.save, {"probabilities": probabilities, "labels": labels,
                                    "task_seeds": seeds, "networks": np.array(networks),
                                    "settings": np.array(identity, dtype=np.int64),
                                    "ranges": ranges},
                        compress=True)

    def accuracy(nets, k, v):
        mean = probabilities[:, :nets, :k, :v + 1].mean(axis=(1, 2, 3))
        return (mean.argmax(-1) == labels).mean(axis=1)

    base = accuracy(1, 1, 0)
    print(f"{args.eval_samples} tasks, {config.classes}-way {config.shots}-shot"
          f"{' within one alphabet' if config.within_alphabet else ''}, "
          f"{config.eval_iters} fine-tuning steps of {config.eval_batch} with --eval-augment "
          f"(rotation {config.augment_rotation:g}°, shear {config.augment_shear:g}, scale "
          f"{config.augment_scale:g}, translate {config.augment_translate:g} px); paired "
          "against the first network fine-tuned once on clean queries")
    for m, run in enumerate(args.run):
        alone = (probabilities[:, m, 0, 0].argmax(-1) == labels).mean(axis=1)
        print(f"network {m + 1} alone ({run}): {100 * alone.mean():.1f} ± "
              f"{100 * interval(alone):.1f}%")
    print("networks  fine-tunings  query views   accuracy        paired difference")
    for nets in range(1, len(args.run) + 1):
        for k in sorted({k for k in (1, 2, args.finetunings) if k <= args.finetunings}):
            for v in sorted({0, args.query_views // 2, args.query_views}):
                acc = accuracy(nets, k, v)
                diff = acc - base
                print(f"{nets:>8}  {k:>12}  {v:>11}   {100 * acc.mean():5.1f} ± "
                      f"{100 * interval(acc):.1f}%   {100 * diff.mean():+5.1f} ± "
                      f"{100 * interval(diff):.1f}")
    whole = accuracy(len(args.run), args.finetunings, args.query_views)
    right = one_to_one(probabilities.mean(axis=(1, 2, 3))) == labels
    assigned = right.mean(axis=1)
    print(f"the whole vote with one query per class, assigned one to one (not comparable "
          f"with Lake's published figures): {100 * assigned.mean():.1f} ± "
          f"{100 * interval(assigned):.1f}%, {100 * (assigned - whole).mean():+.1f} ± "
          f"{100 * interval(assigned - whole):.1f} against the whole vote")
    return 0


if __name__ == "__main__":
    sys.exit(main())
