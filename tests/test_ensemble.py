"""Ensembles at evaluation: several fine-tunings of one or more networks vote by mean
probability; one network fine-tuned once is the learner itself; the streams, the record and
the command line."""

import shutil

import numpy as np
import pytest
from conftest import write_synthetic_omniglot
from scipy.special import softmax as scipy_softmax

from minireptile.cli import main
from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.parallel import make_executor
from minireptile.problems.augment import AffineAugmentation
from minireptile.problems.ensemble import Ensemble, softmax
from minireptile.problems.fewshot import FewShotLearner, InnerConfig, evaluate_accuracy
from minireptile.problems.tasks import sample_eval_task
from minireptile.runs.evaluation import learner_fingerprint

DISTORT = AffineAugmentation(rotation=20.0, shear=0.3, scale=0.2, translate=2.0)


def random_classes(seed=0, classes=6, drawings=4, size=16):
    rng = np.random.default_rng(seed)
    images = (rng.random((classes, drawings, size, size)) < 0.3).astype(np.uint8)
    return ClassSet(ImagePool.from_classes([f"c{i}" for i in range(classes)], list(images)))


def learners(count, seed=0, ways=3, eval_augmentation=None):
    rng = np.random.default_rng(seed)
    model = omniglot_cnn(ways, image_size=16, filters=8)
    return [FewShotLearner(model, model.init_params(rng), InnerConfig(learning_rate=0.01,
                                                                       iters=5),
                           eval_augmentation=eval_augmentation)
            for _ in range(count)]


