"""The networks the demo can serve: the built-in one shipped with the package, or a run's.

The built-in model is ``omniglot_5way.npz`` beside this module: Φ of a 5-way Omniglot network
meta-trained by ``minireptile train omniglot`` (the command is in the README), the second
moment of its inner Adam optimiser (β1 = 0, so the first moment is never read) and the run's
evaluation settings. Its SHA-256 is recorded here and checked before the file is read, so a
damaged or substituted file is refused instead of giving silently wrong answers.
"""

import hashlib
import json
import os
from importlib import resources

import numpy as np

from ..errors import InputError
from ..models.cnn import omniglot_cnn
from ..npzfile import load_npz
from ..runs.config import TrainConfig
from ..runs.run import CHECKPOINT_FILE, check_checkpoint, read_checkpoint
from .drawing import IMAGE_SIZE
from .predict import FineTuning, Predictor

BUILTIN_FILE = "omniglot_5way.npz"
BUILTIN_SHA256 = "3d4727fa4d66e67972dc58238fae5c14620c569c0da2d9c6493be1790cf70665"
BUILTIN_CLASSES = 5


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def builtin_path():
    return str(resources.files(__package__).joinpath(BUILTIN_FILE))


def _fine_tuning(config):
    return FineTuning(learning_rate=config.learning_rate, iters=config.eval_iters,
                      batch=config.eval_batch, sgd=config.sgd,
                      replacement=config.replacement, weight_decay=config.weight_decay)


def _adam_state(v, t):
    """The inner Adam state to start from; with β1 = 0 the first moment is overwritten by
    each step's gradient before it is read, so zeros stand in for it."""
    return {"m": np.zeros_like(v), "v": v, "t": np.int64(t)}


def load_builtin(path=None, expected_sha256=BUILTIN_SHA256):
    """The built-in model as a :class:`Predictor` (``path`` and the hash are for tests)."""
    path = path or builtin_path()
    if not os.path.isfile(path):
        raise InputError(f"the built-in model {path!r} is missing; reinstall minireptile "
                         "or give a run folder instead")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise InputError(f"the built-in model {path!r} has SHA-256 {actual}, expected "
                         f"{expected_sha256}; the file is damaged: reinstall minireptile")
    arrays, meta = load_npz(path)
    config = TrainConfig.from_dict(meta["config"])
    model = omniglot_cnn(BUILTIN_CLASSES)
    if arrays["phi"].shape != (model.size,) or arrays["v"].shape != (model.size,):
        raise InputError(f"the built-in model {path!r} does not hold a {model.name}")
    description = {"source": "built-in", "file": BUILTIN_FILE, "sha256": actual,
                   **meta.get("about", {})}
    return _predictor(config, arrays["phi"], _adam_state(arrays["v"], arrays["t"]),
                      description)


def load_run(path):
    """A :class:`Predictor` from a training run folder (or its ``checkpoint.npz``) of an
    Omniglot network with at least 2 outputs."""
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_FILE)
    arrays, meta = read_checkpoint(path)
    classes = int(meta["config"]["classes"])
    size = meta["config"].get("image_size", 0)
    if size and size != IMAGE_SIZE:
        raise InputError(f"checkpoint {path!r} holds a network of {size}×{size} images; the "
                         f"demo draws {IMAGE_SIZE}×{IMAGE_SIZE} ones (train without "
                         "--image-size)")
    if not meta["model"].startswith("omniglot cnn 28x28") or classes < 2:
        raise InputError(f"checkpoint {path!r} holds a {meta['model']}; the demo needs an "
                         "Omniglot network (minireptile train omniglot) with 2 or more classes")
    config = TrainConfig.from_dict(meta["config"])
    arrays, meta = check_checkpoint(path, arrays, meta,
                                    omniglot_cnn(classes, **config.network_options()))
    state = {}
    if not config.sgd and arrays.get("state.inner.v", np.zeros(0)).size:
        state = _adam_state(arrays["state.inner.v"], arrays["state.inner.t"])
    description = {"source": "checkpoint", "file": os.path.abspath(path),
                   "iterations": meta["next_iteration"]}
    return _predictor(config, arrays["phi"], state, description)


def _predictor(config, phi, state, description):
    classes = config.classes
    fine_tuning = _fine_tuning(config)
    description = {**description, "network": f"omniglot cnn, {classes} outputs",
                   "fine_tuning": {"optimizer": "sgd" if config.sgd else "adam (beta1 = 0)",
                                   "learning_rate": fine_tuning.learning_rate,
                                   "steps": fine_tuning.iters,
                                   "batch": fine_tuning.batch}}
    options = config.network_options()
    return Predictor(lambda: omniglot_cnn(classes, **options), phi, state, fine_tuning,
                     description)


def export_builtin(run_path, out_path, about):
    """Write a run's Φ, inner Adam second moment and settings in the built-in format.

    Parameters
    ----------
    run_path : str
        A finished 5-way Omniglot training run (folder or checkpoint.npz).
    out_path : str
        Where to write the ``.npz`` (compressed).
    about : dict
        JSON-able provenance (command, iterations, accuracy) shown by ``GET /api/health``.

    Returns the file's SHA-256.
    """
    if os.path.isdir(run_path):
        run_path = os.path.join(run_path, CHECKPOINT_FILE)
    arrays, meta = read_checkpoint(run_path)
    arrays, meta = check_checkpoint(run_path, arrays, meta, omniglot_cnn(BUILTIN_CLASSES))
    config = TrainConfig.from_dict(meta["config"])
    if config.sgd:
        raise InputError("the built-in format stores an Adam state; this run used sgd=True")
    metadata = json.dumps({"config": config.to_dict(), "about": about}).encode()
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, phi=arrays["phi"], v=arrays["state.inner.v"],
                            t=arrays["state.inner.t"],
                            __metadata__=np.frombuffer(metadata, dtype=np.uint8))
    os.replace(tmp, out_path)
    return sha256_of(out_path)
