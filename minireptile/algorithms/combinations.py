"""Meta-gradients built from the inner-loop gradients g1 … gk.

With k steps of SGD at learning rate α from Φ, ``Φ − W = α (g1 + … + gk)``: Reptile is the
combination ``g1+…+gk``, first-order MAML (for k = 2) is ``g2``, joint training is ``g1`` with
k = 1. A combination names non-negative weights ``c_i`` and the update is

    Φ ← Φ − ε · α · Σ c_i g_i

Accepted names (whitespace ignored):

* sums of gradients: ``g1``, ``g2``, ``g1+g2``, ``g1+g3``, …
* averages: ``(g1+g2)/2``, ``(g1+g2+g3)/3``, … (the sum divided by a positive integer)
* ``reptile`` (all k gradients, i.e. ``Φ − W``) and ``last`` (``gk`` alone, first-order MAML)
"""

import re
from dataclasses import dataclass

from ..errors import InputError

MAX_K = 16
_TERM = re.compile(r"g([1-9][0-9]*)")
_AVERAGE = re.compile(r"\((.+)\)/([1-9][0-9]*)")

# The comparison of the reference README (its --inner-iters follows from each name).
REFERENCE_COMBINATIONS = (
    "g1", "g1+g2", "(g1+g2)/2", "g2", "g1+g2+g3", "(g1+g2+g3)/3", "g3", "g4",
    "g1+g2+g3+g4", "(g1+g2+g3+g4)/4",
)


@dataclass(frozen=True)
class Combination:
    """A weighted sum of inner-loop gradients.

    Attributes
    ----------
    name : str
        As given, without spaces.
    weights : dict of int to float
        ``{i: c_i}`` for explicit terms (1-based); empty for ``reptile`` and ``last``.
    kind : {"terms", "reptile", "last"}
    """

    name: str
    weights: tuple
    kind: str = "terms"

    @property
    def needs_k(self):
        """The smallest number of inner steps the combination needs."""
        return max(i for i, _ in self.weights) if self.kind == "terms" else 1

    def coefficients(self, k):
        """The weight of each of g1 … gk, a list of length k."""
        if k < self.needs_k:
            raise InputError(f"combination {self.name!r} needs at least {self.needs_k} inner "
                             f"steps, got inner_iters={k}")
        if self.kind == "reptile":
            return [1.0] * k
        if self.kind == "last":
            return [0.0] * (k - 1) + [1.0]
        coefficients = [0.0] * k
        for i, weight in self.weights:
            coefficients[i - 1] += weight
        return coefficients


def parse_combination(text):
    """Parse a name such as ``"(g1+g2)/2"``; raises :class:`InputError` naming what is
    accepted."""
    name = re.sub(r"\s+", "", str(text))
    if name in ("reptile", "last"):
        return Combination(name, (), kind=name)
    body, divisor = name, 1
    average = _AVERAGE.fullmatch(name)
    if average:
        body, divisor = average.group(1), int(average.group(2))
    terms = body.split("+")
    indices = []
    for term in terms:
        match = _TERM.fullmatch(term)
        if not match or not 1 <= int(match.group(1)) <= MAX_K:
            raise InputError(
                f"unknown gradient combination {text!r}; use sums of g1…g{MAX_K} such as "
                "'g1+g2', averages such as '(g1+g2)/2', 'reptile' or 'last'"
            )
        indices.append(int(match.group(1)))
    if len(set(indices)) != len(indices):
        raise InputError(f"gradient combination {text!r} repeats a term; "
                         "name each gradient once")
    return Combination(name, tuple((i, 1.0 / divisor) for i in sorted(indices)))


def parse_combinations(text):
    """A comma-separated list of names (e.g. the ``--combinations`` option)."""
    names = [part for part in str(text).split(",") if part.strip()]
    if not names:
        raise InputError(f"no gradient combination in {text!r}; "
                         f"e.g. {','.join(REFERENCE_COMBINATIONS[:4])}")
    return [parse_combination(part) for part in names]
