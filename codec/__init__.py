"""ncodec: neural compression codecs with a versioned, bit-exact bitstream.

    data = ncodec.encode("photo.png", quality=5)    # PIL image, numpy array or path
    image = ncodec.decode(data)                     # PIL image, original size and mode
    data = ncodec.encode("talk.flac", bitrate=6)    # audio path, or samples with sample_rate=
    audio = ncodec.decode(data)                     # Audio(samples [channels, n], sample_rate)
    data = ncodec.encode("clip.mp4", quality=4)     # video path, Video, or frames with frame_rate=
    video = ncodec.decode(data)                     # Video: iterate for RGB frames, .save("out.mkv")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

__version__ = "0.1.0"
__all__ = ["encode", "decode", "info", "models", "encode_image", "decode_image", "encode_audio",
           "decode_audio", "Audio", "encode_video", "decode_video", "Video",
           "rvq_encode", "rvq_decode", "quantize_backends", "ResidualVectorQuantizer"]

_LAZY = {"rvq_encode": "rvq_backends", "rvq_decode": "rvq_backends",
         "quantize_backends": "rvq_backends", "ResidualVectorQuantizer": "rvq", "Video": "video_codec"}


def __getattr__(name: str) -> Any:
    """Quantization names and Video load torch only when first used."""
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


def encode_image(image: Any, quality: float = 4.0, model: str | None = None,
                 refine: int | None = None) -> bytes:
    """Compress an image (PIL image, uint8 array or file path) to .ncz bytes.

    refine: encoder-side latent refinement steps (0 = off, fastest; default 20 up to 4 megapixels,
    0 above): better rate-distortion from the same decoder, ~1 s per step per megapixel.
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
    """Compress audio to .ncz bytes at `bitrate` kbps (1.5, 3, 6, 12 or 24; stereo splits it
    equally between the mid and side streams).

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


VIDEO_MODALITY = 3  # HEAD byte 18 (container.Modality.VIDEO)


def _frames_from(video: Any, start: float | None, frames: int | None, frame_rate):
    """(frame rate, iterator of RGB frames, the VideoReader of a path or None) of a path, a Video,
    or frames with a rate."""
    from itertools import islice

    from .video_codec import Video

    if isinstance(video, (str, Path)):
        from .video_io import VideoReader

        reader = VideoReader(video)
        return reader.info.frame_rate, reader.frames(start or 0.0, frames), reader
    if isinstance(video, Video):
        frame_rate = video.frame_rate
    elif frame_rate is None:
        raise ValueError("frame_rate is required when encoding raw frames")
    skip = round((start or 0) * frame_rate)
    return frame_rate, islice(iter(video), skip, None if frames is None else skip + frames), None


def encode_video(video: Any, quality: float = 4.0, gop: int | None = None, frames: int | None = None,
                 start: float | None = None, frame_rate: Any = None, model: str | None = None,
                 output: str | Path | None = None, audio_bitrate: float | None = 6.0,
                 refine: int | None = None) -> bytes | Path:
    """Compress video to .ncz: bytes, or streamed into `output` (a path, returned).

    video: a file path (.mp4 .mkv .webm .avi .mov .y4m), a Video, or RGB frames (uint8
    [frames, H, W, 3] array or an iterable of (H, W, 3)) with `frame_rate`.
    gop: an intra frame every gop frames (default 32); start (seconds) and frames (count) select a
    range. Memory stays constant: frames are encoded as they are read. A file's audio track is
    coded by the audio codec at `audio_bitrate` kbps into the same file (None: dropped).
    refine: latent refinement steps of intra frames (0: off, faster; default: as for images of the
    frame size).
    """
    import io

    from .video_audio import encode_track
    from .video_codec import DEFAULT_GOP, VideoEncoder
    from .video_io import VideoError

    rate, source, reader = _frames_from(video, start, frames, frame_rate)
    first = next(iter(source), None)
    if first is None:
        raise VideoError("no frames to encode")

    def run(stream) -> None:
        import itertools

        enc = VideoEncoder(stream, first.shape[1], first.shape[0], rate, quality,
                           DEFAULT_GOP if gop is None else gop, model,
                           refine=refine)
        for rgb in itertools.chain([first], source):
            enc.write(rgb)
        if reader is not None and reader.info.has_audio and audio_bitrate is not None:
            enc.add_audio(encode_track(reader, start or 0.0, enc.frames, rate, audio_bitrate))
        enc.close()

    if output is None:
        buf = io.BytesIO()
        run(buf)
        return buf.getvalue()
    from .atomic import atomic_output

    with atomic_output(output) as tmp, open(tmp, "w+b") as stream:
        run(stream)
    return Path(output)


def decode_video(data: bytes | str | Path, start: float | None = None, frames: int | None = None):
    """A Video of a .ncz file (bytes, or a path read as frames decode); start (seconds) and frames
    (count) select a range, decoded from the intra frame at or before start."""
    from .video_codec import Video, VideoDecoder

    dec = VideoDecoder(Path(data) if isinstance(data, (str, Path)) else bytes(data))
    return Video(dec, dec.frame_at(start) if start else 0, frames)


def _bytes(data: bytes | str | Path) -> bytes:
    return Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)


def _modality_byte(data: bytes | str | Path) -> int | None:
    if isinstance(data, (str, Path)):
        with open(data, "rb") as f:
            data = f.read(19)
    return data[18] if len(data) > 18 else None


def _is_audio(obj: Any, sample_rate: int | None) -> bool:
    return isinstance(obj, Audio) or sample_rate is not None or (
        isinstance(obj, (str, Path)) and Path(obj).suffix.lower() in AUDIO_SUFFIXES)


def _is_video(obj: Any, frame_rate: Any) -> bool:
    if frame_rate is not None:
        return True
    if isinstance(obj, (str, Path)):
        from .video_io import VIDEO_SUFFIXES

        return Path(obj).suffix.lower() in VIDEO_SUFFIXES
    return type(obj).__name__ == "Video" and type(obj).__module__ == "ncodec.video_codec"


def encode(obj: Any, quality: float | None = None, model: str | None = None, refine: int | None = None,
           bitrate: float | None = None, sample_rate: int | None = None, gop: int | None = None,
           frames: int | None = None, start: float | None = None, frame_rate: Any = None) -> bytes:
    """Compress media to .ncz bytes.

    Images (PIL image, uint8 array, image path): `quality` 1..8 (default 4), `refine` (latent
    refinement steps; default 20 up to 4 megapixels, 0 above).
    Audio (audio path, Audio, or samples with `sample_rate`): `bitrate` kbps (default 6).
    Video (video path, Video, or frames with `frame_rate`): `quality`, `gop`, `frames`, `start`,
    `refine` (intra frames, as for images).
    """
    video_options = {"gop": gop, "frames": frames, "start": start}
    if _is_video(obj, frame_rate):
        if bitrate is not None or sample_rate is not None:
            raise ValueError("bitrate and sample_rate do not apply to video")
        return encode_video(obj, 4.0 if quality is None else quality, gop, frames, start, frame_rate, model,
                            refine=refine)
    given = [k for k, v in video_options.items() if v is not None]
    if given:
        raise ValueError(f"{given[0]} applies to video only")
    if _is_audio(obj, sample_rate):
        if quality is not None or refine is not None:
            raise ValueError("quality and refine apply to images and video; use bitrate for audio")
        return encode_audio(obj, 6.0 if bitrate is None else bitrate, sample_rate, model)
    if bitrate is not None:
        raise ValueError("bitrate applies to audio; use quality for images")
    return encode_image(obj, 4.0 if quality is None else quality, model, refine)


def decode(data: bytes | str | Path):
    """Decompress .ncz bytes or a path: a PIL image for image files, an Audio for audio files, a
    Video (frames decoded as you iterate) for video files."""
    modality = _modality_byte(data)
    if modality == VIDEO_MODALITY:
        return decode_video(data)
    data = _bytes(data)
    return decode_audio(data) if modality == AUDIO_MODALITY else decode_image(data)


def info(data: bytes | str | Path) -> dict:
    """Header fields of a .ncz file, without decoding the payload."""
    from .file_info import describe_file

    return describe_file(_bytes(data))


def models() -> list[dict]:
    """Installed models with id, modality, weights hash and card path."""
    from .zoo import installed

    return [m.summary() for m in installed()]
