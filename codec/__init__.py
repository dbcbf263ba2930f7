"""ncodec: neural compression codecs with a versioned, bit-exact bitstream.

    data = ncodec.encode("photo.png", quality=5)    # PIL image, numpy array or path
    image = ncodec.decode(data)                     # PIL image, original size and mode
    data = ncodec.encode("talk.flac", bitrate=6)    # audio path, or samples with sample_rate=
    audio = ncodec.decode(data)                     # Audio(samples [channels, n], sample_rate)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

__version__ = "0.1.0"
__all__ = ["encode", "decode", "info", "models", "encode_image", "decode_image", "encode_audio",
           "decode_audio", "Audio",
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


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
AUDIO_MODALITY = 2  # HEAD byte 18 (container.Modality.AUDIO), read without importing torch


class Audio(NamedTuple):
    """Decoded audio: float32 samples [channels, n] in [-1, 1] and their sample rate in Hz."""

    samples: Any
    sample_rate: int


def _read_audio(path: str | Path) -> Audio:
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return Audio(samples.T, rate)


def encode_audio(audio: Any, bitrate: float = 6.0, sample_rate: int | None = None,
                 model: str | None = None) -> bytes:
    """Compress audio to .ncz bytes at `bitrate` kbps per channel (1.5, 3, 6, 12 or 24).

    audio: a file path (WAV, FLAC, OGG, MP3), an Audio, or float samples [channels, n] / [n]
    with `sample_rate` (8-48 kHz; resampled to the model rate and back on decode).
    """
    from .audio_codec import encode_audio as _encode

    if isinstance(audio, (str, Path)):
        audio = _read_audio(audio)
    if isinstance(audio, Audio):
        audio, sample_rate = audio
    if sample_rate is None:
        raise ValueError("sample_rate is required when encoding raw samples")
    return _encode(audio, int(sample_rate), bitrate, model)


def decode_audio(data: bytes | str | Path, start: float | None = None,
                 duration: float | None = None) -> Audio:
    """Decompress .ncz audio (bytes or path); start/duration (seconds) decode only that range."""
    from .audio_codec import decode_audio as _decode

    return Audio(*_decode(_bytes(data), start, duration))


def _bytes(data: bytes | str | Path) -> bytes:
    return Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)


def _is_audio(obj: Any, sample_rate: int | None) -> bool:
    return isinstance(obj, Audio) or sample_rate is not None or (
        isinstance(obj, (str, Path)) and Path(obj).suffix.lower() in AUDIO_SUFFIXES)


def encode(obj: Any, quality: float | None = None, model: str | None = None, refine: int = 0,
           bitrate: float | None = None, sample_rate: int | None = None) -> bytes:
    """Compress media to .ncz bytes.

    Images (PIL image, uint8 array, image path): `quality` 1..8 (default 4), `refine`.
    Audio (audio path, Audio, or samples with `sample_rate`): `bitrate` kbps (default 6).
    """
    if _is_audio(obj, sample_rate):
        if quality is not None or refine:
            raise ValueError("quality and refine apply to images; use bitrate for audio")
        return encode_audio(obj, 6.0 if bitrate is None else bitrate, sample_rate, model)
    if bitrate is not None:
        raise ValueError("bitrate applies to audio; use quality for images")
    return encode_image(obj, 4.0 if quality is None else quality, model, refine)


def decode(data: bytes | str | Path):
    """Decompress .ncz bytes or a path: a PIL image for image files, an Audio for audio files."""
    data = _bytes(data)
    return decode_audio(data) if len(data) > 18 and data[18] == AUDIO_MODALITY else decode_image(data)


def info(data: bytes | str | Path) -> dict:
    """Header fields of a .ncz file, without decoding the payload."""
    from .file_info import describe_file

    return describe_file(_bytes(data))


def models() -> list[dict]:
    """Installed models with id, modality, weights hash and card path."""
    from .zoo import installed

    return [m.summary() for m in installed()]
