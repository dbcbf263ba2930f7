"""ncodec: neural compression codecs with a versioned, bit-exact bitstream.

    data = ncodec.encode("photo.png", quality=5)    # PIL image, numpy array or path
    image = ncodec.decode(data)                     # PIL image, original size and mode
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"
__all__ = ["encode", "decode", "info", "models", "encode_image", "decode_image",
           "rvq_encode", "rvq_decode", "quantize_backends", "ResidualVectorQuantizer"]

_LAZY = {"rvq_encode": "rvq_backends", "rvq_decode": "rvq_backends",
         "quantize_backends": "rvq_backends", "ResidualVectorQuantizer": "rvq"}


def __getattr__(name: str) -> Any:
    """Quantization names load torch only when first used."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ncodec' has no attribute {name!r}")


def _as_image(obj: Any):
    from PIL import Image

    if isinstance(obj, Image.Image):
        return obj
    if isinstance(obj, (str, Path)):
        with Image.open(obj) as im:
            im.load()
            return im
    import numpy as np

    if isinstance(obj, np.ndarray):
        channels = obj.shape[2] if obj.ndim == 3 else 0
        if obj.dtype != np.uint8 or obj.ndim not in (2, 3) or channels not in (0, 1, 3, 4):
            raise ValueError("arrays must be uint8 HxW, HxWx1, HxWx3 or HxWx4")
        return Image.fromarray(obj[..., 0] if channels == 1 else obj)
    raise TypeError(f"cannot encode {type(obj).__name__}: pass a PIL image, a uint8 array or a path")


def encode_image(image: Any, quality: float = 4.0, model: str | None = None, refine: int = 0) -> bytes:
    """Compress an image (PIL image, uint8 array or file path) to .ncz bytes.

    refine: encoder-side latent refinement steps (0 = off; slower, better rate-distortion).
    """
    from .image_codec import encode_image as _encode

    return _encode(_as_image(image), quality, model, refine=refine)


def decode_image(data: bytes | str | Path):
    """Decompress .ncz bytes (or a .ncz path) to a PIL image."""
    from .image_codec import decode_image as _decode

    return _decode(Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data))


def encode(obj: Any, quality: float = 4.0, model: str | None = None, refine: int = 0) -> bytes:
    """Compress media to .ncz bytes (images today; audio and video share the container)."""
    return encode_image(obj, quality, model, refine)


def decode(data: bytes | str | Path):
    """Decompress .ncz bytes or a .ncz path; returns what the file holds (a PIL image)."""
    return decode_image(data)


def info(data: bytes | str | Path) -> dict:
    """Header fields of a .ncz file, without decoding the payload."""
    from .file_info import describe_file

    return describe_file(Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data))


def models() -> list[dict]:
    """Installed models with id, modality, weights hash and card path."""
    from .zoo import installed

    return [m.summary() for m in installed()]
