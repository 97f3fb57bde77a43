"""The seed's sine script in PyTorch: Reptile on sine waves, as a whole program to time.

    python benchmarks/seed_sine_torch.py [--iterations 30000] [--eval-tasks 1000]

The original script's algorithm (1→64→64→1 tanh MLP, one epoch of SGD at 0.02 over the 50
points in shuffled batches of 10, ε annealed linearly from 0.1 to 0), then the held-out
evaluation ``minireptile sine`` prints (32 full-batch SGD steps on 10 points of each task).
It imports only NumPy and PyTorch, as the original does, so that timing it as a process
compares start-up as well as the loop.
"""

import argparse
from copy import deepcopy

import numpy as np
import torch
from torch import nn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30000)
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    x_all = np.linspace(-5, 5, 50)[:, None].astype(np.float32)
    model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 1))

    def sgd_step(net, x, y, lr=0.02):
        net.zero_grad()
        loss = (net(torch.from_numpy(x)) - torch.from_numpy(y)).pow(2).mean()
        loss.backward()
        for param in net.parameters():
            param.data -= lr * param.grad.data

    for iteration in range(args.iterations):
        before = deepcopy(model.state_dict())
        phase, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 5)
        y_all = (amplitude * np.sin(x_all + phase)).astype(np.float32)
        order = rng.permutation(len(x_all))
        for start in range(0, len(x_all), 10):
            idx = order[start:start + 10]
            sgd_step(model, x_all[idx], y_all[idx])
        after = model.state_dict()
        eps = 0.1 * (1 - iteration / args.iterations)
        model.load_state_dict({k: before[k] + (after[k] - before[k]) * eps for k in before})

    eval_rng = np.random.default_rng(1000)
    errors = []
    for _ in range(args.eval_tasks):
        phase, amplitude = eval_rng.uniform(0, 2 * np.pi), eval_rng.uniform(0.1, 5)
        idx = eval_rng.choice(50, size=10, replace=False)
        y_all = (amplitude * np.sin(x_all + phase)).astype(np.float32)
        clone = deepcopy(model)
        for _ in range(32):
            sgd_step(clone, x_all[idx], y_all[idx])
        with torch.no_grad():
            errors.append(float(((clone(torch.from_numpy(x_all)) - torch.from_numpy(y_all))
                                 ** 2).mean()))
    if errors:
        print(f"held-out mean squared error after 32 steps: {np.mean(errors):.4f}")


if __name__ == "__main__":
    main()
