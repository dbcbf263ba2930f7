"""Learned categorical priors over RVQ codebook indices, one distribution per stage."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .coder import TableSet
from .tables import PRECISION, pmf_to_counts


class CategoricalPrior(nn.Module):
    """Static per-stage distribution over K codewords; bits of index tensors [..., S]."""

    def __init__(self, stages: int, codebook_size: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(stages, codebook_size))

    def bits(self, codes: torch.Tensor) -> torch.Tensor:
        """Ideal code length in bits of each index; codes [..., S] int64."""
        logp = torch.log_softmax(self.logits, -1)
        stage = torch.arange(codes.shape[-1], device=codes.device).expand_as(codes)
        return -logp[stage, codes] / np.log(2)

    @torch.no_grad()
    def fit_counts(self, codes: torch.Tensor, smoothing: float = 0.5) -> None:
        """Set the prior to smoothed empirical frequencies of codes [N, S]."""
        k = self.logits.shape[1]
        hist = torch.stack([torch.bincount(codes[:, s], minlength=k) for s in range(codes.shape[1])])
        self.logits.copy_(torch.log(hist.double() + smoothing).float())

    @torch.no_grad()
    def table_set(self, precision: int = PRECISION) -> TableSet:
        """Integer tables for coding: table s codes stage-s indices 0..K-1."""
        pmf = torch.softmax(self.logits.double(), -1).numpy()
        stages, k = pmf.shape
        counts = pmf_to_counts(np.concatenate([pmf, np.zeros((stages, 1))], 1), precision)
        return TableSet(counts, np.full(stages, k), np.zeros(stages, np.int64))


def stage_index(codes: np.ndarray) -> np.ndarray:
    """Table index (= stage) for every entry of a [N, S] code array, flattened row-major."""
    return np.broadcast_to(np.arange(codes.shape[1]), codes.shape).ravel()
