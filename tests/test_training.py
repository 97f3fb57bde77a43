"""Few-shot training: the learner's semantics, checkpoints, exact resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.npzfile import load_npz
from minireptile.problems.fewshot import FewShotLearner, InnerConfig
from minireptile.problems.tasks import Task
from minireptile.runs.config import TrainConfig
from minireptile.runs.run import Run
from minireptile.runs.training import train


def vector_classes(num_classes=8, per_class=6, dim=4, seed=0):
    """A ClassSet of 1×dim "images" (uint8), separable by class, for MLP learners."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, size=(num_classes, dim))
    images = [np.clip(c + rng.integers(-20, 21, size=(per_class, dim)), 0, 255)
              .astype(np.uint8)[:, None, :] for c in centres]
    files = [[f"c{i}/{j}.png" for j in range(per_class)] for i in range(num_classes)]
    pool = ImagePool.from_classes([f"A/character{i:02d}" for i in range(num_classes)], images,
                                  files, scale=1 / 255, image_shape=(1, dim))
    return ClassSet(pool)


def tiny_model(num_classes=3, dtype=np.float64):
    from minireptile.models.model import Model
    from minireptile.nn import Flatten, Linear, ReLU, Sequential

    net = Sequential(Flatten(), Linear(4, 6), ReLU(), Linear(6, num_classes))
    return Model(net, "cross_entropy", (1, 4), dtype=dtype, name="tiny")


# -- learner semantics ----------------------------------------------------------------------

def test_inner_adam_state_carries_over_between_tasks_and_evaluation_restores_it():
    model = tiny_model()
    classes = vector_classes()
    phi = model.init_params(np.random.default_rng(0))
    learner = FewShotLearner(model, phi, InnerConfig(batch=3, iters=4))
    rng = np.random.default_rng(1)
    learner.train_step(classes, 3, 2, meta_batch=2, step_size=0.5, rng=rng)
    # One Adam object for every task of the meta-batch: its step count kept running.
    assert learner.optimizer.t == 2 * 4
    state = learner.optimizer.state_dict()
    phi_before = learner.phi.copy()
    learner.evaluate(classes, 3, 2, eval_batch=3, eval_iters=5, rng=rng)
    after = learner.optimizer.state_dict()
    assert after["t"] == state["t"]
    np.testing.assert_array_equal(after["m"], state["m"])
    np.testing.assert_array_equal(after["v"], state["v"])
    np.testing.assert_array_equal(learner.phi, phi_before)


def test_reptile_step_moves_phi_towards_the_mean_of_task_solutions():
    model = tiny_model()
    classes = vector_classes()
    phi = model.init_params(np.random.default_rng(0))
    config = InnerConfig(sgd=True, learning_rate=0.1, batch=3, iters=3)
    learner = FewShotLearner(model, phi.copy(), config)
    learner.train_step(classes, 3, 2, meta_batch=2, step_size=0.25, rng=np.random.default_rng(5))

    # The same two tasks and inner loops by hand: summed-loss SGD from Φ, each task drawn
    # from its own stream.
    from minireptile.parallel.executor import task_seeds
    from minireptile.problems.tasks import mini_batches, sample_task

    solutions = []
    for seed in task_seeds(np.random.default_rng(5), 2):
        rng = np.random.default_rng(seed)
        task = sample_task(classes, 3, 2, rng)
        w = phi.copy()
        for batch in mini_batches(task, 3, 3, False, rng):
            _, g = model.loss_and_grad(w, batch.images, batch.labels)
            w -= 0.1 * len(batch.labels) * g
        solutions.append(w)
    expected = phi + 0.25 * (np.mean(solutions, axis=0) - phi)
    np.testing.assert_allclose(learner.phi, expected, rtol=1e-12, atol=1e-12)


def test_first_order_maml_uses_only_the_last_inner_step():
    model = tiny_model()
    classes = vector_classes()
    phi = model.init_params(np.random.default_rng(0))
    config = InnerConfig(sgd=True, learning_rate=0.1, batch=3, iters=3)
    learner = FewShotLearner(model, phi.copy(), config, algorithm="foml")
    learner.train_step(classes, 3, 2, meta_batch=1, step_size=0.5, rng=np.random.default_rng(7))

    from minireptile.parallel.executor import task_seeds
    from minireptile.problems.tasks import mini_batches, sample_task

    (seed,) = task_seeds(np.random.default_rng(7), 1)
    rng = np.random.default_rng(seed)
    task = sample_task(classes, 3, 2, rng)
    w = phi.copy()
    for batch in mini_batches(task, 3, 3, False, rng):
        before = w.copy()
        _, g = model.loss_and_grad(w, batch.images, batch.labels)
        w -= 0.1 * len(batch.labels) * g
    np.testing.assert_allclose(learner.phi, phi + 0.5 * (w - before), rtol=1e-12, atol=1e-12)


