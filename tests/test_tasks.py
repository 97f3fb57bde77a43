"""Few-shot task sampling: counts, no query leakage, and the reference's mini-batch rules."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireptile.data import ClassSet, ImagePool, augment_rotations
from minireptile.errors import InputError
from minireptile.problems.tasks import (
    Task,
    mini_batch_indices,
    mini_batches,
    sample_eval_task,
    sample_task,
    split_support_query,
)


def tagged_classes(sizes):
    """A ClassSet whose image j of class c has pixel [0, 0] = c and [0, 1] = j (3×3 images)."""
    names, images, files = [], [], []
    for c, size in enumerate(sizes):
        block = np.zeros((size, 3, 3), np.uint8)
        block[:, 0, 0] = c
        block[:, 0, 1] = np.arange(size)
        names.append(f"Alpha/character{c + 1:02d}")
        images.append(block)
        files.append([f"{c}_{j}.png" for j in range(size)])
    return ClassSet(ImagePool.from_classes(names, images, files, 1.0, (3, 3)))


def identities(images):
    """(class, index) of each image made by :func:`tagged_classes`."""
    return [(int(a), int(b)) for a, b in images[:, 0, :2]]


# --- oracle: the reference's _mini_batches, transcribed loop for loop, with a Generator ------

def reference_mini_batches(n, batch_size, num_batches, replacement, rng):
    samples = np.arange(n)
    if replacement:
        return [rng.choice(n, batch_size, replace=False) for _ in range(num_batches)]
    batches, cur_batch, batch_count = [], [], 0
    while True:
        rng.shuffle(samples)
        for sample in samples:
            cur_batch.append(sample)
            if len(cur_batch) < batch_size:
                continue
            batches.append(np.array(cur_batch))
            cur_batch = []
            batch_count += 1
            if batch_count == num_batches:
                return batches


def reference_split_train_test(pairs, test_shots=1):
    train_set, test_set = list(pairs), []
    labels = set(item[1] for item in train_set)
    for _ in range(test_shots):
        for label in labels:
            for i, item in enumerate(train_set):
                if item[1] == label:
                    del train_set[i]
                    test_set.append(item)
                    break
    return train_set, test_set


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), batch=st.integers(1, 40), num=st.integers(1, 25),
       replacement=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_mini_batches_equal_reference(n, batch, num, replacement, seed):
    if replacement and batch > n:
        with pytest.raises(InputError, match="distinct"):
            list(mini_batch_indices(n, batch, num, True, np.random.default_rng(seed)))
        return
    ours = list(mini_batch_indices(n, batch, num, replacement, np.random.default_rng(seed)))
    ref = reference_mini_batches(n, batch, num, replacement, np.random.default_rng(seed))
    assert len(ours) == len(ref) == num
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def test_without_replacement_deals_whole_epochs_across_batch_boundaries():
    # 10 samples, batches of 4: the third batch holds the last 2 of epoch 1 and 2 of epoch 2.
    batches = list(mini_batch_indices(10, 4, 5, False, np.random.default_rng(3)))
    flat = np.concatenate(batches)
    assert sorted(flat[:10]) == list(range(10))
    assert sorted(flat[10:20]) == list(range(10))
    assert all(len(b) == 4 for b in batches)


def test_without_replacement_batch_larger_than_task_spans_epochs():
    batches = list(mini_batch_indices(3, 7, 2, False, np.random.default_rng(0)))
    flat = np.concatenate(batches)
    assert len(flat) == 14
    for start in range(0, 12, 3):
        assert sorted(flat[start:start + 3]) == [0, 1, 2]


def test_with_replacement_no_repeat_within_batch_but_across_batches():
    rng = np.random.default_rng(1)
    batches = list(mini_batch_indices(5, 5, 50, True, rng))
    assert all(sorted(b) == [0, 1, 2, 3, 4] for b in batches)
    batches = list(mini_batch_indices(25, 5, 40, True, rng))
    assert all(len(set(b.tolist())) == 5 for b in batches)
    counts = np.bincount(np.concatenate(batches), minlength=25)
    assert counts.sum() == 200 and counts.max() > 1  # examples recur across batches


def test_zero_batches_yields_nothing():
    assert list(mini_batch_indices(5, 2, 0, False, np.random.default_rng(0))) == []


def test_mini_batches_carry_images_with_their_labels():
    classes = tagged_classes([6] * 4)
    task = sample_task(classes, 3, 4, np.random.default_rng(0))
    for batch in mini_batches(task, 5, 7, False, np.random.default_rng(1)):
        assert batch.images.shape == (5, 3, 3) and batch.labels.shape == (5,)
        for img, label in zip(batch.images, batch.labels):
            row = np.flatnonzero([np.array_equal(img, t) for t in task.images])[0]
            assert task.labels[row] == label


def test_sample_task_counts_labels_and_distinct_images():
    classes = tagged_classes([20] * 12)
    task = sample_task(classes, 5, 4, np.random.default_rng(7))
    assert isinstance(task, Task)
    assert task.images.shape == (20, 3, 3) and task.images.dtype == np.float32
    assert task.labels.dtype == np.int64
    np.testing.assert_array_equal(task.labels, np.repeat(np.arange(5), 4))
    ids = identities(task.images)
    assert len(set(ids)) == 20  # no image twice
    cls_of_label = {}
    for (c, _), label in zip(ids, task.labels):
        assert cls_of_label.setdefault(int(label), c) == c  # one class per label
    assert len(set(cls_of_label.values())) == 5  # five different classes


def test_sample_task_reaches_every_class_and_image():
    classes = tagged_classes([5] * 8)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        seen.update(identities(sample_task(classes, 3, 2, rng).images))
    assert seen == {(c, j) for c in range(8) for j in range(5)}


def test_seeded_determinism():
    classes = augment_rotations(tagged_classes([10] * 9))
    a = sample_eval_task(classes, 5, 3, np.random.default_rng(42))
    b = sample_eval_task(classes, 5, 3, np.random.default_rng(42))
    c = sample_eval_task(classes, 5, 3, np.random.default_rng(43))
    for x, y in zip(a.support + a.query, b.support + b.query):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.support.images, c.support.images)


def test_eval_task_query_never_in_support():
    classes = tagged_classes([20] * 30)
    rng = np.random.default_rng(5)
    for _ in range(50):
        support, query = sample_eval_task(classes, 5, 5, rng)
        assert support.images.shape == (25, 3, 3) and query.images.shape == (5, 3, 3)
        np.testing.assert_array_equal(support.labels, np.repeat(np.arange(5), 5))
        np.testing.assert_array_equal(query.labels, np.arange(5))
        sup_ids = identities(support.images)
        assert not set(identities(query.images)) & set(sup_ids)
        for (c, _), label in zip(identities(query.images), query.labels):
            assert {sc for (sc, _), sl in zip(sup_ids, support.labels) if sl == label} == {c}


def test_split_support_query_matches_reference_order():
    rng = np.random.default_rng(9)
    labels = rng.permutation(np.repeat(np.arange(4), 3))
    images = np.arange(12, dtype=np.float32).reshape(12, 1, 1)
    for shots in (1, 2):
        ours = split_support_query(Task(images, labels), shots)
        ref_train, ref_test = reference_split_train_test(
            [(float(images[i, 0, 0]), int(labels[i])) for i in range(12)], shots)
        assert [(float(x[0, 0]), int(y)) for x, y in zip(*ours.support)] == ref_train
        assert [(float(x[0, 0]), int(y)) for x, y in zip(*ours.query)] == ref_test


def test_rotated_classes_are_rotated_when_sampled():
    pool_classes = tagged_classes([4] * 2)
    rotated = augment_rotations(pool_classes)
    assert len(rotated) == 8
    assert rotated.class_name(5) == "Alpha/character02 rotated 90°"
    plain = pool_classes.images(1, [2])
    for k in range(4):
        np.testing.assert_array_equal(rotated.images(4 + k, [2]), np.rot90(plain, k, (1, 2)))


def test_too_many_classes_is_clear():
    classes = tagged_classes([20] * 4)
    with pytest.raises(InputError, match=r"cannot draw 5 classes from a split of 4") as err:
        sample_task(classes, 5, 1, np.random.default_rng(0))
    assert "\n" not in str(err.value)


def test_too_many_shots_names_class_count_and_request():
    classes = tagged_classes([20, 20, 7, 20])
    with pytest.raises(InputError) as err:
        sample_task(classes, 2, 8, np.random.default_rng(0))
    msg = str(err.value)
    assert "Alpha/character03" in msg and "has 7 images" in msg and "8 are needed" in msg
    # evaluation needs one more image per class for the query
    with pytest.raises(InputError, match=r"has 7 images but 8 are needed .*7 shots \+ 1"):
        sample_eval_task(classes, 2, 7, np.random.default_rng(0))
    sample_eval_task(classes, 2, 6, np.random.default_rng(0))  # 6 + 1 fits


@pytest.mark.parametrize("kwargs, pattern", [
    ({"num_classes": 0}, "num_classes must be an integer >= 1, got 0"),
    ({"num_shots": 2.5}, "num_shots must be an integer >= 1, got 2.5"),
    ({"rng": 3}, "numpy.random.Generator"),
])
def test_bad_arguments(kwargs, pattern):
    args = {"num_classes": 2, "num_shots": 1, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(InputError, match=pattern):
        sample_task(tagged_classes([3] * 3), **args)
