"""The demo's prediction: fine-tuning from Φ, transductive classification, the models."""

import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minireptile.data.omniglot import decode_image
from minireptile.demo.networks import (
    BUILTIN_SHA256,
    builtin_path,
    load_builtin,
    load_run,
    sha256_of,
)
from minireptile.demo.predict import SEED
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.problems.tasks import mini_batch_indices
from minireptile.runs.config import TrainConfig, make_learner
from minireptile.runs.run import Run, generators

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


def drawings(seed, classes=3, shots=1):
    """Random blotchy binary images, one group per class."""
    rng = np.random.default_rng(seed)
    return [(rng.random((shots, 28, 28)) < 0.8).astype(np.float32) for _ in range(classes)]


def reference_prediction(phi, v, t, images, labels, query, lr, iters, batch, num_classes):
    """Fine-tuning written out: Adam with β1 = 0 (TensorFlow's form, ε outside the bias
    correction) on the summed loss, mini-batches from the same seeded sampler, then one
    forward pass over the training images and the query; softmax over the first N outputs."""
    model = omniglot_cnn(5)
    w = phi.astype(np.float32).copy()
    v = v.astype(np.float32).copy()
    beta2, eps = 0.999, 1e-8
    rng = np.random.default_rng(SEED)
    for rows in mini_batch_indices(len(labels), min(batch, len(labels)), iters, False, rng):
        _, grad = model.loss_and_grad(w, images[rows], labels[rows])
        grad = grad * len(rows)
        t += 1
        v = beta2 * v + (1 - beta2) * grad * grad
        w = w - (lr * np.sqrt(1 - beta2 ** t) * grad / (np.sqrt(v) + eps)).astype(np.float32)
    logits = model.predict(w, np.concatenate([images, query[None]]))[-1, :num_classes]
    p = np.exp(logits - logits.max())
    return p / p.sum()


def test_builtin_prediction_equals_fine_tuning_written_out(builtin):
    classes = drawings(1, classes=3, shots=2)
    query = classes[1][0] * (np.random.default_rng(2).random((28, 28)) < 0.95)
    answer = builtin.predict(classes, query, compare_random=False)
    with np.load(builtin_path()) as stored:
        expected = reference_prediction(
            stored["phi"], stored["v"], int(stored["t"]), np.concatenate(classes),
            np.repeat(np.arange(3), 2), query, builtin.fine_tuning.learning_rate,
            builtin.fine_tuning.iters, builtin.fine_tuning.batch, 3)
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-3, atol=1e-5)
    assert answer["predicted"] == int(np.argmax(expected))
    assert len(answer["losses"]) == builtin.fine_tuning.iters
    assert "random_init" not in answer


def test_answers_are_deterministic_and_the_same_under_concurrency(builtin):
    requests = [(drawings(seed, classes=2 + seed % 3), drawings(seed + 50, 1)[0][0])
                for seed in range(4)]
    serial = [builtin.predict(c, q) for c, q in requests]
    results = [None] * 8
    def work(i):
        c, q = requests[i % 4]
        results[i] = builtin.predict(c, q)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for i, result in enumerate(results):
        expected = serial[i % 4]
        assert result["probabilities"] == expected["probabilities"]
        assert result["random_init"]["probabilities"] == expected["random_init"]["probabilities"]
        assert len(result["probabilities"]) == len(requests[i % 4][0])
        assert abs(sum(result["probabilities"]) - 1) < 1e-9
    # Φ itself is never written to.
    with np.load(builtin_path()) as stored:
        np.testing.assert_array_equal(builtin.phi, stored["phi"])


@pytest.mark.parametrize("classes, message", [
    (1, "between 2 and 5 are accepted"), (6, "between 2 and 5 are accepted")])
def test_the_number_of_classes_is_checked(builtin, classes, message):
    with pytest.raises(InputError, match=message):
        builtin.predict(drawings(0, classes=classes), drawings(1)[0][0])


def test_the_number_of_drawings_per_class_is_checked(builtin):
    classes = drawings(0, classes=2, shots=6)
    with pytest.raises(InputError, match="class 0 has 6 drawings"):
        builtin.predict(classes, classes[0][0])


def test_the_builtin_model_is_refused_when_its_hash_differs(tmp_path):
    assert sha256_of(builtin_path()) == BUILTIN_SHA256
    copy = tmp_path / "model.npz"
    shutil.copy(builtin_path(), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256 .* expected .*damaged"):
        load_builtin(str(copy))
    with pytest.raises(InputError, match="missing"):
        load_builtin(str(tmp_path / "absent.npz"))


def test_a_training_run_can_be_served(tmp_path):
    config = TrainConfig(classes=3, shots=1, eval_iters=4, eval_batch=2, meta_iters=1)
    model = omniglot_cnn(3)
    learner = make_learner(model, model.init_params(np.random.default_rng(0)), config)
    Run(tmp_path / "run").save(model, learner, generators(0)[:2], 1, config)
    predictor = load_run(str(tmp_path / "run"))
    assert predictor.max_classes == 3 and predictor.fine_tuning.iters == 4
    answer = predictor.predict(drawings(3, classes=3), drawings(4)[0][0])
    assert len(answer["probabilities"]) == 3 and len(answer["losses"]) == 4
    with pytest.raises(InputError, match="between 2 and 3"):
        predictor.predict(drawings(3, classes=4), drawings(4)[0][0])
    with pytest.raises(InputError, match="does not exist"):
        load_run(str(tmp_path / "nothing"))


@pytest.mark.skipif(not (DATA / "images_background_small2.zip").exists(),
                    reason=f"Omniglot small sets not found at {DATA} (../shared/data/omniglot)")
def test_meta_learning_beats_a_random_start_on_held_out_alphabets(builtin):
    """3-way 1-shot tasks from the three alphabets the built-in model never trained on."""
    with zipfile.ZipFile(DATA / "images_background_small2.zip") as archive:
        by_character = {}
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if name.endswith(".png") and len(parts) == 4 and parts[1] in HELD_OUT:
                by_character.setdefault("/".join(parts[1:3]), []).append(name)
        rng = np.random.default_rng(7)
        characters = sorted(by_character)
        right = {"meta": 0, "random": 0}
        tasks = 24
        for _ in range(tasks):
            chosen = rng.choice(len(characters), 3, replace=False)
            pairs = [rng.choice(by_character[characters[c]], 2, replace=False) for c in chosen]
            load = lambda name: decode_image(archive.read(name), name).astype(np.float32)
            target = int(rng.integers(3))
            answer = builtin.predict([load(p[0])[None] for p in pairs], load(pairs[target][1]))
            right["meta"] += answer["predicted"] == target
            right["random"] += answer["random_init"]["predicted"] == target
    assert right["meta"] >= 0.65 * tasks, right
    assert right["meta"] > right["random"] + 0.15 * tasks, right