def test_foml_tail_runs_the_last_step_on_held_out_examples():
    model = tiny_model()
    classes = vector_classes()
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(batch=2, iters=3), algorithm="foml", tail_shots=1)
    from minireptile.problems.tasks import sample_task

    task = sample_task(classes, 3, 3, np.random.default_rng(2))
    batches = list(learner._train_batches(task, np.random.default_rng(3), 3, 2))
    assert len(batches) == 3
    tail = batches[-1]
    assert sorted(tail.labels.tolist()) == [0, 1, 2]          # one example per class
    support_rows = {r.tobytes() for b in batches[:-1] for r in b.images}
    assert not any(r.tobytes() in support_rows for r in tail.images)


def test_non_transductive_prediction_sees_one_query_at_a_time():
    from minireptile.models.cnn import omniglot_cnn

    model = omniglot_cnn(3, dtype=np.float64, image_size=8, filters=4)
    phi = model.init_params(np.random.default_rng(0))
    learner = FewShotLearner(model, phi, InnerConfig())
    rng = np.random.default_rng(1)
    support = rng.random((6, 8, 8))
    queries = rng.random((3, 8, 8))
    one_by_one = learner.predict_queries(phi, support, queries, transductive=False)
    for i, q in enumerate(queries):
        logits = model.predict(phi, np.concatenate([support, q[None]]))[-1]
        assert one_by_one[i] == np.argmax(logits)
    # Transductive: one batch of queries, whose batch-norm statistics differ.
    together = model.predict(phi, queries)
    np.testing.assert_array_equal(learner.predict_queries(phi, support, queries, True),
                                  np.argmax(together, axis=1))


def adam_beta1_zero(w, grad, state, lr, beta2=0.999, eps=1e-8):
    """One step of TensorFlow's Adam with β1 = 0, written out here (not the library's), in
    place on ``w``; ``state`` is a dict holding ``v`` and ``t``."""
    state["t"] += 1
    state["v"] = beta2 * state["v"] + (1 - beta2) * grad * grad
    w -= lr * np.sqrt(1 - beta2 ** state["t"]) * grad / (np.sqrt(state["v"]) + eps)


@pytest.mark.parametrize("sgd", [True, False], ids=["sgd", "adam"])
def test_weight_decay_scales_the_weights_before_every_inner_step(sgd):
    model = tiny_model()
    classes = vector_classes()
    phi = model.init_params(np.random.default_rng(0))
    config = InnerConfig(sgd=sgd, learning_rate=0.05, batch=3, iters=3, weight_decay=0.8)
    learner = FewShotLearner(model, phi.copy(), config)
    learner.train_step(classes, 3, 2, meta_batch=2, step_size=0.5, rng=np.random.default_rng(4))

    # By hand: w ← 0.8·w, then the step on the summed loss at the decayed weights; inner
    # Adam's moments carry from the first task to the second.
    from minireptile.parallel.executor import task_seeds
    from minireptile.problems.tasks import mini_batches, sample_task

    adam = {"v": np.zeros_like(phi), "t": 0}
    solutions = []
    for seed in task_seeds(np.random.default_rng(4), 2):
        rng = np.random.default_rng(seed)
        task = sample_task(classes, 3, 2, rng)
        w = phi.copy()
        for batch in mini_batches(task, 3, 3, False, rng):
            w *= 0.8
            _, g = model.loss_and_grad(w, batch.images, batch.labels)
            g = len(batch.labels) * g
            if sgd:
                w -= 0.05 * g
            else:
                adam_beta1_zero(w, g, adam, 0.05)
        solutions.append(w)
    expected = phi + 0.5 * (np.mean(solutions, axis=0) - phi)
    np.testing.assert_allclose(learner.phi, expected, rtol=1e-12, atol=1e-12)
    if not sgd:
        assert learner.optimizer.t == adam["t"] == 6
        np.testing.assert_allclose(learner.optimizer.v, adam["v"], rtol=1e-12, atol=1e-300)


def test_summed_loss_step_is_batch_times_the_mean_step():
    model = tiny_model()
    phi = model.init_params(np.random.default_rng(0))
    learner = FewShotLearner(model, phi.copy(), InnerConfig(sgd=True, learning_rate=0.01))
    x = np.random.default_rng(1).random((4, 1, 4))
    y = np.array([0, 1, 2, 0])
    w = phi.copy()
    learner._step(w, Task(x, y))
    _, g = model.loss_and_grad(phi, x, y)
    np.testing.assert_allclose(w, phi - 0.01 * 4 * g, rtol=1e-12)


