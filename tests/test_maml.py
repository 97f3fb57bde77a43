"""Second-order MAML: the meta-gradient against central finite differences of
``Φ ↦ L_k(U(Φ))`` in float64, for k = 1 … 4, on an MLP and a small CNN; and the few-shot
learner's MAML update against the same differences of what its inner loop actually does.
"""

import numpy as np
import pytest

from minireptile.algorithms.maml import maml_gradient
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.models.gradcheck import numerical_gradient, relative_error
from minireptile.models.model import mlp
from minireptile.problems.fewshot import FewShotLearner, InnerConfig
from minireptile.problems.tasks import Task

TOLERANCE = 1e-6


def unrolled_loss(model, phi, batches, lr, scales):
    """``s_k·L_k(U(Φ))`` by running the SGD steps with the handwritten gradient."""
    w = phi.copy()
    for (x, y), s in zip(batches[:-1], scales[:-1]):
        _, grad = model.loss_and_grad(w, x, y)
        w -= lr * s * grad
    x, y = batches[-1]
    return scales[-1] * model.loss_and_grad(w, x, y)[0]


def mlp_problem(rng, k):
    model = mlp([2, 6, 5, 3], activation="tanh", loss="cross_entropy", dtype=np.float64)
    phi = model.init_params(rng)
    batches = [(rng.standard_normal((4, 2)), rng.integers(0, 3, 4)) for _ in range(k)]
    return model, phi, batches, 0.3


def cnn_problem(rng, k):
    model = omniglot_cnn(3, dtype=np.float64, image_size=6, filters=2)
    phi = model.init_params(rng) + 0.1 * rng.standard_normal(model.size)
    batches = [(rng.standard_normal((3, 6, 6)), rng.integers(0, 3, 3)) for _ in range(k)]
    return model, phi, batches, 0.1


@pytest.mark.parametrize("problem", [mlp_problem, cnn_problem])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_maml_gradient_matches_finite_differences(problem, k):
    rng = np.random.default_rng(k)
    model, phi, batches, lr = problem(rng, k)
    scales = [1.0 + i for i in range(k)]  # unequal step scales, as a summed loss gives
    loss, grad = maml_gradient(model, phi, batches, lr, scales)
    assert loss == pytest.approx(unrolled_loss(model, phi, batches, lr, scales), rel=1e-12)
    work = phi.copy()
    numeric = numerical_gradient(lambda: unrolled_loss(model, work, batches, lr, scales), work,
                                 h=1e-5)
    assert relative_error(grad, numeric) <= TOLERANCE
    if k > 1:  # and it is not the first-order gradient: the test can tell them apart
        first_order = unrolled_gradient_at_last(model, phi, batches, lr, scales)
        assert relative_error(first_order, numeric) > 100 * TOLERANCE


def unrolled_gradient_at_last(model, phi, batches, lr, scales):
    w = phi.copy()
    for (x, y), s in zip(batches[:-1], scales[:-1]):
        w -= lr * s * model.loss_and_grad(w, x, y)[1]
    return scales[-1] * model.loss_and_grad(w, *batches[-1])[1]


def test_maml_gradient_rejects_no_batches_and_wrong_scales():
    model, phi, batches, lr = mlp_problem(np.random.default_rng(0), 2)
    with pytest.raises(InputError, match="at least one mini-batch"):
        maml_gradient(model, phi, [], lr)
    with pytest.raises(InputError, match=r"one entry per mini-batch \(2\), got 3"):
        maml_gradient(model, phi, batches, lr, scales=[1, 1, 1])


