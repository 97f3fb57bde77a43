"""``minireptile demo``: the interactive one-shot drawing demo as a local web page."""

import argparse

from .options import add_parallel_arguments


def port_number(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") \
            from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free "
                                         f"port), got {value}")
    return value


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="the one-shot drawing demo as a local web page",
        description="Serve a page where you draw a few symbols, one per class, then another "
        "drawing: the meta-learned network is fine-tuned on your classes and shows how likely "
        "the new drawing is to belong to each, beside the same fine-tuning from a random "
        "initialisation. Also a JSON API (POST /api/predict, GET /api/health).")
    p.add_argument("--checkpoint", metavar="RUN", default=None,
                   help="an Omniglot training run (folder or checkpoint.npz) to use instead "
                   "of the built-in 5-way model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000,
                   help="port to listen on (default %(default)s; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    add_parallel_arguments(p, workers=False)
    p.set_defaults(run=run)


def run(args):
    from ..demo.networks import load_builtin, load_run
    from ..demo.server import serve

    predictor = load_run(args.checkpoint) if args.checkpoint else load_builtin()
    return serve(predictor, args.host, args.port, open_browser=args.open)
