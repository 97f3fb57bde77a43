"""The ``minireptile`` command line.

Each sub-command lives in :mod:`minireptile.cli.commands` and registers its own parser. Bad input
raises :class:`~minireptile.errors.InputError`, which is printed here as one line with exit
status 2; argparse's own errors are printed the same way, one line and status 2. A run
whose numbers stop being finite (:class:`~minireptile.guard.DivergedError`) ends with one
line and status 3; Ctrl-C with status 130.
"""

import argparse
import sys

from ..errors import InputError
from ..guard import EXIT_DIVERGED, DivergedError
from .commands import COMMANDS
from .options import as_flags, flag_of


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like :class:`InputError`'s (no usage block).

    Sub-command parsers inherit the class, so every command line error reads the same."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(
        prog="minireptile",
        description="Reptile meta-learning from scratch in NumPy.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv=None):
    for stream in (sys.stdout, sys.stderr):
        # File names need not be valid UTF-8; print them escaped rather than fail.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ..parallel.threads import set_threads

        # Before any work: every BLAS and OpenMP pool of this process gets its size.
        set_threads(getattr(args, "threads", None))
        return args.run(args) or 0
    except InputError as err:
        print(f"minireptile: error: {_in_flags(err, parser, args)}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable folder, full disk, a file where a folder should be
        where = f"{err.filename}: " if err.filename else ""
        print(f"minireptile: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except DivergedError as err:
        print(f"minireptile: diverged: {_in_flags(err, parser, args)}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"minireptile: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


# Library parameters that a command offers under another name.
_PARAMETER_OPTIONS = {"directory": "checkpoint"}


def _in_flags(err, parser, args):
    """The library's message with the parameters it names (``name=value``) written as this
    command's flags."""
    command = parser
    while command._subparsers is not None:  # descend to the sub-command that ran
        [chooser] = [a for a in command._subparsers._group_actions
                     if isinstance(a, argparse._SubParsersAction)]
        command = chooser.choices[getattr(args, chooser.dest)]
    # Each option under its first long spelling (the others are aliases).
    flags = {action.dest: [o for o in action.option_strings if o.startswith("--")][0]
             for action in command._actions
             if action.option_strings and not isinstance(action, argparse._StoreFalseAction)}
    flags.update({name: flags[dest] for name, dest in _PARAMETER_OPTIONS.items()
                  if dest in flags})
    # A setting this command does not offer is still another command's flag (e.g. a run
    # must be trained with --classes 20 to be evaluated on Lake's runs).
    from ..problems.sine import SineConfig
    from ..runs.config import TrainConfig
    from ..settings import declared

    for config in (TrainConfig, SineConfig):
        for name, declaration in declared(config):
            flags.setdefault(name, flag_of(name, declaration))
    return as_flags(str(err), flags)


def _resume_hint(args):
    """How to continue an interrupted training run, or nothing for other commands."""
    if getattr(args, "command", None) == "experiment":
        return "; run the same command again to resume the unfinished variants"
    if getattr(args, "resume", None) is None or getattr(args, "pretrained", False):
        return ""
    return (f"; the run in {args.checkpoint} keeps its last checkpoint: run the same command "
            "with --resume to continue")


if __name__ == "__main__":
    sys.exit(main())
