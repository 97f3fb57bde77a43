"""``minireptile train omniglot`` and ``minireptile eval omniglot``.

The training flags are the reference implementation's (``supervised_reptile/args.py``), with
its defaults, so a command from its README runs after ``minireptile train omniglot`` (plus
``--data``). ``--checkpoint`` names the run folder, as in the reference.
"""

import os
import time

import numpy as np

from ..cnn import omniglot_cnn
from ..errors import InputError
from ..fewshot import evaluate_accuracy
from ..reptile import OUTER_OPTIMIZERS
from ..training import CHECKPOINT_FILE, TrainConfig, generators, make_learner, train
from ..training import load_checkpoint
from .args import non_negative_int, positive_float, positive_int
from .data import add_omniglot_arguments, omniglot_from_args

DEFAULTS = TrainConfig()


def add_reference_arguments(p, defaults=True):
    """The reference's flags. With ``defaults=False`` every default is None, so an
    evaluation can tell which settings the user overrides and take the rest from the
    checkpoint."""

    def d(name):
        return getattr(DEFAULTS, name) if defaults else None

    p.add_argument("--seed", type=non_negative_int, default=d("seed"),
                   help="random seed (default %(default)s)")
    p.add_argument("--classes", type=positive_int, default=d("classes"),
                   help="classes per task, N (default %(default)s)")
    p.add_argument("--shots", type=positive_int, default=d("shots"),
                   help="examples per class in evaluation tasks, K (default %(default)s)")
    p.add_argument("--inner-batch", type=positive_int, default=d("inner_batch"),
                   help="inner mini-batch size (default %(default)s)")
    p.add_argument("--inner-iters", type=positive_int, default=d("inner_iters"),
                   help="inner steps per task (default %(default)s)")
    p.add_argument("--replacement", action="store_true", default=None if not defaults else False,
                   help="sample inner mini-batches with replacement")
    p.add_argument("--learning-rate", type=positive_float, default=d("learning_rate"),
                   help="inner Adam/SGD step size (default %(default)s)")
    p.add_argument("--eval-batch", type=positive_int, default=d("eval_batch"),
                   help="mini-batch size when fine-tuning for evaluation (default %(default)s)")
    p.add_argument("--eval-iters", type=positive_int, default=d("eval_iters"),
                   help="fine-tuning steps for evaluation (default %(default)s)")
    p.add_argument("--weight-decay", type=positive_float, default=d("weight_decay"),
                   help="multiply the weights by this rate before every inner step "
                        "(default %(default)s: none)")
    p.add_argument("--transductive", action="store_true",
                   default=None if not defaults else False,
                   help="classify all query images in one batch (batch norm sees them all)")
    p.add_argument("--sgd", action="store_true", default=None if not defaults else False,
                   help="inner SGD instead of Adam (beta1 = 0)")


