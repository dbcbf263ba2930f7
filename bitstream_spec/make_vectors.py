"""Regenerate the golden test vectors for the installed default image model.

    python bitstream_spec/make_vectors.py

Writes vectors/<name>.ncz and vectors/<name>.sha256 (SHA-256 of the decoded image's mode,
size and raw bytes, see `decoded_digest`). Vectors are frozen once a model ships: a changed
decoder that alters any digest is a bitstream break, not a test to update.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent / "vectors"


def decoded_digest(image: Image.Image) -> str:
    h = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def sources() -> dict[str, tuple[Image.Image, float]]:
    """Small deterministic inputs covering modes, odd sizes and the quality range."""
    y, x = np.mgrid[0:45, 0:67]
    rgb = np.stack([(x * 255 // 66), (y * 255 // 44), ((x + y) * 3 % 256)], -1).astype(np.uint8)
    rgba = np.concatenate([rgb, (x * y % 256)[..., None].astype(np.uint8)], -1)
    return {
        "rgb_67x45_q1": (Image.fromarray(rgb), 1.0),
        "rgb_67x45_q8": (Image.fromarray(rgb), 8.0),
        "gray_67x45_q4": (Image.fromarray(rgb).convert("L"), 4.0),
        "rgba_67x45_q5.5": (Image.fromarray(rgba), 5.5),
        "rgb_1x1_q3": (Image.new("RGB", (1, 1), (200, 30, 90)), 3.0),
    }


def main() -> None:
    from ncodec.image_codec import decode_image, encode_image

    HERE.mkdir(exist_ok=True)
    for name, (image, quality) in sources().items():
        data = encode_image(image, quality)
        (HERE / f"{name}.ncz").write_bytes(data)
        (HERE / f"{name}.sha256").write_text(decoded_digest(decode_image(data)) + "\n")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
