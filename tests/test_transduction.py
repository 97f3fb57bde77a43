"""Evaluation on a hand-built network: transduction, ``eval omniglot`` and ``--pretrained``.

Batch norm uses the statistics of the batch at hand, at test time too. Transductive
prediction normalises the queries by the statistics of the query set, non-transductive
prediction each query by those of the support set plus that one query. This file builds a
case where the two batches lead to different arg-maxes, with every outcome known in advance,
and checks the accuracies ``eval omniglot`` prints for both modes.

The construction
----------------
*Data.* One test alphabet of two characters, A and B, each with two drawings. A drawing is
white except four 2×2 blocks (one before each pixel the network finally samples, see
below), all four blocks showing the same pattern: exactly one of the block's four pixels is
white. Drawing ``j`` (A1, A2, B1, B2 for j = 0..3) whites pixel ``j`` of the block. With
``--shots 1`` every task holds both characters; each gives one drawing to the support set
and the other to the query set, whichever way round.

*Network.* The full Omniglot CNN with hand-set weights. Layer 1 computes three features
``v_k = w_k · p`` of the block's pixels ``p`` (each twice, ``+v_k`` and ``−v_k``), so that
the four drawings have the feature vectors

    A1 = (2, 2, 1)   A2 = (3, 1, 0)   B1 = (1, 2, 1)   B2 = (2, 3, 1).

Layers 2–4 copy the centre pixel of their input (``+`` channel minus ``−`` channel, and its
negative), so every block of the network is increasing and affine in ``v_k`` up to the batch
norm. The last batch norm therefore standardises ``v_k`` over the batch, and after the ReLU
the 256 features are ``[ReLU(z_k), ReLU(−z_k)]`` (four copies, one per position), with
``z_k`` the batch-standardised ``v_k``. Every other channel is zero. The dense layer is
zero, so the gradient reaching every layer below it is zero too.

*Fine-tuning.* One SGD step (``--sgd --eval-iters 1 --eval-batch 2``) on the whole support
set moves only the dense layer, to ``W = lr·Σ_i (y_i − ½) f_i``: the logits of a query ``q``
are ``lr·(f_A·f_q − f_B·f_q)/2`` and its prediction is the support drawing whose features
``f`` have the larger dot product with its own. Labels do not matter, only which character
wins.

*Expected outcomes* (``(f·f_q)`` of the support drawings A, B, computed in the order of the
four possible support sets; a score of 0 means no feature in common):

* transductive — the two queries are standardised together, so every query ends up with
  the sign pattern of its own class's support: (1, 0) for A's query and (0, 1) for B's in
  all four tasks. **Accuracy 1.**
* non-transductive — with the support A1, B1 the batch is {A1, B1, q}: A2 scores (1.22, 0)
  and is right, B2 scores (0.70, 0) and is wrong; with A1, B2 the same; with A2 and either B
  the support's extreme drawing A2 makes A1 score (0, 1.41), wrong, and B's query right.
  Exactly one of the two queries is right in every task. **Accuracy 1/2.**

The margins are whole dot products against 0, far from the ε of batch norm or rounding.
"""

import shutil

import numpy as np
import pytest
from PIL import Image

from minireptile.cli import main
from minireptile.npzfile import load_npz, save_npz_atomic

# Pixels the network's path reads: layer 1 (stride 2, TensorFlow "same" padding) centres its
# taps on odd rows and columns; composing the four stride-2 centre taps, the final 2×2
# outputs come from input centres 11 and 27 in each direction. The taps used are the 2×2
# block ending at the centre (offsets −1 and 0), which never reaches the padding.
CENTRES = (11, 27)
BLOCK = ((-1, -1), (-1, 0), (0, -1), (0, 0))
# Feature values of the four drawings A1, A2, B1, B2 (rows) in the three features (columns).
FEATURES = np.array([[2, 2, 1], [3, 1, 0], [1, 2, 1], [2, 3, 1]], dtype=np.float32)


def drawing(j):
    """The 28×28 drawing whose blocks white pixel ``j`` of :data:`BLOCK` only.

    Returns
    -------
    ndarray of bool, shape (28, 28)
        True is white (background), False ink.
    """
    image = np.ones((28, 28), dtype=bool)
    for row in CENTRES:
        for col in CENTRES:
            for i, (dy, dx) in enumerate(BLOCK):
                image[row + dy, col + dx] = i == j
    return image


def write_two_character_set(root):
    """An Omniglot folder: alphabet ``Unseen`` with characters A (drawings 0, 1) and B
    (drawings 2, 3), and a training alphabet ``Seen`` with the same drawings (training only
    has to run, its classes are never evaluated here)."""
    for alphabet in ("Seen", "Unseen"):
        for c, drawings in enumerate(((0, 1), (2, 3))):
            folder = root / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for j in drawings:
                Image.fromarray(drawing(j)).convert("1").save(folder / f"{c:04d}_{j:02d}.png")
    return root


