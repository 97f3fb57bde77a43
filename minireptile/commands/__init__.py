"""Sub-commands of the command line; each module exposes ``register(subparsers)``."""

from . import data, sine

COMMANDS = [sine.register, data.register]