@pytest.mark.parametrize("iters", [1, 2, 4])
def test_learner_maml_update_is_the_meta_gradient_of_its_inner_loop(iters):
    # The learner steps on the summed cross-entropy (batch size × the mean), so its update
    # must be −α times the gradient of Φ ↦ batch_k·L_k(U(Φ)) with those scaled steps.
    rng = np.random.default_rng(iters)
    model = omniglot_cnn(3, dtype=np.float64, image_size=6, filters=2)
    phi = model.init_params(rng) + 0.1 * rng.standard_normal(model.size)
    images = rng.standard_normal((9, 6, 6))
    labels = np.repeat(np.arange(3), 3)
    task = Task(images, labels)
    inner = InnerConfig(learning_rate=0.02, sgd=True, batch=4, iters=iters)
    learner = FewShotLearner(model, phi, inner, algorithm="maml")
    update, _ = learner.adapt(phi.copy(), task, np.random.default_rng(7))
    # The same mini-batches, drawn from the same generator state.
    from minireptile.problems.tasks import mini_batches

    drawn = list(mini_batches(task, 4, iters, False, np.random.default_rng(7)))
    batches = [(b.images, b.labels) for b in drawn]
    scales = [len(b.labels) for b in drawn]
    work = phi.copy()
    numeric = numerical_gradient(
        lambda: unrolled_loss(model, work, batches, inner.learning_rate, scales), work, h=1e-5)
    assert relative_error(update, -inner.learning_rate * numeric) <= TOLERANCE


def test_learner_refuses_maml_with_adam_or_weight_decay():
    model = mlp([2, 3, 2], loss="cross_entropy", dtype=np.float64)
    phi = model.init_params(np.random.default_rng(0))
    with pytest.raises(InputError, match="inner SGD"):
        FewShotLearner(model, phi, InnerConfig(sgd=False), algorithm="maml")
    with pytest.raises(InputError, match="weight decay"):
        FewShotLearner(model, phi, InnerConfig(sgd=True, weight_decay=0.9), algorithm="maml")


# ---------------------------------------------------------------------------------------------
# Sine: the inner loop ends at Φ − α·g for FOMAML and MAML


@pytest.mark.parametrize("algorithm", ["foml", "maml"])
@pytest.mark.parametrize("fused", [True, False])
def test_sine_inner_loop_ends_at_phi_minus_lr_times_meta_gradient(algorithm, fused):
    from minireptile.algorithms.directions import make_algorithm
    from minireptile.problems.sine import X_ALL, adapt, sample_task

    rng = np.random.default_rng(1)
    model = mlp([1, 6, 6, 1], activation="tanh", loss="mse", dtype=np.float64, fused=fused)
    phi = model.init_params(rng)
    x = X_ALL[:12]
    y = sample_task(rng)(x)
    direction, _ = adapt(model, make_algorithm(algorithm), phi.copy(), x, y,
                         np.random.default_rng(3), batch=4, epochs=1, lr=0.02)
    order = np.random.default_rng(3).permutation(len(x))
    batches = [(x[order[s:s + 4]], y[order[s:s + 4]]) for s in range(0, len(x), 4)]
    if algorithm == "maml":
        work = phi.copy()
        g = numerical_gradient(lambda: unrolled_loss(model, work, batches, 0.02, [1, 1, 1]),
                               work, h=1e-5)
    else:
        g = unrolled_gradient_at_last(model, phi, batches, 0.02, [1, 1, 1])
    assert relative_error(-direction, 0.02 * g) <= TOLERANCE


def test_sine_command_trains_with_maml_and_rejects_two_algorithms(capsys):
    from minireptile.cli import main

    assert main(["sine", "--maml", "--iterations", "3", "--eval-tasks", "2",
                 "--no-progress"]) == 0
    assert "after 32 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["sine", "--maml", "--foml", "--iterations", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--foml" in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------
# Few-shot command line


def _train(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--num-train", "8", "--classes", "3",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "2",
            "--meta-iters", "2", "--eval-iters", "1", "--eval-samples", "2",
            "--checkpoint", str(checkpoint), "--no-progress", *extra]


