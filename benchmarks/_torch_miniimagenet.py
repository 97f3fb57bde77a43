"""The reference Mini-ImageNet network in PyTorch, for side-by-side benchmarks (imports torch)."""

import torch
import torch.nn.functional as F


class MiniImageNetNet(torch.nn.Module):
    """4 × [conv 32×3×3, stride 1, ``same`` → batch norm (ε 1e-3, batch statistics) →
    max-pool 2×2 stride 2, ``same`` (84 → 42 → 21 → 11 → 6) → ReLU] → dense, in NCHW, the
    features flattened in TensorFlow's NHWC order."""

    def __init__(self, num_classes=5, filters=32):
        super().__init__()
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(3 if i == 0 else filters, filters, 3, padding=1) for i in range(4))
        self.norms = torch.nn.ModuleList(
            torch.nn.BatchNorm2d(filters, eps=1e-3, track_running_stats=False)
            for _ in range(4))
        self.dense = torch.nn.Linear(6 * 6 * filters, num_classes)

    def forward(self, x):
        h = x.permute(0, 3, 1, 2)
        for conv, norm in zip(self.convs, self.norms):
            # TensorFlow's "same" pooling pads odd sizes at the end; ceil_mode does the same.
            h = F.relu(F.max_pool2d(norm(conv(h)), 2, 2, ceil_mode=True))
        return self.dense(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1))
