"""Gaussian conditional entropy model: training likelihood and the discrete scale table."""

from __future__ import annotations

import math

import numpy as np
import torch

from .tables import pmf_to_counts

SCALE_MIN = 0.11
SCALE_MAX = 128.0
NUM_SCALES = 64


def gaussian_likelihood(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of the unit bin around y (already mean-removed) under N(0, scale^2)."""
    scale = scale.clamp_min(SCALE_MIN)
    upper = torch.special.ndtr((0.5 - y.abs()) / scale)
    lower = torch.special.ndtr((-0.5 - y.abs()) / scale)
    return (upper - lower).clamp_min(1e-9)


def scale_table() -> np.ndarray:
    """Log-spaced standard deviations, one integer CDF table each."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), NUM_SCALES))


def scale_thresholds(table: np.ndarray, frac_bits: int) -> np.ndarray:
    """Fixed-point boundaries between neighbouring scales (geometric midpoints).

    A fixed-point scale s selects index = number of thresholds <= s.
    """
    mids = np.sqrt(table[:-1] * table[1:])
    return np.ceil(mids * (1 << frac_bits)).astype(np.int64)


def gaussian_tables(table: np.ndarray, precision: int, tail_sigmas: float = 6.0):
    """Integer counts for each scale over -r..r plus an escape bin; also the radii r."""
    radii = np.maximum(np.ceil(table * tail_sigmas).astype(np.int64), 1)
    width = int(2 * radii.max() + 2)
    counts = np.zeros((len(table), width), dtype=np.int64)
    for i, (s, r) in enumerate(zip(table, radii, strict=True)):
        v = torch.arange(-r, r + 1, dtype=torch.float64)
        pmf = torch.special.ndtr((v + 0.5) / s) - torch.special.ndtr((v - 0.5) / s)
        tail = max(0.0, 1.0 - float(pmf.sum()))
        counts[i, : 2 * r + 2] = pmf_to_counts(np.append(pmf.numpy(), tail)[None], precision)[0]
    return counts, radii
