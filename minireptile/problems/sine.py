"""Few-shot sine-wave regression, the Reptile paper's toy problem.

A task is ``y = a·sin(x + b)`` with ``a ~ U[0.1, 5]`` and ``b ~ U[0, 2π]``, observed at 50 points
on ``linspace(−5, 5)``. The model is a 1→64→64→1 tanh MLP. Each meta-iteration trains a copy of
Φ for one epoch over the 50 points in shuffled mini-batches of 10 (SGD, lr 0.02) and moves Φ
towards the result, with ε annealed linearly from 0.1 to 0 over 30,000 iterations.

With ``algorithm="foml"`` or ``"maml"`` the same mini-batches make the paper's k-batch
first-order and second-order MAML instead: SGD on the first k − 1, then the gradient of the
last batch's loss, ``g_k`` (FOMAML) or carried back through the k − 1 steps (MAML, see
:mod:`minireptile.algorithms.maml`); Φ moves by ``ε·α·g``.
"""

from dataclasses import asdict, dataclass

import numpy as np

from ..algorithms.directions import make_algorithm
from ..algorithms.meta_iteration import linear_schedule, make_outer, meta_step
from ..algorithms.optim import SGD
from ..guard import DivergedError, check_finite
from ..parallel.executor import SerialExecutor
from ..settings import (
    COUNT,
    COUNT_OR_ZERO,
    NON_NEGATIVE,
    POSITIVE,
    Kind,
    check_settings,
    choice,
    setting,
)
from ..stats import mean_and_interval

X_ALL = np.linspace(-5, 5, 50)[:, None]
EVAL_STEPS = (0, 1, 8, 32)
ALGORITHMS = ("reptile", "foml", "maml")
PLOT_STEPS = (0, 8, 16, 24, 32)


@dataclass(frozen=True)
class SineTask:
    """``y = amplitude · sin(x + phase)``."""

    amplitude: float
    phase: float

    def __call__(self, x):
        return self.amplitude * np.sin(x + self.phase)


def sample_task(rng):
    """Draw a task: phase first, then amplitude (the order of the original script)."""
    phase = rng.uniform(0, 2 * np.pi)
    amplitude = rng.uniform(0.1, 5)
    return SineTask(amplitude, phase)


def sine_model(dtype=np.float32):
    """The 1→64→64→1 tanh MLP with mean squared error, PyTorch-default initialisation."""
    from ..models.model import mlp  # Numba: imported when a model is first needed

    return mlp([1, 64, 64, 1], activation="tanh", loss="mse", dtype=dtype)


@dataclass
class SineConfig:
    """Hyperparameters of sine meta-training (defaults are the paper's). Each is declared
    once here; ``minireptile sine`` makes its flags from these declarations."""

    iterations: int = setting(30000, COUNT, "outer iterations", aliases=("--meta-iters",))
    seed: int = setting(0, COUNT_OR_ZERO, "random seed for initialisation and training tasks")
    inner_lr: float = setting(0.02, POSITIVE, "inner SGD learning rate, also used for "
                                              "fine-tuning", aliases=("--learning-rate",))
    inner_batch: int = setting(10, Kind("int", minimum=1, maximum=len(X_ALL)),
                               "inner mini-batch size")
    inner_epochs: int = setting(1, COUNT, "inner epochs over the 50 points")
    meta_step: float = setting(0.1, POSITIVE, "outer step size ε at the start")
    meta_step_final: float = setting(0.0, NON_NEGATIVE, "outer step size at the end, "
                                                        "annealed linearly")
    meta_batch: int = setting(1, COUNT, "tasks averaged per outer step")
    outer: str = setting("sgd", choice("adam", "sgd"), "outer update: sgd = Φ+ε(W̄−Φ); adam = "
                                                      "Adam on Φ−W̄")
    algorithm: str = setting("reptile", choice(*ALGORITHMS), "reptile, or first-order (foml) "
                                                             "or second-order (maml) MAML on "
                                                             "the same mini-batches")

    def validate(self):
        """Raise :class:`InputError` naming the first bad value (``name=value``)."""
        return check_settings(self)


class _SineSteps:
    """One sine task's inner steps, as :mod:`minireptile.algorithms.directions` drives them:
    plain SGD on the mean squared error of each mini-batch of ``(x, y)`` (several steps at
    once through :meth:`Model.sgd_steps`, which a fused MLP runs in one kernel call)."""

    plain_sgd = True

    def __init__(self, model, x, y, batches, lr):
        self.model, self.x, self.y, self.batches, self.lr = model, x, y, batches, lr
        self.k = len(batches)

    def run(self, w, start=0, stop=None):
        # The losses as the array sgd_steps returns: a list of NumPy scalars would cost more
        # than a small network's step.
        batches = self.batches[start:stop]
        return self.model.sgd_steps(w, self.x, self.y, batches, self.lr) if batches else []

    def step_with_gradient(self, w, i):
        loss, grad = self.model.loss_and_grad(w, *self.batch(i))
        w -= w.dtype.type(self.lr) * grad
        return loss, grad

    def batch(self, i):
        return self.x[self.batches[i]], self.y[self.batches[i]]

    def scale(self, i):
        return 1.0


