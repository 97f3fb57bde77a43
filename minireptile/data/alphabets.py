"""Within-alphabet tasks: every N-way task draws its N classes from one alphabet.

Lake, Salakhutdinov & Tenenbaum (2015)'s one-shot runs are 20-way within one alphabet, where
the characters look alike. :class:`AlphabetClassSet` is a :class:`~.pool.ClassSet` whose
:meth:`~AlphabetClassSet.sample_rows` first picks an alphabet, then N of its classes. A class's
alphabet is the first part of its pool class name (``"Greek/character01"`` → ``Greek``); the
rotated copies of a training character are separate classes of the same alphabet.

The alphabet of a task is drawn **uniformly over the eligible alphabets** (those with at
least N classes), not in proportion to their size: Lake's benchmark gives each alphabet the
same number of runs, so an accuracy over such tasks is the mean over alphabets, and in
training a small alphabet's look-alike characters are met as often as a large one's.
Alphabets with fewer than N classes are skipped.
"""

import numpy as np

from ..errors import InputError, check_generator
from .classes import ClassSet


def alphabet_of(name):
    """``"Greek"`` for ``"Greek/character01"``."""
    return str(name).split("/", 1)[0]


class AlphabetClassSet(ClassSet):
    """The classes of ``classes``, sampled N at a time from one alphabet.

    Parameters
    ----------
    classes : ClassSet
    num_classes : int
        N, the classes per task; alphabets with fewer classes are skipped.
    split : str
        Name of the split, for messages.

    Attributes
    ----------
    groups : list of (M_a,) int64 arrays
        Rows of the eligible alphabets' classes, alphabets sorted by name.
    names : list of str
        The eligible alphabets, sorted.
    skipped : dict of str to int
        Alphabets with fewer than N classes and their class counts.
    """

    def __init__(self, classes, num_classes, split="this"):
        super().__init__(classes.pool, classes.base, classes.turns, classes.mirrored)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        by_alphabet = {}
        for row, base in enumerate(self.base):
            by_alphabet.setdefault(alphabet_of(self.pool.names[base]), []).append(row)
        if not by_alphabet:
            raise InputError(f"the {split} split holds no classes")
        sizes = {name: len(rows) for name, rows in by_alphabet.items()}
        self.names = sorted(n for n, size in sizes.items() if size >= num_classes)
        self.skipped = {n: size for n, size in sorted(sizes.items()) if size < num_classes}
        if not self.names:
            largest = max(sizes, key=lambda n: (sizes[n], n))
            raise InputError(
                f"within_alphabet=True needs an alphabet of at least classes={num_classes} "
                f"classes, but the largest alphabet of the {split} split, {largest}, has "
                f"{sizes[largest]}; use classes={sizes[largest]} or fewer")
        self.groups = [np.array(by_alphabet[n], dtype=np.int64) for n in self.names]

    def __repr__(self):
        return (f"AlphabetClassSet({len(self.names)} alphabets of >= {self.num_classes} "
                f"classes, {len(self.skipped)} skipped; {len(self)} classes)")

    @property
    def task_kind(self):
        """How tasks are drawn (part of an evaluation record's key)."""
        return f"{self.num_classes}-way within one of " + ",".join(self.names)

    def describe(self, split):
        """One line: which alphabets tasks are drawn from and how many were skipped."""
        skipped = (" (" + ", ".join(f"{n}: {s}" for n, s in self.skipped.items()) + ")"
                   if self.skipped else "")
        return (f"{split}: {self.num_classes}-way tasks within one of {len(self.names)} "
                f"alphabets; {len(self.skipped)} alphabets with fewer than "
                f"{self.num_classes} classes skipped{skipped}")

    def sample_rows(self, num_classes, rng):
        """An alphabet uniformly among the eligible ones, then ``num_classes`` distinct
        classes of it in random order."""
        check_generator(rng)
        if num_classes > self.num_classes:
            raise InputError(f"this split was prepared for {self.num_classes}-way "
                             f"within-alphabet tasks, got {num_classes}-way")
        group = self.groups[int(rng.integers(len(self.groups)))]
        return group[rng.permutation(len(group))[:num_classes]]


def within_alphabet(splits, num_classes):
    """``{split name: AlphabetClassSet}`` for a dict of ClassSets."""
    return {name: AlphabetClassSet(classes, num_classes, name)
            for name, classes in splits.items()}


def as_within_alphabet(classes, num_classes, split, log=None):
    """``classes`` as an :class:`AlphabetClassSet` for N-way tasks (unchanged if it is one
    already); ``log`` receives the line saying which alphabets were skipped."""
    if isinstance(classes, AlphabetClassSet) and classes.num_classes == num_classes:
        return classes
    wrapped = AlphabetClassSet(classes, num_classes, split)
    if log is not None:
        log(wrapped.describe(split))
    return wrapped
