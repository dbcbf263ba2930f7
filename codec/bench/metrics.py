"""Quality metrics and Bjontegaard delta rate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from . import BenchError

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window need more than (11 - 1) * 2**4 pixels
MSE_FLOOR = 1e-10


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all samples, peak 255 (identical images: MSE floored at 1e-10)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(mse, MSE_FLOOR))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two HxWx3 uint8 images (data range 255); None below 161 px on the short side."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch

    try:
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError:
        raise BenchError("pytorch-msssim is not installed; pip install 'ncodec[bench]'") from None
    ta, tb = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].double() for x in (a, b))
    return float(_ms_ssim(ta, tb, data_range=255))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale: -10 log10(1 - MS-SSIM) (inf for a perfect score)."""
    return -10 * math.log10(1 - value) if value < 1 else math.inf


def _curve(points: Sequence[Mapping], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(log rate, quality in dB) of the points where both are finite."""
    log_rate, quality = [], []
    for p in points:
        q = p.get(metric)
        if q is None or p["bpp"] <= 0:
            continue
        q = ms_ssim_db(q) if metric == "ms_ssim" else q
        if math.isfinite(q):
            log_rate.append(math.log(p["bpp"]))
            quality.append(q)
    return np.array(log_rate), np.array(quality)


def bd_rate(anchor: Sequence[Mapping], test: Sequence[Mapping], metric: str = "psnr") -> dict | None:
    """Bjontegaard delta rate of `test` against `anchor`, points being {"bpp", metric} mappings.

    Classic method: a cubic fit of log rate as a function of quality (PSNR, or MS-SSIM in dB)
    per curve, the mean difference over the quality range both curves cover. Returns
    {"value_pct": rate change in %, "overlap_db": [lo, hi]}, or None when either curve has fewer
    than 4 distinct points or the ranges do not overlap.
    """
    (ra, qa), (rt, qt) = _curve(anchor, metric), _curve(test, metric)
    if len(np.unique(qa)) < 4 or len(np.unique(qt)) < 4:
        return None
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if lo >= hi:
        return None
    ia, it = np.polyint(np.polyfit(qa, ra, 3)), np.polyint(np.polyfit(qt, rt, 3))
    area = (np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))
    return {"value_pct": float(np.expm1(area / (hi - lo)) * 100), "overlap_db": [float(lo), float(hi)]}
