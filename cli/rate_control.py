"""Encode to a target bits-per-pixel by bisection over the continuous quality."""

from __future__ import annotations

from ncodec.image_codec import QUALITY_STEPS, encode_image
from ncodec.image_weights import load_coding_model
from ncodec.zoo import find


def encode_to_bpp(image, target_bpp: float, model_id: str | None = None,
                  refine: int = 0) -> tuple[bytes, float]:
    """The largest-quality encoding whose size is <= target (or the smallest possible)."""
    if target_bpp <= 0:
        raise ValueError("--bpp must be positive")
    levels = load_coding_model(find(model_id, "image").path).cfg.levels
    pixels = image.width * image.height
    lo, hi = 0, (levels - 1) * QUALITY_STEPS  # quality in 1/256 steps above 1
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        q = 1 + mid / QUALITY_STEPS
        data = encode_image(image, q, model_id, refine=refine)
        if len(data) * 8 / pixels <= target_bpp:
            best, lo = (data, q), mid + 1
        else:
            hi = mid - 1
    return best or (encode_image(image, 1.0, model_id, refine=refine), 1.0)
