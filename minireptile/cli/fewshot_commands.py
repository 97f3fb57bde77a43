"""``minireptile train DATASET`` and ``minireptile eval DATASET`` (omniglot, miniimagenet).

The training flags are the reference implementation's (``supervised_reptile/args.py``), with
its defaults, so a command from its README runs after ``minireptile train omniglot`` or
``minireptile train miniimagenet`` (plus ``--data``). ``--checkpoint`` names the run folder, as
in the reference.

One implementation serves both data sets; a :class:`FewShotDataset` holds what differs (the
network, the data options, how the splits are loaded, which splits are evaluated). As in the
reference's ``run_omniglot.py`` and ``run_miniimagenet.py``, training monitors the ``train``
and ``test`` splits; the final evaluation covers train/test for Omniglot and
train/validation/test for Mini-ImageNet.
"""

import os
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import InputError
from ..guard import DivergedError
from ..runs.config import TrainConfig
from ..runs.run import (
    CHECKPOINT_FILE,
    EVAL_OVERRIDES,
    Run,
    checkpoint_file,
    generators,
    open_ensemble,
    open_for_evaluation,
    open_run,
    restore_learner,
)
from ..runs.rundata import (SPLIT_OPTIONS, check_no_overlap, check_render, content_hash,
                             describe_data)
from ..runs.training import train
from ..stats import format_interval
from .data_commands import (
    add_cache_arguments,
    add_omniglot_arguments,
    omniglot_from_args,
    split_options,
)
from .options import (
    add_ensemble_arguments,
    add_parallel_arguments,
    add_setting_options,
    as_flags,
    config_from_args,
    describe_ensemble,
    non_negative_int,
    positive_int,
    repeated_finetuning_warning,
)

SPLIT_LABELS = {"train": "Train", "val": "Validation", "test": "Test"}


@dataclass(frozen=True)
class FewShotDataset:
    """What one few-shot data set brings to the shared train/eval commands.

    Attributes
    ----------
    name : str
        Sub-command name (``minireptile train <name>``).
    model : callable (classes, **options) -> Model
        The reference's network for this data set; ``options`` are a run's
        :meth:`~minireptile.runs.config.TrainConfig.network_options` (e.g. ``filters``).
    add_data_arguments : callable (parser, evaluating=False) -> None
        Adds ``--data`` and the data set's own options (optional when evaluating: the run
        remembers them).
    load : callable (args, seed, progress, image_size) -> dict
        Split name -> ClassSet; ``seed`` is the run's seed (Omniglot splits its characters
        with it, Mini-ImageNet's splits are fixed folders), ``image_size`` the run's
        (0: the data set's own).
    final : tuple of str
        Splits of the final evaluation, in print order; the first is the training split and
        ``train`` / ``test`` are the two monitored during training.
    everything : str
        The ``eval --split`` value meaning every split of ``final``.
    describe : callable (splits) -> str
        The line printed after loading.
    train_help, train_description, eval_help, split_help : str
    """

    name: str
    model: Callable
    add_data_arguments: Callable
    load: Callable
    final: tuple
    everything: str
    describe: Callable
    train_help: str
    train_description: str
    eval_help: str
    split_help: str
    alphabets: bool = False  # classes carry an alphabet: --within-alphabet and --augment


# The reference's flags that an evaluation may also override.
REFERENCE_SETTINGS = ("classes", "shots", "inner_batch", "inner_iters", "replacement",
                      "learning_rate", "eval_batch", "eval_iters", "weight_decay",
                      "transductive", "sgd")
TRAINING_SETTINGS = ("train_shots", "meta_step", "meta_step_final", "meta_batch", "meta_iters",
                     "eval_interval", "foml", "foml_tail", "maml", "combination", "outer",
                     "checkpoint_interval", "snapshot_at", "filters", "image_size",
                     "pretrain_steps", "pretrain_batch", "pretrain_learning_rate")
AFFINE_SETTINGS = ("augment_rotation", "augment_shear", "augment_scale", "augment_translate",
                   "augment_interpolation")
ONESHOT_SETTINGS = ("within_alphabet", "mirror_classes", "augment",
                    "eval_augment") + AFFINE_SETTINGS


def register_train(sub, dataset):
    p = sub.add_parser(dataset.name, help=dataset.train_help,
                       description=dataset.train_description)
    add_train_arguments(p, dataset)
    p.set_defaults(run=run_train, few_shot=dataset)


