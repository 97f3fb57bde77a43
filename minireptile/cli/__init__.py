"""The ``minireptile`` command line, on top of the library: each command parses its flags,
builds the library's configuration and calls it (:mod:`.program` holds the entry point)."""

from .program import build_parser, main

__all__ = ["build_parser", "main"]
