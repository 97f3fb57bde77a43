"""Sub-commands of the command line; each module exposes ``register(subparsers)``."""

from . import data, demo, experiment, fewshot, lake, sine, sweep


def register_train(subparsers):
    p = subparsers.add_parser("train",
                              help="meta-train a few-shot classifier (omniglot, miniimagenet)",
                              description="Meta-train a few-shot classifier.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for dataset in fewshot.DATASETS:
        fewshot.register_train(sub, dataset)


def register_eval(subparsers):
    p = subparsers.add_parser("eval", help="evaluate a trained few-shot classifier",
                              description="Evaluate a trained few-shot classifier.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for dataset in fewshot.DATASETS:
        fewshot.register_eval(sub, dataset)
    lake.register_eval(sub)


COMMANDS = [sine.register, register_train, register_eval, experiment.register, sweep.register,
            data.register, demo.register]
