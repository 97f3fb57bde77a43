"""Sub-commands of the command line; each module exposes ``register(subparsers)``."""

from . import data_commands as data
from . import demo_command as demo
from . import experiment_command as experiment
from . import fewshot_commands as fewshot
from . import lake_command as lake
from . import sine_command as sine
from . import sweep_command as sweep


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
