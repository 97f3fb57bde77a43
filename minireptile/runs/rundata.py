"""What a training run remembers of its data, and the checks that use it.

A run's checkpoint stores a *data record* (format 2)::

    {"content": "sha256:…",            hash of the decoded classes the split was drawn from
     "sources": ["/abs/path.zip", …],  where they were read (informative only)
     "num_train": 1200,                the split options (None when not applicable)
     "train_alphabet": None,
     "render": "nearest",              how the drawings were shrunk (absent: "nearest")
     "train_classes": ["Greek/character01", …]}   the classes the network trained on

The content hash is taken over the decoded images and class names, not over paths or file
bytes, so the same data reached through a symlink, a moved folder, a copy or its extracted
folder is recognised, and a different file at the same path is not. Resume compares the
record without the paths; evaluation reuses the sources and the split by default and refuses
to score classes the network trained on as if they were held out.
"""

import hashlib
import os

from ..errors import InputError

SPLIT_OPTIONS = ("num_train", "train_alphabet")
# Runs recorded before the rendering was a choice all used the reference's.
DEFAULT_RENDER = "nearest"


def content_hash(splits):
    """``"sha256:…"`` over the distinct image pools behind ``splits`` (dict of ClassSets),
    in order."""
    pools = []
    for classes in splits.values():
        if not any(pool is classes.pool for pool in pools):
            pools.append(classes.pool)
    digest = hashlib.sha256()
    for pool in pools:
        digest.update(pool.content_hash().encode())
    return "sha256:" + digest.hexdigest()


def describe_data(splits, sources, options):
    """The data record of a run trained on ``splits["train"]``.

    Parameters
    ----------
    splits : dict of str -> ClassSet
        As loaded for the run; ``"train"`` is the training split.
    sources : str or list of str
        The ``--data`` value(s).
    options : dict
        The split options (:data:`SPLIT_OPTIONS`) in effect, and ``"render"`` for data
        that has a choice of rendering (Omniglot).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    record = {"content": content_hash(splits),
              "sources": [os.path.abspath(os.fspath(p)) for p in sources]}
    record.update({name: options.get(name) for name in SPLIT_OPTIONS})
    if "render" in options:
        record["render"] = options["render"]
    record["train_classes"] = splits["train"].base_names()
    return record


def recorded_render(record):
    """How the run's drawings were shrunk (see :func:`minireptile.data.omniglot.decode_image`);
    ``record`` may be None (a checkpoint that predates data records)."""
    return (record or {}).get("render") or DEFAULT_RENDER


def check_render(record, render, what="evaluate"):
    """Refuse images rendered otherwise than the run's: a network trained on one rendering
    scores the other below what it learnt, and nothing in the figure would say so.

    Returns ``render`` when given, else the run's.
    """
    trained = recorded_render(record)
    if render is not None and render != trained:
        raise InputError(f"render={render!r}: the run was trained on images rendered "
                         f"{trained!r} and can only {what} on those; give render={trained!r} "
                         "or leave it out")
    return trained


def overlap(record, classes):
    """Names among ``classes`` (a ClassSet) that the run trained on, sorted."""
    trained = set(record.get("train_classes") or ())
    return [name for name in classes.base_names() if name in trained]


def check_no_overlap(record, splits, names, allow_train_overlap, labels):
    """Refuse (or, with ``allow_train_overlap``, describe) evaluating held-out splits on
    training classes.

    Parameters
    ----------
    record : dict or None
        The run's data record (None for a checkpoint that predates it: nothing to check).
    splits : dict of str -> ClassSet
    names : iterable of str
        The splits about to be evaluated; ``"train"`` is expected to overlap and skipped.
    allow_train_overlap : bool
        Evaluate anyway, and say so.
    labels : dict of str -> str
        Printable split names.

    Returns
    -------
    list of str
        One warning line per overlapping split (empty when none overlap).
    """
    if not record or "train_classes" not in record:
        return []
    warnings = []
    for name in names:
        if name == "train":
            continue
        shared = overlap(record, splits[name])
        if not shared:
            continue
        total = len(splits[name].base_names())
        what = (f"{len(shared)} of the {total} {labels[name].lower()} classes (e.g. "
                f"{shared[0]!r}) are classes the run trained on")
        if not allow_train_overlap:
            raise InputError(f"{what}, so their accuracy would not be a held-out accuracy; "
                             "evaluate on the run's own split (the data and split options it was "
                             "trained with) or pass allow_train_overlap=True")
        warnings.append(f"WARNING: {what}: the {labels[name].lower()} accuracy below is "
                        "NOT a held-out accuracy (allow_train_overlap=True)")
    return warnings
