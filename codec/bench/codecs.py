"""Image codecs under test: name -> encode/decode functions, and their default setting sweeps.

Every codec runs in-process. JPEG and WebP go through Pillow (4:2:0, Pillow defaults; WebP method
6), AVIF through libavif (imagecodecs; 4:4:4, speed 6) and JPEG XL through libjxl (imagecodecs;
effort 7), each with one thread. `compressai:ARCH[@CHECKPOINTS]` is a CompressAI model, pretrained or
the user's (ncodec.bench.compressai_codec), imported only in the worker that runs it. `ncodec:MODEL`
is the installed ncodec image model MODEL (plain `ncodec`: the --model one, else the default), so
one run can compare several ncodec models. Without a suffix ncodec encodes as `ncodec encode`
does (its default latent refinement); a `+refineN` suffix (`ncodec+refine0` for the fast encoder,
`ncodec:MODEL+refine10`) sets the refinement steps.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec

import numpy as np
from PIL import Image

from . import BenchError, compressai_codec

Setting = int | float

SETTINGS: dict[str, list[Setting]] = {
    "ncodec": [1, 2, 3, 4, 5, 6, 7, 8],
    "jpeg": [3, 6, 10, 20, 30, 50, 70, 85, 95],
    "webp": [0, 2, 5, 15, 30, 50, 70, 85, 95],
    "avif": [2, 8, 20, 35, 50, 65, 80, 90],
    "jxl": [25.0, 18.0, 12.0, 8.0, 5.0, 3.0, 2.0, 1.2, 0.7],
}
NCODEC_PREFIX = "ncodec:"
REFINE_SUFFIX = "+refine"
IMAGECODECS_MISSING = "imagecodecs is not installed (needed for avif and jxl); pip install 'ncodec[bench]'"


@dataclass(frozen=True)
class Codec:
    encode: Callable[[np.ndarray, Setting], bytes]  # HxWx3 uint8 RGB, setting -> bytes
    decode: Callable[[bytes], np.ndarray]  # bytes -> HxWx3 uint8 RGB


def check_codec(name: str) -> None:
    """Raise BenchError unless `name` is a codec this machine can run (imports nothing heavy)."""
    if name.startswith(compressai_codec.PREFIX):
        compressai_codec.settings(name)  # a well-formed name, checkpoints present
        if find_spec("compressai") is None:
            raise BenchError(compressai_codec.MISSING)
        return
    if is_ncodec(name):
        from ncodec.zoo import ModelNotFound, find

        model, _ = ncodec_options(name)
        try:
            if model:
                find(model, "image")
        except ModelNotFound as err:
            raise BenchError(str(err)) from None
        return
    if name not in SETTINGS:
        known = ", ".join([*SETTINGS, "ncodec:MODEL", "compressai:ARCH[@CHECKPOINTS]"])
        raise BenchError(f"unknown codec {name!r} (known: {known})")
    if name in ("avif", "jxl") and find_spec("imagecodecs") is None:
        raise BenchError(IMAGECODECS_MISSING)


def is_ncodec(name: str) -> bool:
    return name.partition(REFINE_SUFFIX)[0] == "ncodec" or name.startswith(NCODEC_PREFIX)


def ncodec_options(name: str) -> tuple[str | None, int | None]:
    """'ncodec:MODEL+refineN' -> (MODEL, N); the model is None for plain `ncodec`, N None (the
    encoder's default) without a suffix."""
    base, sep, steps = name.partition(REFINE_SUFFIX)
    refine = int(steps) if steps.isdigit() else -1
    if sep and not 0 <= refine <= 1000:
        raise BenchError(f"{name!r}: refine steps must be a whole number within 0..1000")
    model = base[len(NCODEC_PREFIX):] if base.startswith(NCODEC_PREFIX) else None
    if base != "ncodec" and not model:
        raise BenchError(f"{name!r} is not ncodec[:MODEL][{REFINE_SUFFIX}N]")
    return model, refine if sep else None


def default_settings(name: str) -> list[Setting]:
    if name.startswith(compressai_codec.PREFIX):
        return compressai_codec.settings(name)
    return SETTINGS["ncodec" if is_ncodec(name) else name]


def parse_setting(text: str) -> Setting:
    """'50' -> 50, '1.5' -> 1.5."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_settings(spec: str, flag: str = "--settings") -> tuple[str, list[Setting]]:
    """'jpeg=20,50,80' -> ('jpeg', [20, 50, 80]); `flag` names the option in the error message."""
    name, sep, values = spec.partition("=")
    try:
        settings = [parse_setting(v) for v in values.split(",")]
    except ValueError:
        settings = []
    if not sep or not name or not settings:
        example = "opus=6,12,24" if flag == "--bitrates" else "jpeg=20,50,80"
        raise BenchError(f"{flag} wants CODEC=VALUE,VALUE,... (e.g. {example}), got {spec!r}")
    return name, settings


def _pillow(fmt: str, **options) -> Codec:
    def encode(rgb: np.ndarray, quality: Setting) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, quality=int(quality), **options)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    return Codec(encode, decode)


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        raise BenchError(IMAGECODECS_MISSING) from None
    return imagecodecs


def _ncodec(model: str | None, refine: int | None) -> Codec:
    from ncodec.image_codec import decode_image, encode_image

    return Codec(lambda rgb, q: encode_image(Image.fromarray(rgb), float(q), model, refine=refine),
                 lambda data: np.asarray(decode_image(data).convert("RGB")))


@cache
def get_codec(name: str, model: str | None = None) -> Codec:
    """The codec called `name`; `model` is the ncodec model id (None: the default model)."""
    if is_ncodec(name):
        named, refine = ncodec_options(name)
        return _ncodec(named or model, refine)
    if name == "jpeg":
        return _pillow("JPEG")
    if name == "webp":
        return _pillow("WEBP", method=6)
    if name == "avif":
        ic = _imagecodecs()
        yuv444 = ic.AVIF.PIXEL_FORMAT.YUV444
        return Codec(lambda rgb, q: ic.avif_encode(rgb, level=int(q), speed=6, pixelformat=yuv444,
                                                   numthreads=1),
                     lambda data: ic.avif_decode(data, numthreads=1))
    if name == "jxl":
        ic = _imagecodecs()
        return Codec(lambda rgb, d: ic.jpegxl_encode(rgb, distance=float(d), effort=7, numthreads=1),
                     lambda data: ic.jpegxl_decode(data, numthreads=1))
    if name.startswith(compressai_codec.PREFIX):
        return compressai_codec.compressai_codec(name)
    raise BenchError(f"unknown codec {name!r}")