def test_softmax_matches_scipy_and_survives_large_outputs():
    logits = np.random.default_rng(0).normal(0, 30, (7, 5)).astype(np.float32)
    np.testing.assert_allclose(softmax(logits), scipy_softmax(logits.astype(np.float64),
                                                              axis=1), rtol=1e-12)
    huge = softmax(np.array([[1e4, 0.0, -1e4]]))
    np.testing.assert_array_equal(huge, [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("transductive", [True, False])
def test_one_network_fine_tuned_once_is_the_learner_itself(transductive):
    classes = random_classes()
    (learner,) = learners(1, eval_augmentation=DISTORT)
    alone = Ensemble([learner])
    for seed in range(4):
        assert (alone.evaluate(classes, 3, 1, 3, 4, np.random.default_rng(seed), transductive)
                == learner.evaluate(classes, 3, 1, 3, 4, np.random.default_rng(seed),
                                    transductive))


def test_probabilities_average_every_fine_tuning_in_stream_order():
    classes = random_classes()
    members = learners(2, eval_augmentation=DISTORT)
    task = sample_eval_task(classes, 3, 1, np.random.default_rng(5))
    got = Ensemble(members, finetunings=3).probabilities(
        task.support, task.query.images, 3, 4, np.random.default_rng(9), transductive=True)
    # By hand: member 0's three fine-tunings, then member 1's, all from one stream.
    rng = np.random.default_rng(9)
    each = [scipy_softmax(member.query_logits(member.finetune(task.support, 3, 4, rng),
                                              task.support.images, task.query.images,
                                              True).astype(np.float64), axis=1)
            for member in members for _ in range(3)]
    np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    # The repetitions are different fine-tunings (other distortions), not one counted thrice.
    assert not np.allclose(each[0], each[1]) and not np.allclose(each[3], each[4])
    predicted = Ensemble(members, finetunings=3).finetune_and_predict(
        task.support, task.query.images, 3, 4, np.random.default_rng(9), transductive=True)
    np.testing.assert_array_equal(predicted, np.argmax(got, axis=1))


@pytest.mark.parametrize("transductive", [True, False])
def test_query_views_add_distorted_copies_of_the_queries_to_the_vote(transductive):
    classes = random_classes()
    members = learners(2, eval_augmentation=DISTORT)
    task = sample_eval_task(classes, 3, 1, np.random.default_rng(5))
    got = Ensemble(members, finetunings=2, query_views=3).probabilities(
        task.support, task.query.images, 3, 4, np.random.default_rng(9), transductive)
    # By hand: after each fine-tuning, the queries as they are, then three distorted copies.
    rng = np.random.default_rng(9)
    each = []
    for member in members:
        for _ in range(2):
            w = member.finetune(task.support, 3, 4, rng)
            views = [task.query.images] + [DISTORT.apply(task.query.images, rng)
                                           for _ in range(3)]
            each += [scipy_softmax(member.query_logits(w, task.support.images, images,
                                                       transductive).astype(np.float64),
                                   axis=1) for images in views]
    np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-12, atol=1e-15)
    assert not np.allclose(each[0], each[1])  # a view is another input, not a copy
    np.testing.assert_array_equal(task.query.images,
                                  sample_eval_task(classes, 3, 1,
                                                   np.random.default_rng(5)).query.images)


def test_members_are_left_exactly_as_they_were():
    classes = random_classes()
    members = learners(2, eval_augmentation=DISTORT)
    for member in members:  # some optimiser state to keep
        member.optimizer.step(member.phi.copy(), np.ones_like(member.phi))
    before = [(m.phi.copy(), {k: np.copy(v) for k, v in m.optimizer.state_dict().items()})
              for m in members]
    Ensemble(members, finetunings=2).evaluate(classes, 3, 1, 3, 4, np.random.default_rng(0))
    for member, (phi, state) in zip(members, before):
        np.testing.assert_array_equal(member.phi, phi)
        for name, value in member.optimizer.state_dict().items():
            np.testing.assert_array_equal(value, state[name])


def test_workers_do_not_change_an_ensemble_evaluation():
    classes = random_classes(classes=8)
    ensemble = Ensemble(learners(2, eval_augmentation=DISTORT), finetunings=2)
    results = []
    for workers in (1, 2):
        with make_executor(workers) as executor:
            results.append(evaluate_accuracy(ensemble, classes, 3, 1, 3, 3, 6,
                                             np.random.default_rng(4), executor=executor)[2])
    np.testing.assert_array_equal(*results)


def test_fingerprint_names_the_members_their_order_and_the_fine_tunings():
    a, b = learners(2)
    prints = {learner_fingerprint(a), learner_fingerprint(Ensemble([a], 2)),
              learner_fingerprint(Ensemble([a, b])), learner_fingerprint(Ensemble([b, a])),
              learner_fingerprint(Ensemble([a, b], 2))}
    a.eval_augmentation = b.eval_augmentation = DISTORT
    prints.add(learner_fingerprint(Ensemble([a, b], 2, query_views=1)))
    assert len(prints) == 6
    assert learner_fingerprint(Ensemble([a, b])) == learner_fingerprint(Ensemble([a, b]))


def test_bad_ensembles_are_refused_with_what_would_do():
    a, b = learners(2)
    with pytest.raises(InputError, match="at least one network"):
        Ensemble([])
    for bad in (-1, 0.5, True):
        with pytest.raises(InputError, match=f"query_views must be .*, got {bad!r}"):
            Ensemble([a], 1, bad)
    with pytest.raises(InputError, match="query_views=2 needs distortion ranges"):
        Ensemble([a], 1, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match=f"finetunings must be a positive integer, got "
                                             f"{bad!r}"):
            Ensemble([a], bad)
    (five_way,) = learners(1, ways=5)
    with pytest.raises(InputError, match="member 1 maps .* the same images and number of"):
        Ensemble([a, five_way])
    b.eval_augmentation = DISTORT
    with pytest.raises(InputError, match="member 1 distorts support images"):
        Ensemble([a, b])


# -- the command line ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alphabets(tmp_path_factory):
    """Three alphabets of 6 characters, 4 drawings each, and a cache folder."""
    root = tmp_path_factory.mktemp("ensemble")
    return write_synthetic_omniglot(root / "data", alphabets=3, characters=6, drawings=4), root


def _train(data, cache, run, *extra, alphabet="Alphabet0", seed="0"):
    args = ["train", "omniglot", "--data", str(data), "--train-alphabet", alphabet,
            "--classes", "4", "--shots", "1", "--train-shots", "2", "--inner-batch", "4",
            "--inner-iters", "1", "--meta-iters", "2", "--eval-iters", "2", "--eval-batch",
            "4", "--eval-interval", "2", "--eval-samples", "0", "--checkpoint", str(run),
            "--no-progress", "--workers", "1", "--cache-dir", str(cache), "--seed", seed,
            *extra]
    assert main(args) == 0


def _eval(data, cache, run, *extra):
    return main(["eval", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
                 "--checkpoint", str(run), "--eval-samples", "6", "--split", "test",
                 "--no-progress", "--cache-dir", str(cache), "--eval-augment", *extra])


def _accuracy(out):
    return [line for line in out.splitlines() if "accuracy:" in line]


def test_cli_ensemble_evaluates_records_and_refuses_leaks(alphabets, tmp_path, capsys):
    data, cache = alphabets
    first, second = tmp_path / "first", tmp_path / "second"
    _train(data, cache, first)
    _train(data, cache, second, seed="1")
    capsys.readouterr()
    assert _eval(data, cache, first, "--workers", "1") == 0
    alone = capsys.readouterr().out
    assert "ensemble" not in alone
    votes = []
    for workers in ("1", "2"):
        shutil.rmtree(first / "evaluations", ignore_errors=True)
        assert _eval(data, cache, first, "--ensemble", str(second), "--finetunings", "2",
                     "--workers", workers) == 0
        out = capsys.readouterr().out
        assert "ensemble of 2 networks × 2 fine-tunings, query probabilities averaged" in out
        assert "resuming the evaluation" not in out
        votes.append(_accuracy(out))
    assert votes[0] == votes[1] and votes[0] != _accuracy(alone)
    # The record answers the same ensemble again, and only it.
    assert _eval(data, cache, first, "--ensemble", str(second), "--finetunings", "2") == 0
    assert "6 of 6 tasks done" in capsys.readouterr().out
    assert _eval(data, cache, first, "--ensemble", str(second)) == 0
    assert "resuming the evaluation" not in capsys.readouterr().out
    # Query views are another evaluation again, and need --eval-augment's ranges.
    assert _eval(data, cache, first, "--query-views", "2") == 0
    out = capsys.readouterr().out
    assert "ensemble of 1 network × 1 fine-tuning, query probabilities averaged over the " \
           "queries and 2 distorted copies" in out and "resuming the evaluation" not in out
    assert main(["eval", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
                 "--checkpoint", str(first), "--split", "test", "--cache-dir", str(cache),
                 "--query-views", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--query-views 2" in err and "--eval-augment" in err
    # A member that trained on the evaluated alphabets would leak them into the vote.
    leaky = tmp_path / "leaky"
    _train(data, cache, leaky, alphabet="Alphabet1")
    capsys.readouterr()
    assert _eval(data, cache, first, "--ensemble", str(leaky)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"ensemble member {str(leaky)!r}" in err
    assert "classes the run trained on" in err
    # Members classify as many classes as the run.
    five_way = tmp_path / "five"
    _train(data, cache, five_way, "--classes", "5")
    capsys.readouterr()
    assert _eval(data, cache, first, "--ensemble", str(five_way)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a 5-way network, the evaluated run a 4-way" in err


@pytest.mark.parametrize("flag, value", [("--finetunings", "0"), ("--finetunings", "-1"),
                                         ("--finetunings", "two"), ("--query-views", "-1"),
                                         ("--query-views", "1.5")])
def test_cli_bad_counts_exit_2(flag, value, alphabets, tmp_path, capsys):
    data, cache = alphabets
    with pytest.raises(SystemExit) as refused:
        _eval(data, cache, tmp_path / "absent", flag, value)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and flag in err and value in err


def test_cli_warns_when_fine_tunings_would_repeat_one(alphabets, tmp_path, capsys):
    data, cache = alphabets
    run = tmp_path / "run"
    _train(data, cache, run)  # eval_batch 4 = the support set of a 4-way 1-shot task
    argv = ["eval", "omniglot", "--data", str(data), "--train-alphabet", "Alphabet0",
            "--checkpoint", str(run), "--eval-samples", "6", "--split", "test",
            "--no-progress", "--cache-dir", str(cache), "--workers", "1"]
    capsys.readouterr()
    assert main(argv) == 0
    once = capsys.readouterr().out
    assert main(argv + ["--finetunings", "3"]) == 0
    thrice = capsys.readouterr().out
    assert "warning: --finetunings 3 repeats one fine-tuning" in thrice
    assert "warning" not in once
    # As warned: the vote of three identical fine-tunings is that of one.
    assert _accuracy(thrice) == _accuracy(once)
    assert main(argv + ["--finetunings", "3", "--eval-batch", "2"]) == 0
    assert "warning" not in capsys.readouterr().out