# -- runs, checkpoints, resume --------------------------------------------------------------

def small_config(**overrides):
    values = dict(classes=3, shots=1, train_shots=2, inner_batch=3, inner_iters=2,
                  meta_iters=6, meta_batch=2, eval_interval=2, eval_iters=2, eval_batch=3,
                  checkpoint_interval=2, meta_step=0.5, meta_step_final=0.1)
    values.update(overrides)
    return TrainConfig(**values)


def test_training_writes_checkpoint_and_metrics(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    learner = train(model, classes, classes, small_config(), tmp_path / "run", progress=False,
                    log=lambda *_: None)
    arrays, meta = load_npz(tmp_path / "run" / "checkpoint.npz")
    np.testing.assert_array_equal(arrays["phi"], learner.phi)
    assert meta["next_iteration"] == 6
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 2, 4]
    assert {"train_accuracy", "test_accuracy", "inner_loss"} <= set(json.loads(lines[0]))


def test_same_seed_same_parameters_and_resume_guards(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    quiet = dict(progress=False, log=lambda *_: None)
    a = train(model, classes, classes, small_config(), tmp_path / "a", **quiet)
    b = train(model, classes, classes, small_config(), tmp_path / "b", **quiet)
    np.testing.assert_array_equal(a.phi, b.phi)
    with pytest.raises(InputError, match="already holds a run"):
        train(model, classes, classes, small_config(), tmp_path / "a", **quiet)
    with pytest.raises(InputError, match="nothing to resume: neither .*checkpoint.npz.* nor "
                                         ".*pretraining.npz.* exists; drop resume=True"):
        train(model, classes, classes, small_config(), tmp_path / "c", resume=True, **quiet)
    with pytest.raises(InputError, match="inner_iters="):
        train(model, classes, classes, small_config(inner_iters=3), tmp_path / "a",
              resume=True, **quiet)
    with pytest.raises(InputError, match="parameters"):
        train(tiny_model(num_classes=4), classes, classes, small_config(classes=4),
              tmp_path / "a", resume=True, **quiet)


def test_truncated_checkpoint_is_reported(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    train(model, classes, classes, small_config(), tmp_path / "run", progress=False,
          log=lambda *_: None)
    path = tmp_path / "run" / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated"):
        Run(tmp_path / "run").load(model)


def _cli(*args):
    return [sys.executable, "-m", "minireptile", "train", "omniglot", *args]


def checkpoint_iteration(folder):
    """The ``next_iteration`` of the run's checkpoint, 0 while none is readable yet."""
    try:
        return load_npz(folder / "checkpoint.npz")[1]["next_iteration"]
    except (InputError, OSError):
        return 0


def run_to_the_end(argv, cwd, env):
    """Run ``argv`` (for at most 600 s) and fail the test unless it succeeds; return the
    finished process."""
    finished = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr
    return finished


def kill_when(argv, ready, cwd, env):
    """Start ``argv`` and SIGKILL it as soon as ``ready()`` holds.

    Parameters
    ----------
    argv : list of str
        The command.
    ready : callable () -> bool
        Polled every 50 ms while the command runs.
    cwd, env
        Of the process.

    Fails the test if the command ends before ``ready()`` held: the kill must land in the
    middle of the work. (The 300 s bound only keeps a broken run from hanging the suite.)
    """
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def run_records(folder):
    """Every array of a run's checkpoint, and its metrics without the wall-clock seconds."""
    arrays = load_npz(folder / "checkpoint.npz")[0]
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        del r["seconds"]
    return arrays, records


def assert_same_run(a, b):
    """Two run folders hold bit-identical checkpoints and the same metrics."""
    arrays_a, metrics_a = run_records(a)
    arrays_b, metrics_b = run_records(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=f"{b}: {key}")
    assert metrics_a == metrics_b


KILLED_TRAINING = {
    "reptile": [],
    "maml": ["--sgd", "--learning-rate", "0.05", "--maml"],
    "outer-adam": ["--outer", "adam"],
    "foml-tail": ["--foml", "--foml-tail", "1", "--train-shots", "3"],
    "combination": ["--sgd", "--learning-rate", "0.05", "--combination", "(g1+g2)/2"],
    "meta-batch": ["--meta-batch", "3"],
}


@pytest.mark.parametrize("algorithm", list(KILLED_TRAINING))
def test_run_killed_mid_way_resumes_bit_identically(tmp_path, synthetic_omniglot, algorithm):
    common = ["--data", str(synthetic_omniglot), "--num-train", "8", "--classes", "3",
              "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "2",
              "--meta-batch", "1", "--meta-iters", "40", "--eval-interval", "5",
              "--eval-iters", "2", "--eval-samples", "0", "--checkpoint-interval", "1",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress",
              *KILLED_TRAINING[algorithm]]  # (a repeated flag: the later value counts)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Run outside the source tree, so "-m" imports the installed package.
    run_to_the_end(_cli(*common, "--checkpoint", str(tmp_path / "straight")), tmp_path, env)

    killed = tmp_path / "killed"
    kill_when(_cli(*common, "--checkpoint", str(killed)),
              lambda: checkpoint_iteration(killed) >= 10, tmp_path, env)
    stopped_at = checkpoint_iteration(killed)
    assert 10 <= stopped_at < 40

    resumed = run_to_the_end(_cli(*common, "--checkpoint", str(killed), "--resume"),
                             tmp_path, env)
    assert f"resuming {killed} at iteration {stopped_at}" in resumed.stdout
    assert_same_run(tmp_path / "straight", killed)
    # The outer optimiser's state came through the kill too: one Adam step per iteration.
    if algorithm == "outer-adam":
        assert int(load_npz(killed / "checkpoint.npz")[0]["state.outer.t"]) == 40


def test_experiment_killed_mid_way_resumes_its_unfinished_variants(tmp_path,
                                                                   synthetic_omniglot):
    variants = ("g1", "g2", "g1_g2")

    def experiment(out):
        return [sys.executable, "-m", "minireptile", "experiment", "gradient-combinations",
                "--data", str(synthetic_omniglot), "--train-alphabet", "Alphabet0",
                "--combinations", "g1,g2,g1+g2", "--meta-iters", "4", "--out", str(out),
                "--no-plot", "--no-progress", "--workers", "1",
                "--cache-dir", str(tmp_path / "cache")]

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = run_to_the_end(experiment(tmp_path / "straight"), tmp_path, env)

    # Killed once the first variant is finished and before the last one is: at least one
    # variant is then finished and at least one is not.
    killed = tmp_path / "killed"
    kill_when(experiment(killed), lambda: (killed / "g1" / "checkpoint.npz").exists(),
              tmp_path, env)
    assert not (killed / "g1_g2" / "checkpoint.npz").exists()
    finished = (killed / "g1" / "checkpoint.npz").read_bytes()

    again = run_to_the_end(experiment(killed), tmp_path, env)
    assert "== g1: k = 1, train shots 5 (resuming)" in again.stdout
    assert (killed / "g1" / "checkpoint.npz").read_bytes() == finished  # not trained again
    assert (killed / "curves.csv").read_text() == (tmp_path / "straight" / "curves.csv").read_text()
    for variant in variants:
        assert_same_run(tmp_path / "straight" / variant, killed / variant)
    # The final table: the same accuracies, row for row.
    def table(stdout):
        return [line for line in stdout.splitlines()
                if line.split()[:1] in (["g1"], ["g2"], ["g1+g2"])]

    assert len(table(straight.stdout)) == 3
    assert table(again.stdout) == table(straight.stdout)


def _train_args(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--num-train", "8", "--classes", "3",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "1",
            "--meta-iters", "2", "--eval-iters", "1", "--eval-samples", "0",
            "--checkpoint", str(checkpoint), "--no-progress", *extra]


def test_command_line_guards_finished_work(tmp_path, synthetic_omniglot, capsys):
    from minireptile.cli import main

    run = tmp_path / "run"
    assert main(_train_args(synthetic_omniglot, run, "--cache-dir", str(tmp_path))) == 0
    before = (run / "checkpoint.npz").read_bytes()
    cases = [
        # a new run into a finished one
        (_train_args(synthetic_omniglot, run), "already holds a run"),
        # resuming with other data
        (_train_args(synthetic_omniglot, run, "--resume", "--num-train", "6"), "the data"),
        # --pretrained with another seed would evaluate on another character split
        (_train_args(synthetic_omniglot, run, "--pretrained", "--seed", "3"), "--seed 0"),
        # a file where the run folder should be: an OSError, reported in one line
        (_train_args(synthetic_omniglot, tmp_path / "run" / "checkpoint.npz"), "checkpoint.npz"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (run / "checkpoint.npz").read_bytes() == before


def test_non_contiguous_parameters_are_rejected():
    model = tiny_model()
    phi = np.repeat(model.init_params(np.random.default_rng(0))[:, None], 2, axis=1)[:, 0]
    with pytest.raises(InputError, match="contiguous"):
        model.predict(phi, np.zeros((2, 1, 4)))


def test_outer_adam_is_selectable_and_stored_with_the_run(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    quiet = dict(progress=False, log=lambda *_: None)
    adam = train(model, classes, classes, small_config(outer="adam"), tmp_path / "adam", **quiet)
    state = load_npz(tmp_path / "adam" / "checkpoint.npz")[0]
    assert int(state["state.outer.t"]) == 6      # one outer Adam step per meta-iteration
    np.testing.assert_array_equal(load_npz(tmp_path / "adam" / "checkpoint.npz")[0]["phi"],
                                  adam.phi)


def test_outer_adam_is_adam_on_phi_minus_the_mean_solution():
    from minireptile.algorithms.meta_iteration import OuterSGD, make_outer

    model = tiny_model()
    classes = vector_classes()
    config = InnerConfig(sgd=True, learning_rate=0.1, batch=3, iters=2)
    phi = model.init_params(np.random.default_rng(0))
    learner = FewShotLearner(model, phi.copy(), config, outer=make_outer("adam"))
    m, v = np.zeros_like(phi), np.zeros_like(phi)
    for t in range(1, 4):
        # W̄ at the current Φ: a Reptile step of size 1 from a copy, on the same tasks
        # (inner SGD: nothing carries between tasks or iterations).
        probe = FewShotLearner(model, learner.phi.copy(), config, outer=OuterSGD())
        probe.train_step(classes, 3, 2, meta_batch=2, step_size=1.0,
                         rng=np.random.default_rng(t))
        g = learner.phi - probe.phi                          # Φ − W̄
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step = 0.3 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        expected = learner.phi - step * m / (np.sqrt(v) + 1e-8)
        learner.train_step(classes, 3, 2, meta_batch=2, step_size=0.3,
                           rng=np.random.default_rng(t))
        np.testing.assert_allclose(learner.phi, expected, rtol=1e-9, atol=1e-12,
                                   err_msg=f"iteration {t}")


def test_weight_decay_through_the_command_line(tmp_path, synthetic_omniglot):
    from minireptile.cli import main

    # Inner SGD with a learning rate far below the weights' last bit and a meta-step of 1:
    # one meta-iteration leaves Φ = W = 0.5³·Φ₀ after three inner steps, each preceded by
    # w ← 0.5·w. Without decay Φ stays Φ₀ (the same initialisation, same seed).
    def trained(name, rate):
        run = tmp_path / name
        assert main(_train_args(synthetic_omniglot, run, "--sgd", "--learning-rate", "1e-30",
                                "--inner-iters", "3", "--meta-iters", "1", "--meta-step", "1",
                                "--meta-step-final", "1", "--weight-decay", rate,
                                "--workers", "1", "--cache-dir", str(tmp_path / "cache"))) == 0
        arrays, meta = load_npz(run / "checkpoint.npz")
        assert meta["config"]["weight_decay"] == float(rate)
        return arrays["phi"]

    plain, decayed = trained("plain", "1"), trained("decayed", "0.5")
    np.testing.assert_allclose(decayed, 0.125 * plain, rtol=1e-6, atol=1e-25)
    # Batch norm's γ starts at 1: untouched without decay, 0.5³ with it.
    from minireptile.models.cnn import omniglot_cnn

    layout = omniglot_cnn(3).layout
    for name in ("batchnorm2d0.gamma", "batchnorm2d3.gamma"):
        np.testing.assert_array_equal(layout.views(plain)[name], 1)
        np.testing.assert_allclose(layout.views(decayed)[name], 0.125, rtol=1e-6)


def test_a_pickled_learner_leaves_its_gradient_buffer_behind_and_evaluates_the_same():
    import pickle

    from minireptile.problems.fewshot import evaluate_task

    model = tiny_model()
    classes = vector_classes()
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(batch=2, iters=3))
    learner.train_step(classes, 2, 2, 1, 1.0, np.random.default_rng(1))
    data = pickle.dumps(learner)
    assert len(data) < len(pickle.dumps(learner.__dict__))  # without the buffer
    copy = pickle.loads(data)
    assert copy._grad.shape == learner.phi.shape
    settings = (2, 1, 2, 3, False)
    assert evaluate_task(copy, classes, settings, 7) == evaluate_task(learner, classes,
                                                                      settings, 7)
    np.testing.assert_array_equal(copy.phi, learner.phi)
