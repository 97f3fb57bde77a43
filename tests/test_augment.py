"""Affine augmentation: the Numba kernel against its NumPy reference, the distortions' ranges,
determinism, the identity, and that only training tasks are ever distorted."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minireptile.kernels.affine import (affine_bilinear, affine_bilinear_reference,
                                        affine_nearest, affine_nearest_reference)

from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.parallel import make_executor
from minireptile.problems.augment import AffineAugmentation
from minireptile.problems.fewshot import FewShotLearner, InnerConfig, evaluate_task


def binary_images(rng, n, h, w, dtype=np.float32):
    return (rng.random((n, h, w)) > 0.7).astype(dtype)


KERNELS = {"nearest": (affine_nearest, affine_nearest_reference),
           "bilinear": (affine_bilinear, affine_bilinear_reference)}


@settings(max_examples=120, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 12),
       seed=st.integers(0, 2**32 - 1), spread=st.floats(0.0, 2.0),
       fill=st.sampled_from([0.0, 1.0, 0.5]), dtype=st.sampled_from([np.float32, np.float64]),
       interpolation=st.sampled_from(sorted(KERNELS)))
def test_kernels_match_their_numpy_references(n, h, w, seed, spread, fill, dtype,
                                              interpolation):
    kernel, reference = KERNELS[interpolation]
    rng = np.random.default_rng(seed)
    images = rng.random((n, h, w)).astype(dtype)
    inverse = np.eye(2) + spread * rng.uniform(-1, 1, (n, 2, 2))
    shift = 3 * spread * rng.uniform(-1, 1, (n, 2))
    # Half-pixel shifts put sources exactly between pixels: both must round them alike.
    shift[rng.random((n, 2)) < 0.3] = 0.5
    got = kernel(images, inverse, shift, fill, np.empty_like(images))
    want = reference(images, inverse, shift, fill)
    assert got.dtype == dtype
    if interpolation == "nearest":
        np.testing.assert_array_equal(got, want)
    else:  # sums of products, to rounding
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12,
                                   atol=1e-7 if dtype == np.float32 else 1e-14)
        # Weighted means of the inputs and the fill: never outside their range.
        low, high = min(images.min(), fill), max(images.max(), fill)
        assert got.min() >= low - 1e-6 and got.max() <= high + 1e-6


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rotation=st.floats(0, 179.9), shear=st.floats(0, 0.9),
       scale=st.floats(0, 0.9), translate=st.floats(0, 5))
def test_drawn_distortions_match_the_reference_and_keep_values(seed, rotation, shear, scale,
                                                                translate):
    rng = np.random.default_rng(seed)
    images = binary_images(rng, 6, 28, 28)
    augmentation = AffineAugmentation(rotation, shear, scale, translate, fill=1.0)
    inverse, shift = augmentation.sample(6, np.random.default_rng(seed))
    out = augmentation.apply(images, np.random.default_rng(seed))
    np.testing.assert_array_equal(out, affine_nearest_reference(images, inverse, shift, 1.0))
    assert out.dtype == np.float32 and out.shape == images.shape
    assert set(np.unique(out)) <= {0.0, 1.0}  # binary in, binary out


def test_identity_setting_returns_the_input_exactly():
    rng = np.random.default_rng(0)
    identity = AffineAugmentation(0.0, 0.0, 0.0, 0.0)
    for dtype in (np.float32, np.float64):
        for shape in ((5, 28, 28), (3, 7, 10), (2, 1, 1)):
            images = rng.random(shape).astype(dtype)  # any values, not only 0/1
            out = identity.apply(images, rng)
            assert out is not images
            np.testing.assert_array_equal(out, images)


def test_same_seed_same_distortions_other_seed_others():
    images = binary_images(np.random.default_rng(1), 20, 28, 28)
    augmentation = AffineAugmentation()
    a = augmentation.apply(images, np.random.default_rng(7))
    b = augmentation.apply(images, np.random.default_rng(7))
    c = augmentation.apply(images, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, images)


def test_known_maps_shift_and_quarter_turn():
    rng = np.random.default_rng(2)
    images = rng.random((2, 6, 6)).astype(np.float32)
    # Shift down one row: output row r reads input row r − 1; the top row is filled.
    down = affine_nearest(images, np.tile(np.eye(2), (2, 1, 1)), np.array([[1.0, 0.0]] * 2),
                          9.0, np.empty_like(images))
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])
    assert np.all(down[:, 0] == 9.0)
    # The inverse map (r, c) -> (c, −r) about the centre is numpy's quarter turn.
    quarter = np.array([[[0.0, 1.0], [-1.0, 0.0]]] * 2)
    turned = affine_nearest(images, quarter, np.zeros((2, 2)), 9.0, np.empty_like(images))
    np.testing.assert_array_equal(turned, np.rot90(images, k=1, axes=(1, 2)))


def test_bilinear_known_maps():
    rng = np.random.default_rng(5)
    images = rng.random((2, 6, 7))
    identity = np.tile(np.eye(2), (2, 1, 1))
    # Half a pixel to the right: every output is the mean of two horizontal neighbours, and
    # the first column the mean of the fill and the first input column.
    half = affine_bilinear(images, identity, np.array([[0.0, 0.5]] * 2), 3.0,
                           np.empty_like(images))
    np.testing.assert_allclose(half[:, :, 1:], (images[:, :, 1:] + images[:, :, :-1]) / 2)
    np.testing.assert_allclose(half[:, :, 0], (images[:, :, 0] + 3.0) / 2)
    # A whole-pixel shift and a quarter turn read single pixels, as nearest neighbour does.
    down = affine_bilinear(images, identity, np.array([[1.0, 0.0]] * 2), 9.0,
                           np.empty_like(images))
    np.testing.assert_array_equal(down, affine_nearest(images, identity,
                                                       np.array([[1.0, 0.0]] * 2), 9.0,
                                                       np.empty_like(images)))
    square = images[:, :6, :6].copy()
    quarter = np.array([[[0.0, 1.0], [-1.0, 0.0]]] * 2)
    turned = affine_bilinear(square, quarter, np.zeros((2, 2)), 9.0, np.empty_like(square))
    np.testing.assert_allclose(turned, np.rot90(square, k=1, axes=(1, 2)), atol=1e-12)


def test_bilinear_augmentation_identity_range_and_determinism():
    rng = np.random.default_rng(6)
    images = binary_images(rng, 8, 28, 28)
    identity = AffineAugmentation(0.0, 0.0, 0.0, 0.0, interpolation="bilinear")
    np.testing.assert_array_equal(identity.apply(images, rng), images)
    bilinear = AffineAugmentation(interpolation="bilinear")
    a = bilinear.apply(images, np.random.default_rng(7))
    np.testing.assert_array_equal(a, bilinear.apply(images, np.random.default_rng(7)))
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert len(np.unique(a)) > 2  # resampled smoothly: grey levels between 0 and 1
    # The interpolation changes how images are resampled, not which distortions are drawn.
    after_bilinear, after_nearest = np.random.default_rng(7), np.random.default_rng(7)
    bilinear.apply(images, after_bilinear)
    AffineAugmentation().apply(images, after_nearest)
    assert after_bilinear.random() == after_nearest.random()
    with pytest.raises(InputError, match="interpolation='cubic': expected one of nearest, "
                                         "bilinear"):
        AffineAugmentation(interpolation="cubic")


def test_distortions_stay_within_their_ranges():
    augmentation = AffineAugmentation(rotation=0.0, shear=0.0, scale=0.2, translate=2.0)
    inverse, shift = augmentation.sample(2000, np.random.default_rng(3))
    scales = 1 / np.stack([inverse[:, 0, 0], inverse[:, 1, 1]])
    assert np.all(inverse[:, 0, 1] == 0) and np.all(inverse[:, 1, 0] == 0)
    assert scales.min() >= 0.8 and scales.max() <= 1.2
    assert scales.min() < 0.81 and scales.max() > 1.19  # the range is used, not a corner
    assert np.abs(shift).max() <= 2.0 and np.abs(shift).max() > 1.98
    rotation = AffineAugmentation(rotation=10.0, shear=0.0, scale=0.0, translate=0.0)
    inverse, _ = rotation.sample(2000, np.random.default_rng(4))
    angles = np.degrees(np.arctan2(inverse[:, 1, 0], inverse[:, 0, 0]))
    assert np.abs(angles).max() <= 10.0 + 1e-9 and np.abs(angles).max() > 9.9
    np.testing.assert_allclose(np.linalg.det(inverse), 1.0, rtol=1e-12)


@pytest.mark.parametrize("values, parameter", [
    (dict(scale=-0.1), "scale="),
    (dict(scale=1.0), "scale="),
    (dict(rotation=180.0), "rotation="),
    (dict(rotation=-5.0), "rotation="),
    (dict(shear=1.5), "shear="),
    (dict(translate=-1.0), "translate="),
    (dict(translate=float("nan")), "translate="),
])
def test_bad_ranges_are_rejected(values, parameter):
    with pytest.raises(InputError, match=parameter):
        AffineAugmentation(**values)


def test_bad_images_are_rejected():
    with pytest.raises(InputError, match="float images"):
        AffineAugmentation().apply(np.zeros((2, 3, 3, 1), np.float32), np.random.default_rng())


def _tiny_classes(num_classes=6, size=5, seed=0):
    rng = np.random.default_rng(seed)
    images = [(rng.random((size, 28, 28)) > 0.8).astype(np.uint8) for _ in range(num_classes)]
    files = [[f"{c}_{i}.png" for i in range(size)] for c in range(num_classes)]
    pool = ImagePool.from_classes([f"A/character{c:02d}" for c in range(num_classes)], images,
                                  files, 1.0, (28, 28))
    return ClassSet(pool)


def _learner(augmentation, sgd=False):
    model = omniglot_cnn(3)
    inner = InnerConfig(learning_rate=0.01 if sgd else 1e-3, sgd=sgd, batch=6, iters=2)
    return FewShotLearner(model, model.init_params(np.random.default_rng(0)), inner,
                          augmentation=augmentation)


def test_training_tasks_are_distorted_evaluation_tasks_never():
    classes = _tiny_classes()
    strong = AffineAugmentation(rotation=90.0, shear=0.5, scale=0.5, translate=5.0)
    plain, augmented = _learner(None), _learner(strong)
    settings = (3, 1, 3, 2, False)
    for seed in (11, 12):
        assert evaluate_task(plain, classes, settings, seed) == \
            evaluate_task(augmented, classes, settings, seed)
    # Evaluation must not even draw from the stream: the fine-tuned predictions agree.
    from minireptile.problems.tasks import sample_eval_task

    task = sample_eval_task(classes, 3, 1, np.random.default_rng(5))
    predictions = [learner.finetune_and_predict(task.support, task.query.images, 3, 2,
                                                np.random.default_rng(6))
                   for learner in (plain, augmented)]
    np.testing.assert_array_equal(*predictions)
    # Training does see distorted images: the augmented learner's step is the plain
    # learner's on the same tasks distorted, each from its own stream after the task's draw.
    from minireptile.parallel.executor import task_seeds
    from minireptile.problems.tasks import sample_task

    by_hand = _learner(None)
    phi = by_hand.phi.copy()
    updates = []
    for seed in task_seeds(np.random.default_rng(9), 2):
        rng = np.random.default_rng(seed)
        task = strong.augment_task(sample_task(classes, 3, 2, rng), rng)
        updates.append(by_hand.adapt(phi.copy(), task, rng)[0])
    expected = phi + 1.0 * np.mean(updates, axis=0, dtype=phi.dtype)
    for learner in (plain, augmented):
        learner.train_step(classes, 3, 2, 2, 1.0, np.random.default_rng(9))
    np.testing.assert_array_equal(augmented.phi, expected)
    assert not np.array_equal(plain.phi, augmented.phi)


def test_augmented_training_is_the_same_on_one_worker_or_two():
    classes = _tiny_classes()
    results = []
    for workers in (1, 2):
        learner = _learner(AffineAugmentation(), sgd=True)
        with make_executor(workers) as executor:
            for step in range(2):
                learner.train_step(classes, 3, 2, 3, 1.0, np.random.default_rng(step), executor)
        results.append(learner.phi.copy())
    np.testing.assert_array_equal(*results)


def test_eval_augmentation_distorts_each_fine_tuning_batch_never_the_queries():
    from minireptile.problems.tasks import mini_batches, sample_eval_task

    classes = _tiny_classes()
    strong = AffineAugmentation(rotation=90.0, shear=0.5, scale=0.5, translate=5.0)
    learner = _learner(None)
    learner.eval_augmentation = strong
    phi, state = learner.phi.copy(), learner.optimizer.state_dict()
    task = sample_eval_task(classes, 3, 1, np.random.default_rng(5))
    support_before = task.support.images.copy()
    got = learner.finetune_and_predict(task.support, task.query.images, 3, 4,
                                       np.random.default_rng(6), transductive=True)
    # By hand: each mini-batch distorted from the stream right after it is drawn, then one
    # step; the queries go to the network as they are.
    by_hand, plain = _learner(None), _learner(None)
    weights = []
    for augmentation, learner_by_hand in ((strong, by_hand), (None, plain)):
        w, rng = learner_by_hand.phi.copy(), np.random.default_rng(6)
        for batch in mini_batches(task.support, 3, 4, False, rng):
            if augmentation is not None:
                batch = augmentation.augment_task(batch, rng)
            learner_by_hand._step(w, batch)
        weights.append(w)
    expected = np.argmax(by_hand.model.predict(weights[0], task.query.images), axis=1)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(*weights)  # the distortions changed what was learned
    # Φ, the optimiser state and the task's images are as they were.
    np.testing.assert_array_equal(learner.phi, phi)
    for name, value in learner.optimizer.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    np.testing.assert_array_equal(task.support.images, support_before)


def test_an_evaluation_record_never_answers_for_fine_tuning_with_distortions(tmp_path):
    from minireptile.runs.evaluation import evaluate_splits

    classes = _tiny_classes()
    learner = _learner(None)
    settings = (3, 1, 3, 3, True)

    def evaluate(record_dir):
        return evaluate_splits(learner, {"test": classes}, ["test"], settings, 12,
                               np.random.default_rng(5), record_dir=record_dir,
                               log=lambda *_: None)["test"][2]

    plain = evaluate(tmp_path)  # leaves a finished record in tmp_path
    learner.eval_augmentation = AffineAugmentation(rotation=90.0, shear=0.5, scale=0.5,
                                                   translate=5.0)
    distorted = evaluate(None)
    assert not np.array_equal(plain, distorted)
    np.testing.assert_array_equal(evaluate(tmp_path), distorted)
    # Nor does a record of the same distortions resampled another way.
    learner.eval_augmentation = AffineAugmentation(rotation=90.0, shear=0.5, scale=0.5,
                                                   translate=5.0, interpolation="bilinear")
    smooth = evaluate(None)
    assert not np.array_equal(smooth, distorted)
    np.testing.assert_array_equal(evaluate(tmp_path), smooth)
    learner.eval_augmentation = None
    np.testing.assert_array_equal(evaluate(tmp_path), plain)
