"""``minireptile data``: download Omniglot (``omniglot``), inspect and cache it (``info``).

:func:`add_omniglot_arguments` and :func:`omniglot_from_args` are shared with the commands
that train on Omniglot, so every one of them reads ``--data`` the same way.
"""

import argparse
import time

from ..data import download
from ..data.omniglot import NUM_TRAIN_CHARACTERS, RENDERINGS
from ..errors import InputError
from .options import add_parallel_arguments, non_negative_int


def _release_name(text):
    try:
        return download.release(text).name
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_omniglot_arguments(parser, evaluating=False, required=None):
    """``--data`` (repeatable), ``--num-train``, ``--train-alphabet``, ``--render``,
    ``--cache-dir``, ``--no-cache``. With ``evaluating``, ``--data``, the split and the
    rendering default to the run's;
    ``required`` (default: not ``evaluating``) says whether ``--data`` must be given."""
    required = not evaluating if required is None else required
    parser.add_argument("--data", action="append", required=required, metavar="PATH",
                        help="Omniglot zip or folder, e.g. images_background.zip (repeatable; "
                             "sources are merged before splitting, shared characters kept once)"
                             + ("; default: the run's" if evaluating else ""))
    parser.add_argument("--num-train", type=non_negative_int, default=None,
                        help="characters drawn at random for training, the rest test "
                             f"(default {NUM_TRAIN_CHARACTERS} as the reference"
                             + (", or the run's" if evaluating else "")
                             + "; the small sets have 136 and 156)")
    parser.add_argument("--train-alphabet", action="append", metavar="NAME",
                        help="split by alphabet instead: this alphabet trains (repeatable), "
                             "all others test")
    add_render_argument(parser, evaluating)
    add_cache_arguments(parser)


def add_render_argument(parser, evaluating=False):
    """``--render {nearest,area}``: how each 105×105 drawing is shrunk to 28×28."""
    parser.add_argument("--render", choices=RENDERINGS, default=None,
                        help="how each drawing is shrunk to 28×28: nearest (the reference: "
                             "one input pixel of about 14, black or white) or area (grey: the "
                             "share of the pixels covered that is white, every stroke kept); "
                             + ("default: the run's, and only the run's is accepted"
                                if evaluating else "default nearest; with --pretrained, "
                                "the run's"))


def rendering(args):
    """The ``--render`` in effect (``"nearest"`` unless given)."""
    return getattr(args, "render", None) or "nearest"


def add_cache_arguments(parser):
    """``--cache-dir`` and ``--no-cache``, for every command that decodes images."""
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="decoded-image cache (default $MINIREPTILE_CACHE or "
                             "~/.cache/minireptile)")
    parser.add_argument("--no-cache", action="store_true",
                        help="decode the images every time and write no cache")


def split_options(args):
    """The split options in effect, as stored in a run's data record (Mini-ImageNet, whose
    splits are fixed folders, has none)."""
    if not hasattr(args, "num_train"):
        return {}
    if args.train_alphabet:
        options = {"num_train": None, "train_alphabet": list(args.train_alphabet)}
    else:
        options = {"num_train": NUM_TRAIN_CHARACTERS if args.num_train is None
                   else args.num_train, "train_alphabet": None}
    return {**options, "render": rendering(args)}


def omniglot_from_args(args, rng, augment=True, progress=True, size=0):
    """``(train, test)`` ClassSets from the options of :func:`add_omniglot_arguments`, of
    ``size``×``size`` images (0: 28)."""
    from ..data.omniglot import IMAGE_SIZE, omniglot_splits

    num_train = NUM_TRAIN_CHARACTERS if args.num_train is None else args.num_train
    return omniglot_splits(args.data, rng, num_train=num_train, size=size or IMAGE_SIZE,
                           train_alphabets=args.train_alphabet, augment=augment,
                           cache_dir=args.cache_dir, use_cache=not args.no_cache,
                           progress=progress, render=rendering(args))


def register(subparsers):
    p = subparsers.add_parser("data", help="download and inspect data sets",
                              description="Download, verify, extract and inspect data sets.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="ACTION")
    o = sub.add_parser(
        "omniglot", help="download the Omniglot zips from the official repository",
        description="Download the official Omniglot zips, check their size and SHA-256, and "
        "extract them into DEST. Interrupted downloads resume from DEST/<name>.zip.part; "
        "verified files are not fetched again.")
    o.add_argument("--dest", required=True, metavar="DIR",
                   help="folder for the zips and the extracted folders (created if missing)")
    o.add_argument("--base-url", default=download.BASE_URL, metavar="URL",
                   help="folder URL to fetch from (default %(default)s)")
    o.add_argument("--only", type=_release_name, action="append", metavar="NAME",
                   help="fetch only this file (repeatable): "
                        + ", ".join(sorted(download.RELEASES)) + " (default: all five)")
    o.add_argument("--no-extract", action="store_true", help="keep the zips only")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_parallel_arguments(o, workers=False)
    o.set_defaults(run=run_omniglot)

    i = sub.add_parser(
        "info", help="decode (and cache) Omniglot sources, print counts and the split",
        description="Load Omniglot sources as training would, fill the decoded-image cache "
        "and print what was found.")
    add_omniglot_arguments(i)
    i.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the character split (default %(default)s)")
    i.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_parallel_arguments(i, workers=False)
    i.set_defaults(run=run_info)


def run_omniglot(args):
    paths = download.download_omniglot(args.dest, names=args.only, base_url=args.base_url,
                                       do_extract=not args.no_extract,
                                       progress=not args.no_progress)
    images = [p for p in paths if not p.endswith("all_runs.zip")]
    runs = [p for p in paths if p.endswith("all_runs.zip")]
    if images:
        print("ready; train with " + " ".join(f"--data {p}" for p in images))
    if runs:
        print(f"Lake's one-shot runs: minireptile eval lake --runs {runs[0]}")
    return 0


def run_info(args):
    import numpy as np

    from ..data.omniglot import alphabets, load_omniglot

    start = time.perf_counter()
    classes = load_omniglot(args.data, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                            progress=not args.no_progress, render=rendering(args))
    seconds = time.perf_counter() - start
    print(f"{len(alphabets(classes))} alphabets, {len(classes)} characters, "
          f"{len(classes.pool.images)} images of {classes.pool.images.shape[1:]} "
          f"(loaded in {seconds:.2f} s)")
    train, test = omniglot_from_args(args, np.random.default_rng(args.seed), progress=False)
    print(f"split: {len(train)} training classes (characters × 4 rotations), "
          f"{len(test)} test characters")
    return 0
