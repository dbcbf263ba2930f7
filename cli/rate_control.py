"""Encode to a target bits-per-pixel by bisection over the continuous quality."""

from __future__ import annotations

from ncodec.image_codec import QUALITY_STEPS, encode_image
from ncodec.image_weights import load_coding_model
from ncodec.zoo import find


def encode_to_bpp(image, target_bpp: float, model_id: str | None = None,
                  refine: int | None = None) -> tuple[bytes, float]:
    """The largest-quality encoding whose size is <= target (or the smallest possible).

    The search runs without refinement (one refined encode costs tens of plain ones); the found
    quality is then encoded with `refine` (encode_image's default when None), kept when it is
    within the target too (or, where nothing is, no larger).
    """
    if target_bpp <= 0:
        raise ValueError("--bpp must be positive")
    levels = load_coding_model(find(model_id, "image").path).cfg.levels
    pixels = image.width * image.height
    lo, hi = 0, (levels - 1) * QUALITY_STEPS  # quality in 1/256 steps above 1
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        q = 1 + mid / QUALITY_STEPS
        data = encode_image(image, q, model_id, refine=0)
        if len(data) * 8 / pixels <= target_bpp:
            best, lo = (data, q), mid + 1
        else:
            hi = mid - 1
    data, q = best or (encode_image(image, 1.0, model_id, refine=0), 1.0)
    refined = encode_image(image, q, model_id, refine=refine)
    fits = len(refined) * 8 / pixels <= target_bpp or len(refined) <= len(data)
    return (refined if fits else data), q