def crafted_parameters(views):
    """Write the network described in the module docstring into ``views``, the named views
    of a flat parameter array (everything not set here is zero, batch norm's γ is one)."""
    for name, view in views.items():
        view[...] = 1 if name.endswith(".gamma") else 0
    first = views["conv2d0.weight"]                        # (3, 3, 1, 64), TensorFlow layout
    for k in range(FEATURES.shape[1]):
        for j, (dy, dx) in enumerate(BLOCK):
            # Tap (1 + dy, 1 + dx) reads the pixel at offset (dy, dx) from the centre.
            first[1 + dy, 1 + dx, 0, 2 * k] = FEATURES[j, k]
            first[1 + dy, 1 + dx, 0, 2 * k + 1] = -FEATURES[j, k]
    for layer in (1, 2, 3):
        kernel = views[f"conv2d{layer}.weight"]            # (3, 3, 64, 64)
        for k in range(FEATURES.shape[1]):
            # ReLU(z) − ReLU(−z) = z: the + and − channels recombine into the feature.
            kernel[1, 1, 2 * k, 2 * k], kernel[1, 1, 2 * k + 1, 2 * k] = 1, -1
            kernel[1, 1, 2 * k, 2 * k + 1], kernel[1, 1, 2 * k + 1, 2 * k + 1] = -1, 1


@pytest.fixture(scope="module")
def crafted_run(tmp_path_factory):
    """A two-way run folder trained for one iteration on the two-character set, its Φ then
    replaced by :func:`crafted_parameters`. Returns ``(run folder, data folder, cache)``."""
    from minireptile.models.cnn import omniglot_cnn

    root = tmp_path_factory.mktemp("transduction")
    data = write_two_character_set(root / "data")
    run = root / "run"
    assert main(["train", "omniglot", "--data", str(data), "--train-alphabet", "Seen",
                 "--classes", "2", "--shots", "1", "--train-shots", "1", "--inner-batch", "2",
                 "--inner-iters", "1", "--meta-iters", "1", "--eval-iters", "1",
                 "--eval-samples", "0", "--sgd", "--checkpoint", str(run), "--workers", "1",
                 "--cache-dir", str(root / "cache"), "--no-progress"]) == 0
    arrays, meta = load_npz(run / "checkpoint.npz")
    model = omniglot_cnn(2)
    phi = np.zeros(model.size, dtype=np.float32)
    crafted_parameters(model.layout.views(phi))
    assert arrays["phi"].shape == phi.shape
    arrays["phi"] = phi
    save_npz_atomic(run / "checkpoint.npz", arrays, meta)
    return run, data, root / "cache"


@pytest.mark.parametrize("mode, expected", [
    (["--transductive"], "Test accuracy: 1.0000 ± 0.0000 (95% interval, 12 tasks)"),
    ([], "Test accuracy: 0.5000 ± 0.0000 (95% interval, 12 tasks)"),
], ids=["transductive", "non-transductive"])
def test_batch_statistics_decide_the_prediction(crafted_run, capsys, mode, expected):
    run, data, cache = crafted_run
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(run), "--split", "test",
                 "--eval-samples", "12", "--eval-iters", "1", "--eval-batch", "2",
                 "--learning-rate", "1", "--workers", "1", "--cache-dir", str(cache),
                 "--no-progress", *mode]) == 0
    out = capsys.readouterr().out
    assert ("non-transductive" if not mode else ", transductive") in out
    assert expected in out.splitlines(), out


def accuracy_lines(out):
    """The ``<Split> accuracy: ...`` lines of a command's output, in order."""
    return [line for line in out.splitlines() if " accuracy: " in line]


def test_pretrained_evaluates_the_stored_network_without_training(crafted_run, tmp_path,
                                                                  capsys):
    run, data, cache = crafted_run
    # A copy, so that no evaluation record of another test answers for this one.
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    checkpoint = (copy / "checkpoint.npz").read_bytes()
    metrics = (copy / "metrics.jsonl").read_text()
    settings = ["--transductive", "--eval-iters", "1", "--eval-batch", "2", "--learning-rate",
                "1", "--eval-samples", "12", "--workers", "1", "--cache-dir", str(cache),
                "--no-progress"]
    capsys.readouterr()
    # The run's training command with --pretrained and the evaluation settings above.
    assert main(["train", "omniglot", "--data", str(data), "--train-alphabet", "Seen",
                 "--classes", "2", "--shots", "1", "--train-shots", "1", "--inner-batch", "2",
                 "--inner-iters", "1", "--meta-iters", "1", "--sgd", "--checkpoint",
                 str(copy), "--pretrained", *settings]) == 0
    out = capsys.readouterr().out
    assert "training took" not in out and "meta-training" not in out
    pretrained = accuracy_lines(out)
    assert [line.split(":")[0] for line in pretrained] == ["Train accuracy", "Test accuracy"]
    # The crafted Φ was evaluated, not a retrained one: the test split's exact accuracy.
    assert pretrained[1] == "Test accuracy: 1.0000 ± 0.0000 (95% interval, 12 tasks)"
    # Nothing was trained: the checkpoint and the metrics are those of before.
    assert (copy / "checkpoint.npz").read_bytes() == checkpoint
    assert (copy / "metrics.jsonl").read_text() == metrics
    # `eval omniglot` on the original folder, same settings: the same tasks (the run's seed
    # + 1) and the same numbers for both splits.
    assert main(["eval", "omniglot", "--checkpoint", str(run), "--split", "both",
                 *settings]) == 0
    assert accuracy_lines(capsys.readouterr().out) == pretrained
