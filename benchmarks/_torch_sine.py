"""The sine Reptile loop written in PyTorch, as in the original script, for side-by-side runs.

Tasks, shuffles and held-out tasks come from the same NumPy generators as minireptile's, so
both implementations see the same data; each initialises its network its own way (PyTorch's
default ``nn.Linear`` init, which minireptile's ``init="torch"`` reproduces in distribution).
"""

import numpy as np

from minireptile.problems import sine
from minireptile.stats import mean_and_interval


def import_torch():
    """PyTorch, or None with a message when it is not installed."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: skipping the PyTorch side "
              "(pip install torch==2.13.0 to compare).")
        return None
    return torch


def make_model(torch):
    from torch import nn

    return nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 1))


def train(torch, config):
    """The original script's loop: SGD epochs on each task, then interpolate the weights."""
    from copy import deepcopy

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = make_model(torch)
    x_all = sine.X_ALL.astype(np.float32)

    def train_on_batch(x, y):
        model.zero_grad()
        loss = (model(torch.from_numpy(x)) - torch.from_numpy(y)).pow(2).mean()
        loss.backward()
        for param in model.parameters():
            param.data -= config.inner_lr * param.grad.data

    for iteration in range(config.iterations):
        weights_before = deepcopy(model.state_dict())
        task = sine.sample_task(rng)
        y_all = task(x_all).astype(np.float32)
        for _ in range(config.inner_epochs):
            order = rng.permutation(len(x_all))
            for start in range(0, len(x_all), config.inner_batch):
                idx = order[start : start + config.inner_batch]
                train_on_batch(x_all[idx], y_all[idx])
        weights_after = model.state_dict()
        step = (1 - iteration / config.iterations) * config.meta_step + (
            iteration / config.iterations) * config.meta_step_final
        model.load_state_dict({
            name: weights_before[name] + (weights_after[name] - weights_before[name]) * step
            for name in weights_before
        })
    return model


def evaluate(torch, model, tasks, lr, steps=sine.EVAL_STEPS):
    """Fine-tune copies of ``model`` on each held-out task exactly as :func:`sine.evaluate`."""
    from copy import deepcopy

    x_all = sine.X_ALL.astype(np.float32)
    per_step = {s: [] for s in steps}
    for task, idx in tasks:
        clone = deepcopy(model)
        y_all = task(x_all).astype(np.float32)
        x_t, y_t = torch.from_numpy(x_all), torch.from_numpy(y_all)
        for step in range(max(steps) + 1):
            if step in steps:
                with torch.no_grad():
                    per_step[step].append(float(((clone(x_t) - y_t) ** 2).mean()))
            if step < max(steps):
                clone.zero_grad()
                loss = ((clone(x_t[idx]) - y_t[idx]) ** 2).mean()
                loss.backward()
                with torch.no_grad():
                    for param in clone.parameters():
                        param -= lr * param.grad
    return {s: mean_and_interval(v) for s, v in per_step.items()}
