"""The ``minireptile`` command line.

Each sub-command lives in :mod:`minireptile.commands` and registers its own parser. Bad input
raises :class:`~minireptile.errors.InputError`, which is printed here as one line with exit
status 2 (argparse's own errors use the same status).
"""

import argparse
import sys

from .commands import COMMANDS
from .errors import InputError


def build_parser():
    parser = argparse.ArgumentParser(
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
        return args.run(args) or 0
    except InputError as err:
        print(f"minireptile: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minireptile: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