def adapt(model, algorithm, w, x, y, rng, batch, epochs, lr):
    """One task's inner loop from ``w`` (changed in place): ``epochs`` passes of SGD over
    ``(x, y)`` in shuffled mini-batches of ``batch``, run by ``algorithm``.

    Returns
    -------
    direction : ndarray, shape (model.size,)
        The move the task asks of Φ (``W − Φ`` for Reptile; ``−lr·g`` for first-order and
        second-order MAML, with ``g`` the meta-gradient of the last mini-batch's loss after
        the k − 1 steps before it).
    loss : float
        The mean mini-batch loss (measured before each step).
    """
    batches = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        batches.extend(order[start : start + batch] for start in range(0, len(x), batch))
    direction, losses = algorithm.direction(_SineSteps(model, x, y, batches, lr), w)
    return direction, float(np.mean(losses))


def train(config, progress=False, model=None):
    """Meta-train Φ on sine tasks.

    Parameters
    ----------
    config : SineConfig
    progress : bool
        Show a tqdm bar with the running inner-loop loss.
    model : Model, optional
        Default :func:`sine_model`.

    Returns
    -------
    phi : ndarray, shape (model.size,)
    losses : ndarray, shape (iterations,)
        Mean inner-loop loss of each meta-iteration.

    Examples
    --------
    >>> phi, losses = train(SineConfig(iterations=100))
    >>> phi.shape, losses.shape
    ((4353,), (100,))
    """
    config.validate()
    model = model or sine_model()
    algorithm = make_algorithm(config.algorithm)
    rng = np.random.default_rng(config.seed)
    phi = model.init_params(rng)
    outer = make_outer(config.outer)
    x = X_ALL.astype(model.dtype)
    losses = np.empty(config.iterations)

    bar = _progress_bar(config.iterations) if progress else None
    for it in range(config.iterations):
        eps = linear_schedule(config.meta_step, config.meta_step_final, it, config.iterations)
        tasks = [sample_task(rng) for _ in range(config.meta_batch)]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            adapted = [adapt(model, algorithm, phi.copy(), x, task(x), rng, config.inner_batch,
                             config.inner_epochs, config.inner_lr) for task in tasks]
            meta_step(phi, [direction for direction, _ in adapted], eps, outer)
        losses[it] = sum(loss for _, loss in adapted) / len(adapted)
        try:
            check_finite({"inner loss": losses[it], "parameters": phi,
                          **{f"optimiser state {k}": v for k, v in outer.state_dict().items()}},
                         f"the step sizes are probably too large: lower inner_lr="
                         f"{config.inner_lr} or meta_step={config.meta_step}")
        except DivergedError as err:
            raise DivergedError(f"sine meta-training diverged at iteration {it}: {err}") from None
        if bar is not None:
            bar.update(1)
            if it % 200 == 199 or it == config.iterations - 1:
                bar.set_postfix(loss=f"{losses[max(0, it - 199): it + 1].mean():.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return phi, losses


def _progress_bar(total):
    from tqdm import tqdm

    return tqdm(total=total, desc="meta-training", unit="it", mininterval=0.5)


def finetune_curve(model, phi, task, train_idx, lr, steps):
    """Fine-tune a copy of Φ on ``task`` at ``X_ALL[train_idx]`` with full-batch SGD.

    Returns ``{step: (mse over all 50 points, predictions)}`` for each step in ``steps``.
    """
    x = X_ALL.astype(model.dtype)
    y = task(x)
    w = phi.copy()
    grad = np.empty_like(w)
    sgd = SGD(lr)
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            with np.errstate(over="ignore", invalid="ignore"):
                pred = model.predict(w, x)
                out[step] = (float(np.mean((pred - y) ** 2)), pred)
        if step < max(steps):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                model.loss_and_grad(w, x[train_idx], y[train_idx], out=grad)
                sgd.step(w, grad)
    check_finite({"fine-tuned weights": w,
                  "squared errors": np.array([mse for mse, _ in out.values()])},
                 f"fine-tuning diverged: lower the learning rate ({lr})")
    return out


def heldout_tasks(n_tasks, seed, n_points=10):
    """``n_tasks`` tasks with their ``n_points`` training indices, from their own seed."""
    rng = np.random.default_rng(seed)
    return [
        (sample_task(rng), rng.choice(len(X_ALL), size=n_points, replace=False))
        for _ in range(n_tasks)
    ]


def plot_task(seed):
    """The fixed task and 10 points shown in the plot and scored as "loss on plotted curve"."""
    ((task, idx),) = heldout_tasks(1, seed=[seed, 0xC0FFEE])
    return task, idx


def evaluate(model, phi, tasks, lr, steps=EVAL_STEPS, executor=None):
    """Mean squared error over the 50 points after each of ``steps`` fine-tuning steps.

    Parameters
    ----------
    tasks : list of (SineTask, indices), from :func:`heldout_tasks`
    executor : SerialExecutor or ProcessExecutor, optional
        Where the tasks are fine-tuned (default: here, in order); the result is the same.

    Returns ``{step: (mean, 95% half-width)}`` over ``tasks``.
    """
    executor = executor or SerialExecutor()
    errors = np.array(executor.map(_finetune_errors, tasks, model, phi, lr, tuple(steps)))
    return {s: mean_and_interval(errors[:, i]) for i, s in enumerate(steps)}


def _finetune_errors(model, phi, lr, steps, task_and_idx):
    """Mean squared error after each of ``steps`` on one held-out task."""
    task, idx = task_and_idx
    curve = finetune_curve(model, phi, task, idx, lr, steps)
    return [curve[s][0] for s in steps]


def config_dict(config):
    """The configuration as a plain dict (for saving beside the parameters)."""
    return asdict(config)