def add_train_arguments(p, dataset):
    """Every flag of ``train DATASET`` (``sweep DATASET`` takes them too)."""
    dataset.add_data_arguments(p)
    add_setting_options(p, TrainConfig, ("seed",) + REFERENCE_SETTINGS)
    p.add_argument("--checkpoint", default="model_checkpoint", metavar="DIR",
                   help="run folder: checkpoint.npz and metrics.jsonl (default %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --checkpoint where it stopped")
    p.add_argument("--pretrained", action="store_true",
                   help="skip training: evaluate the finished run in --checkpoint")
    p.add_argument("--eval-samples", type=non_negative_int, default=10000,
                   help="tasks in the final evaluation (default %(default)s)")
    add_setting_options(p, TrainConfig, TRAINING_SETTINGS)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if dataset.alphabets:
        add_setting_options(p, TrainConfig, ONESHOT_SETTINGS)
    add_parallel_arguments(p)


def register_eval(sub, dataset):
    p = sub.add_parser(
        dataset.name, help=dataset.eval_help,
        description="Fine-tune the meta-learned network on new tasks and report accuracy "
        "with a 95% interval. Settings not given are taken from the checkpoint, the data "
        "and its split included; a split whose test classes overlap the run's training "
        "classes is refused unless --allow-train-overlap is given.")
    dataset.add_data_arguments(p, evaluating=True)
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed of the evaluation tasks (default: the run's seed + 1 for the "
                        "final evaluation's tasks)")
    add_setting_options(p, TrainConfig, REFERENCE_SETTINGS, defaults=False)
    p.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a run folder or its checkpoint.npz")
    p.add_argument("--eval-samples", type=positive_int, default=10000,
                   help="tasks evaluated per split (default %(default)s)")
    p.add_argument("--no-transductive", dest="transductive", action="store_false",
                   help="classify each query on its own, also for a run trained with "
                        "--transductive")
    p.add_argument("--split", choices=dataset.final + (dataset.everything,),
                   default=dataset.everything,
                   help=dataset.split_help + " (default %(default)s)")
    p.add_argument("--allow-train-overlap", action="store_true",
                   help="evaluate even if the evaluated classes include some the run trained "
                        "on (the output then says the accuracy is not a held-out one)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if dataset.alphabets:
        add_setting_options(p, TrainConfig, ("within_alphabet", "eval_augment") + AFFINE_SETTINGS,
                            defaults=False)
    add_ensemble_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(run=run_eval, few_shot=dataset)


def task_splits(splits, config):
    """The splits as tasks are drawn from them: the training split with its mirror images
    when the run adds them, and every split as within-alphabet class sets when the run asks
    for it (printing which alphabets are skipped)."""
    if "train" in splits:
        train = config.training_classes(splits["train"])
        if train is not splits["train"]:
            print(f"train: {len(train)} classes with their mirror images")
        splits = {**splits, "train": train}
    if not config.within_alphabet:
        return splits
    from ..data.alphabets import as_within_alphabet

    return {name: as_within_alphabet(classes, config.classes, name, print)
            for name, classes in splits.items()}


def _omniglot_splits(args, seed, progress, image_size=0):
    """Training (rotation-augmented) and test characters, split by ``seed`` as in training,
    shrunk to ``image_size`` (0: 28)."""
    *_, split_rng = generators(seed)
    train, test = omniglot_from_args(args, split_rng, augment=True, progress=progress,
                                     size=image_size)
    return {"train": train, "test": test}


def _add_miniimagenet_arguments(parser, evaluating=False):
    """``--data ROOT``, ``--cache-dir``, ``--no-cache``."""
    parser.add_argument("--data", required=not evaluating, metavar="ROOT",
                        help="folder holding train/, val/ and test/, each with one folder of "
                             "*.JPEG images per WordNet ID (the reference's layout)"
                             + ("; default: the run's" if evaluating else ""))
    add_cache_arguments(parser)


def _miniimagenet_splits(args, seed, progress, image_size=0):
    """The three fixed splits (``seed`` is not needed: the folders are the split), shrunk to
    ``image_size`` (0: 84)."""
    from ..data.miniimagenet import IMAGE_SIZE, load_miniimagenet

    return load_miniimagenet(args.data, size=image_size or IMAGE_SIZE, cache_dir=args.cache_dir,
                             use_cache=not args.no_cache, progress=progress)


def omniglot_cnn(classes, **options):
    from ..models.cnn import omniglot_cnn

    return omniglot_cnn(classes, **options)


def miniimagenet_cnn(classes, **options):
    from ..models.cnn import miniimagenet_cnn

    return miniimagenet_cnn(classes, **options)


OMNIGLOT = FewShotDataset(
    name="omniglot", model=omniglot_cnn, add_data_arguments=add_omniglot_arguments,
    load=_omniglot_splits, final=("train", "test"), everything="both",
    describe=lambda s: (f"{len(s['train'])} training classes (rotations included), "
                        f"{len(s['test'])} test classes"),
    train_help="meta-train the Omniglot CNN (the reference's run_omniglot.py)",
    train_description="Meta-train the reference's Omniglot network with Reptile or "
    "first-order MAML, evaluating on training and test characters every --eval-interval "
    "iterations, checkpointing into --checkpoint and finally evaluating on --eval-samples "
    "tasks.",
    eval_help="evaluate a trained Omniglot run",
    split_help="which characters to evaluate on", alphabets=True)

MINIIMAGENET = FewShotDataset(
    name="miniimagenet", model=miniimagenet_cnn,
    add_data_arguments=_add_miniimagenet_arguments,
    load=_miniimagenet_splits, final=("train", "val", "test"), everything="all",
    describe=lambda s: ", ".join(f"{len(c)} {n} classes" for n, c in s.items()),
    train_help="meta-train the Mini-ImageNet CNN (the reference's run_miniimagenet.py)",
    train_description="Meta-train the reference's Mini-ImageNet network with Reptile or "
    "first-order MAML on the train split, evaluating on the train and test splits every "
    "--eval-interval iterations (as the reference), checkpointing into --checkpoint and "
    "finally evaluating on --eval-samples tasks of the train, validation and test splits.",
    eval_help="evaluate a trained Mini-ImageNet run",
    split_help="which split to evaluate on")

DATASETS = (OMNIGLOT, MINIIMAGENET)


def _final_evaluation(learner, config, splits, names, num_samples, progress, executor,
                      record_dir, eval_seed=None):
    """Print ``<Split> accuracy: mean ± half-width`` for each split in ``names``, in order,
    all drawing from one evaluation generator (seeded ``eval_seed``, by default the run's
    seed + 1). Progress is recorded in ``record_dir``, so an interrupted evaluation resumes."""
    from ..runs.evaluation import evaluate_splits

    _, eval_rng, _ = generators(config.seed + 1 if eval_seed is None else eval_seed)
    settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                config.transductive)
    try:
        results = evaluate_splits(learner, splits, names, settings, num_samples, eval_rng,
                                  executor=executor, record_dir=record_dir, progress=progress)
    except DivergedError as err:
        raise DivergedError(f"final evaluation: {err}") from None
    for name in names:
        mean, half, _ = results[name]
        print(f"{SPLIT_LABELS[name]} accuracy: {format_interval(mean, half)} (95% interval, "
              f"{num_samples} tasks)")


