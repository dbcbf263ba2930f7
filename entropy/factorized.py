"""Per-channel non-parametric factorized density (Balle et al. 2018) for hyper-latents."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tables import pmf_to_counts


class FactorizedDensity(nn.Module):
    """A learned monotone CDF per channel; gives likelihoods of integer-rounded values."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = float(np.log(np.expm1(1 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """x: [C, 1, N] -> logits of the CDF, [C, 1, N]."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit bin around each value of z [B, C, H, W]."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3).clamp_min(1e-9)

    @torch.no_grad()
    def integer_tables(self, radius: int, precision: int) -> np.ndarray:
        """Integer counts [C, 2*radius+2] over symbols -radius..radius plus one escape bin."""
        c = self.matrices[0].shape[0]
        v = torch.arange(-radius, radius + 1, dtype=torch.float32)
        v = v.view(1, 1, -1).expand(c, 1, -1)
        lower = torch.sigmoid(self._logits_cdf(v - 0.5))
        upper = torch.sigmoid(self._logits_cdf(v + 0.5))
        pmf = (upper - lower).squeeze(1).double()
        tail = (1 - pmf.sum(1, keepdim=True)).clamp_min(0)
        return pmf_to_counts(torch.cat([pmf, tail], 1).numpy(), precision)
