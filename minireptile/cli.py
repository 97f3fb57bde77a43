"""The ``minireptile`` command line.

Each sub-command lives in :mod:`minireptile.commands` and registers its own parser. Bad input
raises :class:`~minireptile.errors.InputError`, which is printed here as one line with exit
status 2; argparse's own errors are printed the same way, one line and status 2.
"""

import argparse
import sys

from .commands import COMMANDS
from .errors import InputError


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .threads import set_threads

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
    except KeyboardInterrupt:
        print("minireptile: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