def register_train(sub):
    p = sub.add_parser(
        "omniglot", help="meta-train the Omniglot CNN (the reference's run_omniglot.py)",
        description="Meta-train the reference's Omniglot network with Reptile or first-order "
        "MAML, evaluating on training and test characters every --eval-interval iterations, "
        "checkpointing into --checkpoint and finally evaluating on --eval-samples tasks.")
    add_omniglot_arguments(p)
    add_reference_arguments(p)
    p.add_argument("--checkpoint", default="model_checkpoint", metavar="DIR",
                   help="run folder: checkpoint.npz and metrics.jsonl (default %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --checkpoint where it stopped")
    p.add_argument("--pretrained", action="store_true",
                   help="skip training: evaluate the finished run in --checkpoint")
    p.add_argument("--train-shots", type=non_negative_int, default=DEFAULTS.train_shots,
                   help="examples per class in training tasks (default: --shots)")
    p.add_argument("--meta-step", type=positive_float, default=DEFAULTS.meta_step,
                   help="outer step size at the start (default %(default)s)")
    p.add_argument("--meta-step-final", type=float, default=DEFAULTS.meta_step_final,
                   help="outer step size at the end, annealed linearly (default %(default)s)")
    p.add_argument("--meta-batch", type=positive_int, default=DEFAULTS.meta_batch,
                   help="tasks per outer step (default %(default)s)")
    p.add_argument("--meta-iters", type=positive_int, default=DEFAULTS.meta_iters,
                   help="outer steps (default %(default)s)")
    p.add_argument("--eval-samples", type=non_negative_int, default=10000,
                   help="tasks in the final evaluation (default %(default)s)")
    p.add_argument("--eval-interval", type=positive_int, default=DEFAULTS.eval_interval,
                   help="iterations between evaluations during training (default %(default)s)")
    p.add_argument("--foml", action="store_true", help="first-order MAML instead of Reptile")
    p.add_argument("--foml-tail", type=positive_int, default=None,
                   help="FOMAML: examples per class held out for the final inner step")
    p.add_argument("--combination", default="", metavar="NAME",
                   help="meta-gradient from inner gradients, e.g. g1+g2, (g1+g2)/2, g2, "
                        "reptile, last (default: plain Reptile, or FOMAML with --foml)")
    p.add_argument("--outer", choices=sorted(OUTER_OPTIMIZERS), default=DEFAULTS.outer,
                   help="outer update: sgd = Φ+ε(W̄−Φ); adam = Adam on Φ−W̄ (default %(default)s)")
    p.add_argument("--checkpoint-interval", type=positive_int,
                   default=DEFAULTS.checkpoint_interval,
                   help="iterations between checkpoints (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run_train)


def register_eval(sub):
    p = sub.add_parser(
        "omniglot", help="evaluate a trained Omniglot run",
        description="Fine-tune the meta-learned network on new tasks and report accuracy "
        "with a 95%% interval. Settings not given are taken from the checkpoint.")
    add_omniglot_arguments(p)
    add_reference_arguments(p, defaults=False)
    p.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a run folder or its checkpoint.npz")
    p.add_argument("--eval-samples", type=positive_int, default=10000,
                   help="tasks evaluated per split (default %(default)s)")
    p.add_argument("--split", choices=("train", "test", "both"), default="both",
                   help="which characters to evaluate on (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run_eval)


def config_from_args(args):
    return TrainConfig(
        classes=args.classes, shots=args.shots, train_shots=args.train_shots,
        inner_batch=args.inner_batch, inner_iters=args.inner_iters,
        replacement=args.replacement, learning_rate=args.learning_rate,
        meta_step=args.meta_step, meta_step_final=args.meta_step_final,
        meta_batch=args.meta_batch, meta_iters=args.meta_iters, eval_batch=args.eval_batch,
        eval_iters=args.eval_iters, eval_interval=args.eval_interval,
        weight_decay=args.weight_decay, transductive=args.transductive, foml=args.foml,
        foml_tail=args.foml_tail or 0, sgd=args.sgd, seed=args.seed, outer=args.outer,
        combination=args.combination,
        checkpoint_interval=args.checkpoint_interval,
    )


def load_splits(args, seed, progress):
    """Training (rotation-augmented) and test characters, split by ``seed`` as in training."""
    *_, split_rng = generators(seed)
    return omniglot_from_args(args, split_rng, augment=True, progress=progress)


def run_train(args):
    config = config_from_args(args).validate()
    progress = not args.no_progress
    train_classes, test_classes = load_splits(args, config.seed, progress)
    print(f"{len(train_classes)} training classes (rotations included), "
          f"{len(test_classes)} test classes")
    model = omniglot_cnn(config.classes)
    print(model.describe())
    if args.pretrained:
        learner = _restore(args.checkpoint, model)
        config = _stored_config(args.checkpoint, model)
    else:
        start = time.perf_counter()
        learner = train(model, train_classes, test_classes, config, args.checkpoint,
                        resume=args.resume, progress=progress)
        print(f"training took {time.perf_counter() - start:.1f} s; run saved in "
              f"{os.path.join(args.checkpoint, CHECKPOINT_FILE)}")
    if args.eval_samples:
        _, eval_rng, _ = generators(config.seed + 1)
        for name, classes in (("Train", train_classes), ("Test", test_classes)):
            mean, half, _ = evaluate_accuracy(
                learner, classes, config.classes, config.shots, config.eval_batch,
                config.eval_iters, args.eval_samples, eval_rng, config.transductive, progress)
            print(f"{name} accuracy: {mean:.4f} ± {half:.4f} (95% interval, "
                  f"{args.eval_samples} tasks)")
    return 0


def _checkpoint_file(path):
    return os.path.join(path, CHECKPOINT_FILE) if os.path.isdir(path) else path


def _stored_config(path, model):
    _, meta = load_checkpoint(_checkpoint_file(path), model)
    return TrainConfig.from_dict(meta["config"])


def _restore(path, model, config=None):
    """A learner holding the checkpoint's Φ and inner-optimiser state."""
    arrays, meta = load_checkpoint(_checkpoint_file(path), model)
    config = config or TrainConfig.from_dict(meta["config"])
    learner = make_learner(model, arrays["phi"].copy(), config)
    learner.load_state_dict({k[len("state."):]: v for k, v in arrays.items()
                             if k.startswith("state.")})
    return learner


def _peek_classes(path):
    """The number of classes a checkpoint's network was trained for."""
    from ..checkpoint import load_npz

    _, meta = load_npz(_checkpoint_file(path))
    if meta.get("kind") != "minireptile-train":
        raise InputError(f"{path!r} is not a minireptile training checkpoint")
    return int(meta["config"]["classes"])


def eval_config(args):
    """The checkpoint's configuration with the flags the user gave laid over it."""
    classes = _peek_classes(args.checkpoint)
    if args.classes is not None and args.classes != classes:
        raise InputError(f"the checkpoint's network classifies {classes} classes, got "
                         f"--classes {args.classes}; omit --classes or train a {args.classes}-way "
                         "network")
    model = omniglot_cnn(classes)
    stored = _stored_config(args.checkpoint, model).to_dict()
    for name in ("seed", "shots", "inner_batch", "inner_iters", "replacement", "learning_rate",
                 "eval_batch", "eval_iters", "weight_decay", "transductive", "sgd"):
        value = getattr(args, name, None)
        if value is not None:
            stored[name] = value
    return model, TrainConfig.from_dict(stored).validate()


def run_eval(args):
    model, config = eval_config(args)
    progress = not args.no_progress
    train_classes, test_classes = load_splits(args, config.seed, progress)
    learner = _restore(args.checkpoint, model, config)
    print(f"evaluating {model.name}: {config.classes}-way {config.shots}-shot, "
          f"{config.eval_iters} fine-tuning steps of {config.eval_batch}, "
          f"{'transductive' if config.transductive else 'non-transductive'}")
    _, eval_rng, _ = generators(config.seed + 1)
    splits = {"train": train_classes, "test": test_classes}
    chosen = ("train", "test") if args.split == "both" else (args.split,)
    for name in chosen:
        mean, half, _ = evaluate_accuracy(
            learner, splits[name], config.classes, config.shots, config.eval_batch,
            config.eval_iters, args.eval_samples, eval_rng, config.transductive, progress)
        print(f"{name.capitalize()} accuracy: {mean:.4f} ± {half:.4f} "
              f"(95% interval, {args.eval_samples} tasks)")
    return 0
