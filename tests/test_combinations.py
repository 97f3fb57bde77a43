"""Gradient combinations: parsing, the identities that tie them to Reptile and FOMAML, and
the joint-training claim."""

import numpy as np
import pytest

from minireptile.algorithms.combinations import (
    REFERENCE_COMBINATIONS,
    parse_combination,
    parse_combinations,
)
from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.models.model import Model
from minireptile.nn import Flatten, Linear, Sequential, Tanh
from minireptile.problems.fewshot import FewShotLearner, InnerConfig, evaluate_accuracy
from minireptile.problems.tasks import sample_task


def clusters(num_classes=40, per_class=10, dim=8, seed=0):
    """Classes of noisy 1×dim "images" around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(40, 216, size=(num_classes, dim))
    images = [np.clip(c + rng.integers(-25, 26, size=(per_class, dim)), 0, 255)
              .astype(np.uint8)[:, None, :] for c in centres]
    files = [[f"{i}/{j}" for j in range(per_class)] for i in range(num_classes)]
    pool = ImagePool.from_classes([f"A/c{i:02d}" for i in range(num_classes)], images, files,
                                  scale=1 / 255, image_shape=(1, dim))
    return ClassSet(pool)


def model(dim=8, classes=3):
    net = Sequential(Flatten(), Linear(dim, 32), Tanh(), Linear(32, classes))
    return Model(net, "cross_entropy", (1, dim), dtype=np.float64, name="cluster mlp")


def learner(spec, k, lr=0.04, algorithm=None, phi=None):
    m = model()
    phi = m.init_params(np.random.default_rng(0)) if phi is None else phi.copy()
    inner = InnerConfig(sgd=True, learning_rate=lr, batch=15, iters=k)
    if spec is None:
        return FewShotLearner(m, phi, inner, algorithm=algorithm)
    return FewShotLearner(m, phi, inner, algorithm="combination",
                          combination=parse_combination(spec))


@pytest.mark.parametrize("name, k, expected", [
    ("g1", 1, [1]),
    ("g2", 2, [0, 1]),
    ("g1+g2", 2, [1, 1]),
    ("(g1+g2)/2", 2, [0.5, 0.5]),
    ("( g1 + g2 + g3 ) / 3", 3, [1 / 3] * 3),
    ("g1+g3", 4, [1, 0, 1, 0]),
    ("reptile", 3, [1, 1, 1]),
    ("last", 3, [0, 0, 1]),
])
def test_coefficients(name, k, expected):
    np.testing.assert_allclose(parse_combination(name).coefficients(k), expected)


def test_reference_list_parses():
    combos = parse_combinations(",".join(REFERENCE_COMBINATIONS))
    assert [c.needs_k for c in combos] == [1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


@pytest.mark.parametrize("bad", ["g0", "h1", "g1-g2", "g1+g1", "(g1+g2)/0", "g1++g2", ""])
def test_unknown_names_are_rejected(bad):
    with pytest.raises(InputError, match="combination"):
        parse_combinations(bad) if bad == "" else parse_combination(bad)


def test_k_smaller_than_needed_is_rejected():
    with pytest.raises(InputError, match="needs at least 3 inner steps, got inner_iters=2"):
        parse_combination("g1+g3").coefficients(2)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sum_of_gradients_times_lr_is_phi_minus_w(k):
    classes = clusters()
    task = sample_task(classes, 3, 5, np.random.default_rng(3))
    reptile = learner(None, k, algorithm="reptile")
    combo = learner("+".join(f"g{i + 1}" for i in range(k)), k, phi=reptile.phi)
    w_minus_phi, _ = reptile.adapt(reptile.phi.copy(), task, np.random.default_rng(4))
    minus_lr_sum_g, _ = combo.adapt(combo.phi.copy(), task, np.random.default_rng(4))
    np.testing.assert_allclose(minus_lr_sum_g, w_minus_phi, rtol=1e-10, atol=1e-13)
    assert np.abs(w_minus_phi).max() > 1e-3  # the inner loop did move


@pytest.mark.parametrize("k", [2, 3])
def test_last_gradient_is_first_order_maml(k):
    classes = clusters()
    foml = learner(None, k, algorithm="foml")
    combo = learner(f"g{k}", k, phi=foml.phi)
    foml.train_step(classes, 3, 5, 2, 0.5, np.random.default_rng(6))
    combo.train_step(classes, 3, 5, 2, 0.5, np.random.default_rng(6))
    np.testing.assert_allclose(combo.phi, foml.phi, rtol=1e-10, atol=1e-13)


def test_joint_training_cannot_use_permuted_labels_but_reptile_can():
    """Tasks draw 3 of 40 classes and label them in random order, so any fixed class → label
    map is wrong in most tasks. After 2,000 meta-iterations each, fine-tuned for one step on
    5 shots, 3-way accuracy over 200 held-out tasks of unseen classes was (seed 0):

        no meta-training 0.67, k = 1 (joint training) 0.47, k = 2 0.61, k = 3 0.93

    (each ± 0.02–0.04, 95% intervals over the 200 tasks).

    Joint training only learns to predict every label equally often, which leaves the
    network worse for fine-tuning than it started; with k ≥ 2 the meta-gradient carries the
    adaptation itself and accuracy rises.
    """
    train_classes, test_classes = clusters(seed=0), clusters(seed=1)
    accuracy = {}
    for k in (0, 1, 2, 3):
        learn = learner("reptile", max(k, 1))
        rng = np.random.default_rng(1)
        for it in range(2000 if k else 0):
            learn.train_step(train_classes, 3, 5, 1, 1 - it / 2000, rng)
        accuracy[k], _, _ = evaluate_accuracy(learn, test_classes, 3, 5, 15, 1, 200,
                                              np.random.default_rng(2))
    chance = 1 / 3
    assert accuracy[1] < accuracy[0] - 0.1          # joint training does not help...
    assert accuracy[1] < chance + 0.15               # ...it ends near chance
    assert accuracy[2] > accuracy[1] + 0.1           # clear of both intervals
    assert accuracy[3] > accuracy[0] + 0.15          # k >= 2 improves on the start
