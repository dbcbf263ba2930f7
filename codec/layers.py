"""Building blocks of the learned transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """Generalized divisive normalization (encoder side only; never needed to decode)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.abs() + self.eps
        gamma = self.gamma.abs().view(*self.gamma.shape, 1, 1)
        return x * torch.rsqrt(F.conv2d(x * x, gamma, beta))


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2)


class SubpixelUp(nn.Sequential):
    """3x3 conv to 4x channels then pixel shuffle: 2x upsampling that integer arithmetic can mirror."""

    def __init__(self, cin: int, cout: int):
        super().__init__(conv(cin, cout * 4, 3), nn.PixelShuffle(2))


class Residual(nn.Sequential):
    """x + body(x): the skip connection of a residual unit (integer mirror: fixed_point_1d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)
