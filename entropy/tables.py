"""Integer probability tables shared by every entropy model."""

from __future__ import annotations

import numpy as np

PRECISION = 20


def pmf_to_counts(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Quantize rows of probabilities to integer counts >= 1 that sum to 2**precision.

    Done once when a model is exported; coders only ever see the resulting integers.
    """
    pmf = np.clip(np.asarray(pmf, dtype=np.float64), 0, None)
    total = 1 << precision
    n = pmf.shape[1]
    if n > total // 2:
        raise ValueError(f"alphabet of {n} symbols too large for {precision}-bit tables")
    pmf = pmf / np.maximum(pmf.sum(1, keepdims=True), 1e-300)
    counts = np.maximum(np.floor(pmf * (total - n)).astype(np.int64), 0) + 1
    deficit = total - counts.sum(1)
    rows = np.arange(len(counts))
    counts[rows, pmf.argmax(1)] += deficit
    return counts