def run_train(args):
    from ..parallel import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run_train(args, executor)


def _run_train(args, executor):
    dataset = args.few_shot
    config = config_from_args(TrainConfig, args).validate()
    progress = not args.no_progress
    _check_run_folder(args)
    if args.pretrained:
        # As the reference's --pretrained: the stored weights, evaluated with this command's
        # settings, on the run's own split of the same data.
        _, arrays, meta = open_run(args.checkpoint, dataset.model, config.classes)
        stored = TrainConfig.from_dict(meta["config"])
        if stored.seed != config.seed:
            raise InputError(f"the run in {args.checkpoint!r} was trained with --seed "
                             f"{stored.seed}, which also chose its character split; pass "
                             f"--seed {stored.seed}")
        for name in ("filters", "image_size"):
            trained, given = getattr(stored, name), getattr(config, name)
            if trained != given:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"the run in {args.checkpoint!r} was trained with {flag} "
                                 f"{trained}, got {flag} {given}; pass {flag} {trained}")
        record = meta["extra"].get("data")
        changed = _reuse_split(args, record)
        if changed:
            raise InputError("--pretrained evaluates the run on its own split; changed: "
                             + ", ".join(changed) + " (use `minireptile eval` to evaluate on "
                             "another split)")
    splits = dataset.load(args, config.seed, progress, config.image_size)
    # The network's size depends on --classes alone: refuse impossible settings before
    # printing its table.
    config.validate(splits["train"], splits["test"])
    data = _data_record(args, splits)
    print(dataset.describe(splits))
    model = dataset.model(config.classes, **config.network_options())
    print(model.describe())
    splits = task_splits(splits, config)
    if args.pretrained:
        if record is not None and record.get("content") != data["content"]:
            raise InputError(f"--data holds other images than the run in "
                             f"{args.checkpoint!r} trained on (content {data['content'][:19]}…, "
                             f"run: {record.get('content', '?')[:19]}…, read from "
                             f"{record.get('sources')}); give the run's data, or use "
                             "`minireptile eval` to evaluate on other data")
        learner = restore_learner(model, arrays, meta, config)
    else:
        start = time.perf_counter()
        learner = train(model, splits["train"], splits["test"], config, args.checkpoint,
                        resume=args.resume, progress=progress, data=data, executor=executor)
        print(f"training took {time.perf_counter() - start:.1f} s; run saved in "
              f"{os.path.join(args.checkpoint, CHECKPOINT_FILE)}")
    if args.eval_samples:
        _final_evaluation(learner, config, splits, dataset.final, args.eval_samples, progress,
                          executor, args.checkpoint)
    return 0


