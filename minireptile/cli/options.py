"""Options shared by the sub-commands: argument types from the settings' kinds, options
made from declared settings, and library messages rewritten in flags."""

import argparse
import os
import re

from ..settings import COUNT, COUNT_OR_ZERO, NON_NEGATIVE, POSITIVE, declared


def argument_type(kind):
    """An argparse ``type`` for values of ``kind`` (:class:`minireptile.settings.Kind`):
    NaN, infinities and out-of-range values are refused with what is accepted."""

    def parse(text):
        try:
            return kind.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = kind.describe()
    parse.kind = kind
    return parse


positive_int = argument_type(COUNT)
non_negative_int = argument_type(COUNT_OR_ZERO)
positive_float = argument_type(POSITIVE)
non_negative_float = argument_type(NON_NEGATIVE)


def flag_of(name, declaration=None):
    """The command-line flag of setting ``name``: ``--name-with-dashes`` unless declared."""
    if declaration is not None and declaration.flag:
        return declaration.flag
    return "--" + name.replace("_", "-")


def add_setting_options(parser, config, names=None, defaults=True):
    """Add the options of ``config``'s declared settings (all, or ``names`` in that order).

    With ``defaults=False`` every default is None, so a command can tell which settings the
    user gave (an evaluation takes the others from the run)."""
    declarations = dict(declared(config))
    for name in names or declarations:
        declaration = declarations[name]
        kind = declaration.kind
        default = getattr(config, name) if defaults else None
        shown = "" if not defaults or kind.type == "flag" else " (default %(default)s)"
        if not defaults and kind.type != "flag":
            shown = " (default: the run's)"
        options = {"dest": name, "default": default, "help": declaration.help + shown}
        names_on_line = (flag_of(name, declaration), *declaration.aliases)
        if kind.type == "flag":
            parser.add_argument(*names_on_line, action="store_true", **options)
        elif kind.type == "choice":
            parser.add_argument(*names_on_line, choices=kind.choices, **options)
        else:
            if kind.type != "text":
                options["type"] = argument_type(kind)
            parser.add_argument(*names_on_line, metavar=declaration.metavar, **options)


def config_from_args(config_class, args):
    """A ``config_class`` from the parsed options named like its declared settings (the
    settings the command does not offer keep their defaults)."""
    return config_class(**{name: getattr(args, name) for name, _ in declared(config_class)
                           if getattr(args, name, None) is not None})


_PARAMETER = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*)=(True|False|'[^']*'|\S+?)(?=[\s,;:)]|$)")


def as_flags(message, flags):
    """A library message with its ``name=value`` parameters written as flags: ``--name
    value``, ``--name`` for True and ``no --name`` for False; a name with an underscore is
    also replaced where it stands alone. ``flags`` maps the parameter names the command
    offers to their flags; other names are left as they are.

    >>> as_flags("maml=True needs sgd=True and weight_decay=1", {"maml": "--maml",
    ...          "sgd": "--sgd", "weight_decay": "--weight-decay"})
    '--maml needs --sgd and --weight-decay 1'
    """

    def flag(match):
        name, value = match.groups()
        if name not in flags:
            return match.group(0)
        if value == "True":
            return flags[name]
        if value == "False":
            return f"no {flags[name]}"
        return f"{flags[name]} {value}"

    message = _PARAMETER.sub(flag, message)
    for name, option in flags.items():
        if "_" in name:  # never an ordinary word: a bare mention ("lower inner_lr") is a flag
            message = re.sub(rf"(?<![\w.-]){name}(?![\w=])", option, message)
    return message


def add_parallel_arguments(parser, workers=True):
    """``--threads`` (every command) and ``--workers`` (commands with independent work)."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads per BLAS pool in each process (default: 1, or the "
                             "environment's OPENBLAS_NUM_THREADS / OMP_NUM_THREADS when set)")
    if workers:
        parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                            help="processes for independent work: evaluation tasks, "
                                 "variants, independent meta-batch tasks (default: the "
                                 "cores this process may use); results do not depend on it")
        parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                            help="run that work on a Dask cluster instead: the scheduler's "
                                 "tcp://host:port or its scheduler file (needs "
                                 "pip install \"minireptile[cluster]\"; fails after 10 s "
                                 "without an answer or a worker)")


def add_ensemble_arguments(parser):
    """``--ensemble``, ``--finetunings`` and ``--query-views``: evaluation by several
    fine-tunings that vote (:class:`~minireptile.problems.ensemble.Ensemble`)."""
    parser.add_argument("--ensemble", action="append", default=[], metavar="DIR_OR_FILE",
                        help="another run whose network also fine-tunes on every task; the "
                             "query probabilities of all networks are averaged (repeat for "
                             "more members; each must not have trained on the evaluated "
                             "classes)")
    parser.add_argument("--finetunings", type=positive_int, default=1, metavar="K",
                        help="fine-tune each network K times per task and average the "
                             "probabilities; the fine-tunings differ by their mini-batch "
                             "order and, with --eval-augment, by their distortions "
                             "(default %(default)s)")
    parser.add_argument("--query-views", type=non_negative_int, default=0, metavar="V",
                        help="after each fine-tuning, also classify V copies of the queries "
                             "distorted with the --eval-augment ranges (which it needs) and "
                             "average their probabilities with the queries' own "
                             "(default %(default)s)")


def describe_ensemble(args):
    """``"; ensemble of …"`` for the evaluation's header line ("" for a single
    fine-tuning)."""
    networks = 1 + len(args.ensemble)
    if networks == 1 and args.finetunings == 1 and args.query_views == 0:
        return ""
    views = (f" over the queries and {args.query_views} distorted cop"
             f"{'ies' if args.query_views > 1 else 'y'}" if args.query_views else "")
    return (f"; ensemble of {networks} network{'s' * (networks > 1)} × {args.finetunings} "
            f"fine-tuning{'s' * (args.finetunings > 1)}, query probabilities averaged{views}")


def repeated_finetuning_warning(args, config, support_size):
    """A warning when ``--finetunings`` K > 1 would repeat one fine-tuning K times: without
    ``--eval-augment``, a mini-batch that holds the whole support set has the same summed
    gradient in any order (up to rounding). None otherwise."""
    if args.finetunings > 1 and not config.eval_augment and config.eval_batch >= support_size:
        return (f"warning: --finetunings {args.finetunings} repeats one fine-tuning: every "
                f"mini-batch of --eval-batch {config.eval_batch} holds all {support_size} "
                "support images; add --eval-augment or give a smaller --eval-batch")
    return None


def output_path(text):
    """A file path whose folder exists (checked before any work starts)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(
            f"folder {folder!r} does not exist; create it or choose another path"
        )
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK):
        # Checked now, not after hours of training.
        raise argparse.ArgumentTypeError(f"folder {folder!r} is not writable; choose another "
                                         "path")
    return text
