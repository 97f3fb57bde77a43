"""The ``minireptile`` command line.

Each sub-command lives in :mod:`minireptile.cli.commands` and registers its own parser. Bad input
raises :class:`~minireptile.errors.InputError`, which is printed here as one line with exit
status 2; argparse's own errors are printed the same way, one line and status 2. A run
whose numbers stop being finite (:class:`~minireptile.guard.DivergedError`) ends with one
line and status 3; Ctrl-C with status 130.
"""

import argparse
import sys

from .commands import COMMANDS
from ..errors import InputError
from ..guard import EXIT_DIVERGED, DivergedError


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
        print(f"minireptile: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable folder, full disk, a file where a folder should be
        where = f"{err.filename}: " if err.filename else ""
        print(f"minireptile: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except DivergedError as err:
        print(f"minireptile: diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"minireptile: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


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