def _check_run_folder(args):
    """Refuse a --checkpoint that cannot be used before any data is read (the library checks
    again, under the run's lock)."""
    if args.pretrained:
        return
    if os.path.exists(args.checkpoint) and not os.path.isdir(args.checkpoint):
        raise InputError(f"--checkpoint {args.checkpoint!r} is a file; give a folder for the "
                         "run (created if missing)")
    run = Run(args.checkpoint)
    if args.resume and not run.resumable():
        raise InputError(f"{run.nothing_to_resume()}; drop --resume to start a new run")


def _data_record(args, splits):
    """What the run's classes were drawn from (see :mod:`minireptile.runs.rundata`)."""
    return describe_data(splits, args.data, split_options(args))


def _reuse_split(args, record):
    """Fill ``--data`` and the split options the user left out from the run's ``record``.

    Returns the options the user gave with values other than the run's (for messages).
    """
    if record is None:  # a checkpoint of format 1: the command line decides
        if args.data is None:
            raise InputError("this checkpoint predates stored data records; give --data")
        return []
    if hasattr(args, "render"):
        args.render = check_render(record, args.render)
    if args.data is None:
        sources = record.get("sources") or []
        missing = [p for p in sources if not os.path.exists(p)]
        if not sources or missing:
            raise InputError(f"the run's data {missing or sources} is no longer there; "
                             "give --data (the same images, from any path, are recognised)")
        args.data = sources if hasattr(args, "num_train") else sources[0]
    if not hasattr(args, "num_train"):
        return []
    if args.num_train is None and not args.train_alphabet:
        args.num_train = record.get("num_train")
        args.train_alphabet = record.get("train_alphabet")
        return []
    given = split_options(args)
    return [f"--{k.replace('_', '-')} {given[k]!r} (run: {record.get(k)!r})"
            for k in SPLIT_OPTIONS if given[k] != record.get(k)]


def run_eval(args):
    from ..parallel import make_executor

    with make_executor(args.workers, args.threads, args.scheduler) as executor:
        return _run_eval(args, executor)


def _run_eval(args, executor):
    dataset = args.few_shot
    overrides = {name: getattr(args, name, None) for name in EVAL_OVERRIDES}
    model, config, learner, meta = open_for_evaluation(args.checkpoint, dataset.model,
                                                       overrides, classes=args.classes)
    record = meta["extra"].get("data")
    learner, member_metas = open_ensemble(learner, config, args.ensemble, dataset.model,
                                          overrides, args.finetunings, args.query_views,
                                          data=record)
    changed = _reuse_split(args, record)
    progress = not args.no_progress
    splits = dataset.load(args, config.seed, progress, config.image_size)
    chosen = dataset.final if args.split == dataset.everything else (args.split,)
    if record is not None:
        same = record.get("content") == content_hash(splits)
        print(f"data: {'the run' if same else 'NOT the run'}'s images"
              + (f"; split changed: {', '.join(changed)}" if changed else "; the run's split"))
    members = [("", meta)] + [(f"ensemble member {path!r}: ", m)
                              for path, m in zip(args.ensemble, member_metas)]
    for which, member_meta in members:
        done, total = member_meta["next_iteration"], member_meta["config"]["meta_iters"]
        if done < total:  # a snapshot, or a run stopped early: evaluated, and said so
            print(f"{which}checkpoint after {done} of its {total} meta-iterations")
        try:
            lines = check_no_overlap(member_meta["extra"].get("data"), splits, chosen,
                                     args.allow_train_overlap, SPLIT_LABELS)
        except InputError as err:
            raise InputError(which + str(err)) from None
        for line in lines:
            print(which + as_flags(line, {"allow_train_overlap": "--allow-train-overlap"}))
    splits = task_splits(splits, config)
    print(f"evaluating {model.name}: {config.classes}-way {config.shots}-shot"
          f"{' within one alphabet' if config.within_alphabet else ''}, "
          f"{config.eval_iters} fine-tuning steps of {config.eval_batch}, "
          f"{'transductive' if config.transductive else 'non-transductive'}"
          f"{', support images distorted at every step' if config.eval_augment else ''}"
          f"{describe_ensemble(args)}")
    warning = repeated_finetuning_warning(args, config, config.classes * config.shots)
    if warning:
        print(warning)
    _final_evaluation(learner, config, splits, chosen, args.eval_samples, progress, executor,
                      os.path.dirname(checkpoint_file(args.checkpoint)), eval_seed=args.seed)
    return 0
