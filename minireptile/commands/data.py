"""``minireptile data omniglot``: download, verify and extract the Omniglot release."""

import argparse

from ..data import download
from ..errors import InputError


def _release_name(text):
    try:
        return download.release(text).name
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers):
    p = subparsers.add_parser("data", help="download data sets",
                              description="Download, verify and extract data sets.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    o = sub.add_parser(
        "omniglot", help="the Omniglot zips from the official repository",
        description="Download the official Omniglot zips, check their size and SHA-256, and "
        "extract them into DEST. Interrupted downloads resume from DEST/<name>.zip.part; "
        "verified files are not fetched again.")
    o.add_argument("--dest", required=True, metavar="DIR",
                   help="folder for the zips and the extracted folders (created if missing)")
    o.add_argument("--base-url", default=download.BASE_URL, metavar="URL",
                   help="folder URL to fetch from (default %(default)s)")
    o.add_argument("--only", type=_release_name, action="append", metavar="NAME",
                   help="fetch only this file (repeatable): "
                        + ", ".join(sorted(download.RELEASES)) + " (default: all four)")
    o.add_argument("--no-extract", action="store_true", help="keep the zips only")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    o.set_defaults(run=run_omniglot)


def run_omniglot(args):
    paths = download.download_omniglot(args.dest, names=args.only, base_url=args.base_url,
                                       do_extract=not args.no_extract,
                                       progress=not args.no_progress)
    print("ready; train with " + " ".join(f"--data {p}" for p in paths))
    return 0
