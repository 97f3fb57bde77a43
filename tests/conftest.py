"""Shared fixtures: small data sets written in the official layouts.

No thread variables are set here: the tests run with the thread pools the package sizes
itself (:mod:`minireptile.parallel.threads`), as a user's process does.
"""

import os

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# In CI the property tests draw the same examples every run, so a verdict never depends on
# the luck of the draw; locally they keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def write_synthetic_omniglot(root, alphabets=2, characters=6, drawings=4, seed=0):
    """A tiny data set in Omniglot's layout: 28×28 1-bit PNGs, noisy copies of a random
    prototype per character."""
    rng = np.random.default_rng(seed)
    for a in range(alphabets):
        for c in range(characters):
            folder = root / f"Alphabet{a}" / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            prototype = rng.random((28, 28)) > 0.8
            for d in range(drawings):
                noisy = prototype ^ (rng.random((28, 28)) > 0.95)
                Image.fromarray(~noisy).convert("1").save(folder / f"{c:04d}_{d:02d}.png")
    return root


def tiny_train_args(data, run, *extra):
    """``train omniglot`` flags of a 3-way run of two meta-iterations on the default data of
    :func:`write_synthetic_omniglot`, in folder ``run`` with an image cache of its own."""
    return ["train", "omniglot", "--data", str(data), "--num-train", "6", "--classes", "3",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "3", "--inner-iters", "1",
            "--meta-iters", "2", "--eval-iters", "1", "--eval-batch", "3",
            "--eval-interval", "1", "--eval-samples", "2", "--checkpoint", str(run),
            "--no-progress", "--workers", "1", "--cache-dir", str(run) + "-cache", *extra]


@pytest.fixture(autouse=True, scope="session")
def private_image_cache(tmp_path_factory):
    """Commands run by the tests cache decoded images in a temporary folder, never in the
    user's ~/.cache/minireptile."""
    from minireptile.data.cache import ENV_VAR

    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(tmp_path_factory.mktemp("image-cache"))
    yield
    if saved is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = saved


@pytest.fixture(scope="session")
def synthetic_omniglot(tmp_path_factory):
    """Two alphabets of eight characters, eleven drawings each (enough for 5-way tasks with
    up to 10 training shots)."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("omniglot") / "data",
                                    characters=8, drawings=11)
