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


LOWER_IS_BETTER = {"mel"}  # distances: fitted as -distance, so that quality rises with rate
DB_SCALE = {"psnr", "psnr_rgb", "psnr_yuv", "ms_ssim", "si_sdr"}  # fitted in dB (MS-SSIM converted)


def _quality(metric: str, value: float) -> float:
    """A metric value on the scale BD-rate fits it on: MS-SSIM in dB, distances negated."""
    if metric == "ms_ssim":
        return ms_ssim_db(value)
    return -value if metric in LOWER_IS_BETTER else value


def _curve(points: Sequence[Mapping], metric: str, rate: str) -> tuple[np.ndarray, np.ndarray]:
    """(log rate, fitted quality) of the points where both are finite."""
    log_rate, quality = [], []
    for p in points:
        q = p.get(metric)
        if q is None or p[rate] <= 0:
            continue
        q = _quality(metric, q)
        if math.isfinite(q):
            log_rate.append(math.log(p[rate]))
            quality.append(q)
    return np.array(log_rate), np.array(quality)


def bd_rate(anchor: Sequence[Mapping], test: Sequence[Mapping], metric: str = "psnr",
            rate: str = "bpp") -> dict | None:
    """Bjontegaard delta rate of `test` against `anchor`, points being {rate, metric} mappings
    (rate "bpp" for images, "kbps" for audio).

    Classic method: a cubic fit of log rate as a function of quality (PSNR, MS-SSIM in dB, SI-SDR,
    PESQ, or minus the mel distance) per curve, the mean difference over the quality range both
    curves cover. Returns {"value_pct": rate change in %, "overlap_db": [lo, hi]} for metrics on a
    dB scale (psnr, ms_ssim, si_sdr) and {"value_pct", "overlap": [lo, hi]} in the metric's own
    units otherwise (mel: the distances both curves reach), or None when either curve has fewer
    than 4 distinct points or the ranges do not overlap.
    """
    (ra, qa), (rt, qt) = _curve(anchor, metric, rate), _curve(test, metric, rate)
    if len(np.unique(qa)) < 4 or len(np.unique(qt)) < 4:
        return None
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if lo >= hi:
        return None
    ia, it = np.polyint(np.polyfit(qa, ra, 3)), np.polyint(np.polyfit(qt, rt, 3))
    area = (np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))
    value = float(np.expm1(area / (hi - lo)) * 100)
    if metric in DB_SCALE:
        return {"value_pct": value, "overlap_db": [float(lo), float(hi)]}
    ends = sorted([-lo, -hi]) if metric in LOWER_IS_BETTER else [lo, hi]
    return {"value_pct": value, "overlap": [float(ends[0]), float(ends[1])]}


# Video: PSNR-RGB per frame is psnr() above. PSNR-YUV is measured on Y'CbCr computed from the RGB
# frames with the BT.709 matrix, full range, in float64 (no rounding, no chroma subsampling):
#     Y = 0.2126 R + 0.7152 G + 0.0722 B,  U = Cb = 128 + (B - Y) / 1.8556,  V = Cr = 128 + (R - Y) / 1.5748
# each plane's PSNR with peak 255 (MSE floored as above), and PSNR-YUV = (6 PSNR-Y + PSNR-U + PSNR-V) / 8
# (the JVET / DCVC weighting of per-plane PSNRs). Because the planes come from RGB at full chroma
# resolution, values are not those of tools that read a codec's own 4:2:0 planes.
BT709_LUMA = (0.2126, 0.7152, 0.0722)
YUV_WEIGHTS = (6, 1, 1)


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (3, H, W) float64 Y, Cb, Cr by BT.709, full range (see above)."""
    kr, kg, kb = BT709_LUMA
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = kr * r + kg * g + kb * b
    return np.stack([y, 128 + (b - y) / (2 * (1 - kb)), 128 + (r - y) / (2 * (1 - kr))])


def psnr_yuv(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """{"psnr_yuv", "psnr_y", "psnr_u", "psnr_v"} of two (H, W, 3) RGB frames (see above)."""
    planes = [10 * math.log10(255**2 / max(float(np.mean((pa - pb) ** 2)), MSE_FLOOR))
              for pa, pb in zip(rgb_to_yuv(a), rgb_to_yuv(b), strict=True)]
    combined = sum(w * p for w, p in zip(YUV_WEIGHTS, planes, strict=True)) / sum(YUV_WEIGHTS)
    return {"psnr_yuv": combined, "psnr_y": planes[0], "psnr_u": planes[1], "psnr_v": planes[2]}
