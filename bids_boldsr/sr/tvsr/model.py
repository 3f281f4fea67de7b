"""Network and regulariser: a residual 3-D CNN and the isotropic total variation."""
from __future__ import annotations

import torch
from torch import nn


def total_variation(y: torch.Tensor, eps: float = 1e-6, reduction: str = "sum") -> torch.Tensor:
    """Isotropic 3-D TV of ``(..., X, Y, Z)``: sum over voxels of sqrt(dx^2 + dy^2 + dz^2 + eps).

    Forward differences, evaluated on the voxels that have all three forward neighbours (a
    squared-difference "TV" would be plain smoothing; the square root makes it edge-preserving).
    """
    core = y[..., :-1, :-1, :-1]
    dx = y[..., 1:, :-1, :-1] - core
    dy = y[..., :-1, 1:, :-1] - core
    dz = y[..., :-1, :-1, 1:] - core
    tv = torch.sqrt(dx * dx + dy * dy + dz * dz + eps)
    return tv.sum() if reduction == "sum" else tv.mean()


# the learned prior's architecture (train_prior.py trains it, the "prior" tvsr variant loads it)
PRIOR_NET = dict(features=16, layers=10, padding_mode="replicate", leaky=0.1)


class ResidualCNN(nn.Module):
    """``layers`` 3x3x3 convolutions with (leaky) ReLU between them, predicting a residual added to
    channel 0 of the input (the interpolated volume itself; further channels are context)."""

    def __init__(self, in_channels: int = 1, features: int = 16, layers: int = 10,
                 padding_mode: str = "zeros", zero_init: bool = True, leaky: float = 0.0):
        super().__init__()
        chans = [in_channels] + [features] * (layers - 1) + [1]
        blocks = []
        for i in range(layers):
            blocks.append(nn.Conv3d(chans[i], chans[i + 1], 3, padding=1, padding_mode=padding_mode))
            if i < layers - 1:  # a leaky slope keeps units from dying (seen as a frozen identity net)
                blocks.append(nn.LeakyReLU(leaky, inplace=True) if leaky else nn.ReLU(inplace=True))
        self.body = nn.Sequential(*blocks)
        self.layers = layers
        for conv in self.body[:-1:2]:  # He init: PyTorch's default shrinks the signal ~3x per layer
            nn.init.kaiming_normal_(conv.weight, a=leaky, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        if zero_init:  # start as the identity, i.e. the interpolation itself
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    @property
    def receptive_radius(self) -> int:
        return self.layers  # each 3x3x3 convolution reaches one voxel further

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.body(x)
