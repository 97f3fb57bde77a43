"""One Reptile meta-iteration in PyTorch, the baseline of the meta-iteration benchmarks."""

import torch
import torch.nn.functional as F


def reptile_meta_iteration(net, optimizer, tasks, meta_step):
    """Adapt a copy of the weights to each task (summed cross-entropy, ``optimizer`` steps on
    the task's mini-batches, its state carried from task to task as in the reference), then
    ``Φ ← Φ + ε(W̄ − Φ)``.

    ``tasks`` is a list of tasks, each a list of ``(images, labels)`` NumPy mini-batches.
    """
    params = list(net.parameters())
    old = [p.detach().clone() for p in params]
    total = [torch.zeros_like(p) for p in params]
    for batches in tasks:
        with torch.no_grad():
            for p, o in zip(params, old):
                p.copy_(o)
        for images, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(torch.from_numpy(images)), torch.from_numpy(labels),
                            reduction="sum").backward()
            optimizer.step()
        with torch.no_grad():
            for t, p in zip(total, params):
                t += p
    with torch.no_grad():
        for p, o, t in zip(params, old, total):
            p.copy_(o + meta_step * (t / len(tasks) - o))