@pytest.mark.parametrize("extra, message", [
    (["--maml", "--sgd", "--foml"], "--maml excludes --foml"),
    (["--maml", "--sgd", "--combination", "g1+g2"], "--maml excludes --combination"),
    (["--maml"], "--maml needs --sgd"),
    (["--maml", "--sgd", "--weight-decay", "0.9"], "--weight-decay 1"),
])
def test_train_rejects_maml_with_another_algorithm_or_inner_adam(tmp_path, synthetic_omniglot,
                                                                 capsys, extra, message):
    from minireptile.cli import main

    assert main(_train(synthetic_omniglot, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_train_omniglot_maml_equals_foml_for_one_step_and_not_for_two(tmp_path,
                                                                       synthetic_omniglot,
                                                                       capsys):
    from minireptile.cli import main
    from minireptile.npzfile import load_npz

    # With one inner step nothing is differentiated through: g_MAML = ∇L_1(Φ), and the
    # first-order update is that same step. With two the Hessian term enters.
    phis = {}
    for k in ("1", "2"):
        for name, flag in (("maml", "--maml"), ("foml", "--foml")):
            assert main(_train(synthetic_omniglot, tmp_path / f"{name}{k}", "--sgd", flag,
                               "--inner-iters", k, "--workers", "1",
                               "--cache-dir", str(tmp_path / "cache"))) == 0
            arrays, meta = load_npz(tmp_path / f"{name}{k}" / "checkpoint.npz")
            assert meta["config"]["maml"] is (name == "maml")
            phis[name + k] = arrays["phi"]
    out = capsys.readouterr().out
    assert out.count("Test accuracy") == 4
    # The same step, computed the same way: bit for bit.
    np.testing.assert_array_equal(phis["maml1"], phis["foml1"])
    # Two steps: Φ moves along (I − αH_1)∇L_2 instead of ∇L_2, a change far above rounding
    # (1.8e-4 observed in the largest parameter change; float32 rounding here is ~1e-8).
    assert np.abs(phis["maml2"] - phis["foml2"]).max() > 1e-5


def test_meta_gradient_matches_pytorch_autograd_second_order():
    # Full-size Omniglot network, float64, 3 SGD steps then the meta-objective: the handwritten
    # HVP chain against torch.autograd differentiating the unrolled graph (create_graph=True).
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    model = omniglot_cnn(5, dtype=np.float64)
    phi = model.init_params(rng) + 0.05 * rng.standard_normal(model.size)
    batches = [(rng.random((6, 28, 28)), rng.integers(0, 5, 6)) for _ in range(4)]
    lr = 0.05

    def forward(t, x):
        h = torch.tensor(x)[:, None]
        for i in range(4):
            h = F.pad(h, (0, 1, 0, 1) if h.shape[2] % 2 == 0 else (1, 1, 1, 1))
            h = F.conv2d(h, t[f"conv2d{i}.weight"].permute(3, 2, 0, 1), t[f"conv2d{i}.bias"], 2)
            h = F.relu(F.batch_norm(h, None, None, t[f"batchnorm2d{i}.gamma"],
                                    t[f"batchnorm2d{i}.beta"], training=True, eps=1e-3))
        return h.permute(0, 2, 3, 1).reshape(len(x), -1) @ t["linear0.weight"] + t["linear0.bias"]

    names = list(model.layout.names)
    start = {k: torch.tensor(v.copy(), requires_grad=True)
             for k, v in model.layout.views(phi).items()}
    w = dict(start)
    for x, y in batches[:-1]:
        loss = F.cross_entropy(forward(w, x), torch.tensor(y))
        grads = torch.autograd.grad(loss, [w[k] for k in names], create_graph=True)
        w = {k: w[k] - lr * g for k, g in zip(names, grads)}
    x, y = batches[-1]
    final = F.cross_entropy(forward(w, x), torch.tensor(y))
    theirs = torch.autograd.grad(final, [start[k] for k in names])
    _, ours = maml_gradient(model, phi, batches, lr)
    views = model.layout.views(ours)
    assert abs(final.item() - maml_gradient(model, phi, batches, lr)[0]) <= 1e-10
    for name, g in zip(names, theirs):
        np.testing.assert_allclose(views[name], g.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)
