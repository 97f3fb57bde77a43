"""The grid of ``minireptile sweep``: ``--grid flag=v1,v2`` options, each value converted by
the training flag's own parser, and every combination of them."""

import itertools
import os
from argparse import ArgumentTypeError

from ..errors import InputError


def parse_grid(specs, actions):
    """``[(flag, [(text, value), ...]), ...]`` from ``--grid flag=v1,v2`` specifications.

    Parameters
    ----------
    specs : list of str
        e.g. ``["learning-rate=0.0005,0.001", "meta-step=0.5,1"]``.
    actions : dict of str to argparse.Action
        The flags a grid may vary (without the leading ``--``), each converting its values.
    """
    grid = []
    for spec in specs:
        flag, sep, values = spec.partition("=")
        flag = flag.strip().lstrip("-")
        if not sep or not flag:
            raise InputError(f"--grid {spec!r} is not FLAG=VALUE,VALUE,...; e.g. "
                             f"--grid learning-rate=0.0005,0.001")
        if flag not in actions:
            raise InputError(f"unknown --grid flag {flag!r}; a grid varies a training flag: "
                             + ", ".join(sorted(actions)))
        if flag in (f for f, _ in grid):
            raise InputError(f"--grid {flag} is given twice; list all its values in one --grid")
        texts = [t.strip() for t in values.split(",") if t.strip()]
        if not texts:
            raise InputError(f"--grid {flag} has an empty list of values; give at least one, "
                             f"e.g. --grid {flag}=VALUE")
        grid.append((flag, [(text, _convert(actions[flag], flag, text)) for text in texts]))
    return grid


def _convert(action, flag, text):
    if action.nargs == 0:  # a switch such as --sgd: the grid says whether it is on
        answers = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.lower() not in answers:
            raise InputError(f"--grid {flag} takes true or false, got {text!r}")
        return answers[text.lower()]
    try:
        value = action.type(text) if action.type else text
    except (ValueError, ArgumentTypeError) as err:
        raise InputError(f"--grid {flag}: {err}") from None
    if action.choices is not None and value not in action.choices:
        raise InputError(f"--grid {flag}: {text!r} is not one of "
                         + ", ".join(map(str, action.choices)))
    return value


def grid_points(grid, actions):
    """Every combination of the grid's values: ``[(folder name, {dest: value})]``."""
    points = []
    for combination in itertools.product(*[values for _, values in grid]):
        name = ",".join(f"{flag}={text}" for (flag, _), (text, _) in zip(grid, combination))
        name = name.replace(os.sep, "_") or "default"
        values = {actions[flag].dest: value
                  for (flag, _), (_, value) in zip(grid, combination)}
        points.append((name, values))
    return points
