"""Settings declared once: each field of a configuration carries its kind of value, bounds and
help, from which the configuration validates itself and the command line builds its option.

>>> from dataclasses import dataclass
>>> @dataclass
... class Config:
...     steps: int = setting(10, COUNT, "inner steps per task")
...     rate: float = setting(0.1, POSITIVE, "step size")
>>> check_settings(Config(steps=0))
Traceback (most recent call last):
...
minireptile.errors.InputError: steps=0: expected a positive integer

Library messages name a setting as ``name=value``, the way a Python caller passes it; the
command line rewrites those to its flags (:func:`minireptile.cli.options.as_flags`).
"""

import math
from dataclasses import dataclass, field, fields

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Kind:
    """What values a setting accepts.

    Attributes
    ----------
    type : {"int", "float", "flag", "choice", "text"}
    minimum, maximum : float, optional
        Bounds, inclusive unless ``above_minimum`` / ``below_maximum``.
    choices : tuple of str, optional
        For ``"choice"``.
    """

    type: str
    minimum: float = None
    maximum: float = None
    above_minimum: bool = False
    below_maximum: bool = False
    choices: tuple = ()

    def describe(self):
        """What is accepted, in words: ``"an integer >= 1"``, ``"a number in (0, 1]"``."""
        if self.type == "flag":
            return "True or False"
        if self.type == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type == "text":
            return "a string"
        noun = "an integer" if self.type == "int" else "a number"
        positive = ((self.type == "int" and self.minimum == 1 and not self.above_minimum)
                    or (self.type == "float" and self.minimum == 0 and self.above_minimum))
        if positive and self.maximum is None:
            return "a positive integer" if self.type == "int" else "a positive number"
        if self.minimum is not None and self.maximum is not None:
            return (f"{noun} in {'(' if self.above_minimum else '['}{_plain(self.minimum)}, "
                    f"{_plain(self.maximum)}{')' if self.below_maximum else ']'}")
        if self.minimum is not None:
            return f"{noun} {'>' if self.above_minimum else '>='} {_plain(self.minimum)}"
        return noun

    def accepts(self, value):
        """True when ``value`` is of this kind and within its bounds."""
        if self.type == "flag":
            return isinstance(value, (bool, np.bool_))
        if self.type == "choice":
            return value in self.choices
        if self.type == "text":
            return isinstance(value, str)
        if isinstance(value, (bool, np.bool_)):
            return False
        numbers = (int, np.integer) if self.type == "int" else (int, float, np.integer,
                                                                 np.floating)
        if not isinstance(value, numbers) or not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.above_minimum
                                         else value < self.minimum):
            return False
        return self.maximum is None or (value < self.maximum if self.below_maximum
                                        else value <= self.maximum)

    def parse(self, text):
        """The value written as ``text`` (as on a command line); raises ``ValueError`` naming
        what is accepted."""
        try:
            value = int(text) if self.type == "int" else float(text)
        except ValueError:
            raise ValueError(f"expected {self.describe()}, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected {self.describe()} (finite), got {text}")
        if not self.accepts(value):
            raise ValueError(f"expected {self.describe()}, got {text}")
        return value


def _plain(number):
    return int(number) if float(number).is_integer() else number


COUNT = Kind("int", minimum=1)
COUNT_OR_ZERO = Kind("int", minimum=0)
POSITIVE = Kind("float", minimum=0, above_minimum=True)
NON_NEGATIVE = Kind("float", minimum=0)
FLAG = Kind("flag")
TEXT = Kind("text")


def choice(*values):
    """A kind accepting one of ``values``."""
    return Kind("choice", choices=tuple(values))


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting: its kind, its help and, when it differs from
    ``--name-with-dashes``, its command-line flag and metavar; ``aliases`` are further flags
    for it (the spelling another command or the reference uses for the same concept)."""

    kind: Kind
    help: str
    flag: str = None
    metavar: str = None
    aliases: tuple = ()


def setting(default, kind, help, flag=None, metavar=None, aliases=()):
    """A dataclass field declaring a setting (see the module's example)."""
    return field(default=default,
                 metadata={"setting": Setting(kind, help, flag, metavar, tuple(aliases))})


def declared(config):
    """``[(name, Setting), ...]`` of a configuration class or instance, in field order."""
    return [(f.name, f.metadata["setting"]) for f in fields(config) if "setting" in f.metadata]


def check_settings(config):
    """Raise :class:`InputError` for the first declared setting whose value its kind refuses,
    as ``name=value: expected …``."""
    for name, declaration in declared(config):
        value = getattr(config, name)
        if not declaration.kind.accepts(value):
            raise InputError(f"{name}={value!r}: expected {declaration.kind.describe()}")
    return config
