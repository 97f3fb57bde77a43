"""The reference Omniglot network in PyTorch, for side-by-side benchmarks (imports torch)."""

import torch
import torch.nn.functional as F


class OmniglotNet(torch.nn.Module):
    """4 × [conv 64×3×3 stride 2 → batch norm (ε 1e-3, batch statistics) → ReLU] → dense, in
    NCHW, with TensorFlow's ``same`` padding added by ``F.pad`` (the odd pixel after) and the
    features flattened in TensorFlow's NHWC order."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, stride=2) for i in range(4))
        self.norms = torch.nn.ModuleList(
            torch.nn.BatchNorm2d(64, eps=1e-3, track_running_stats=False) for _ in range(4))
        self.dense = torch.nn.Linear(256, num_classes)

    def forward(self, x):
        h = x[:, None]
        for conv, norm in zip(self.convs, self.norms):
            size = h.shape[2]
            total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
            h = F.pad(h, (total // 2, total - total // 2, total // 2, total - total // 2))
            h = F.relu(norm(conv(h)))
        return self.dense(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1))
