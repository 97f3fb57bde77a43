"""Argument types shared by the sub-commands: each rejects bad values with a clear message."""

import argparse
import math
import os


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _number(text, wanted):
    """``float(text)``, refusing NaN and infinities (every numeric flag is a finite number)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {wanted} (finite), got {text}")
    return value


def positive_float(text):
    value = _number(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text):
    value = _number(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


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
