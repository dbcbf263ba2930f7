"""Video codecs under test: the classical anchors through PyAV (FFmpeg), and ncodec's place.

Each anchor takes the clip's RGB frames one at a time, converts them to yuv420p by the BT.709 matrix
(limited range, swscale with the flags of ncodec.video_io), encodes them in memory, decodes the
packets as they come and converts back to RGB the same way; nothing touches the disk. Bytes are
the elementary stream as the encoder writes it (parameter sets / sequence header included, no
container). Settings are the encoders' constant-quality knob: CRF.

- x264: libx264, preset medium, CRF (0..51); decoded by FFmpeg's h264.
- x265: libx265, preset medium, CRF (0..51); decoded by FFmpeg's hevc.
- svtav1: SVT-AV1 (libsvtav1), preset 8, CRF (1..63); decoded by libdav1d.

Frames are padded (edge pixels repeated) to even sizes for 4:2:0, and x265 and SVT-AV1 frames to
at least 64x64: libx265 corrupts its heap on inputs narrower than 64 pixels. The padding is
cropped after decoding; its bits are counted, and bpp uses the clip's own size.

- ncodec: the learned video codec (ncodec.video_codec) with an installed video model; setting: the
  quality (1..the model's levels), GOP 32. RGB frames are coded as they are (no YUV conversion);
  each frame chunk is decoded as soon as it is written, by the same per-frame decoder a file decode
  uses. Bytes: the whole .ncz file (HEAD, frame chunks, seek index, TAIL). Without a video model it
  is listed with the reason it cannot run (unavailable()), never silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import BenchError
from .codecs import Setting

SETTINGS: dict[str, list[Setting]] = {
    "x264": [18, 22, 26, 30, 34, 38],
    "x265": [18, 22, 26, 30, 34, 38],
    "svtav1": [20, 27, 34, 41, 48, 55],
    "ncodec": [1, 2, 3, 4, 5, 6, 7, 8],
}
SETTING_RANGE = {"x264": (0, 51), "x265": (0, 51), "svtav1": (1, 63), "ncodec": (1, 255)}
ENCODERS = {"x264": "libx264", "x265": "libx265", "svtav1": "libsvtav1"}
DECODERS = {"x264": "h264", "x265": "hevc", "svtav1": "libdav1d"}
PRESETS = {"x264": "medium", "x265": "medium", "svtav1": "8"}
MIN_SIDE = {"x264": 2, "x265": 64, "svtav1": 64}
MATRIX = "ITU709"
PIX_FMT = "yuv420p"
DESCRIPTIONS = {
    "x264": "libx264 preset medium, CRF, yuv420p BT.709 limited range; H.264 elementary stream",
    "x265": "libx265 preset medium, CRF, yuv420p BT.709 limited range; HEVC elementary stream",
    "svtav1": "SVT-AV1 (libsvtav1) preset 8, CRF, yuv420p BT.709 limited range; AV1 OBU stream, "
              "decoded by libdav1d",
    "ncodec": "ncodec learned video codec (intra frames as images; inter frames with the temporal prior and "
              "skipped blocks; the default refinement of both), quality, GOP 32, RGB; the whole .ncz file",
}


def check_video_codec(name: str) -> None:
    if name not in SETTINGS:
        raise BenchError(f"unknown video codec {name!r} (known: {', '.join(SETTINGS)})")


def check_settings(name: str, settings: list[Setting]) -> None:
    lo, hi = SETTING_RANGE.get(name, (None, None))
    bad = [s for s in settings if lo is not None and not lo <= s <= hi]
    if bad:
        what = "quality" if name == "ncodec" else "CRF"
        raise BenchError(f"{name} {what} must be {lo}..{hi}, got {bad[0]:g}")


def ncodec_model(model: str | None) -> tuple[dict, int]:
    """({id, sha256}, quality levels) of the video model ncodec would use, as `ncodec encode` picks
    it; BenchError (one line: why) when none is installed."""
    from ncodec.video_codec import _model_info
    from ncodec.video_io import VideoError
    from ncodec.video_model import VideoModelConfig
    from ncodec.zoo import ModelNotFound

    try:
        info = _model_info(model)
    except (VideoError, ModelNotFound) as err:
        raise BenchError(str(err)) from None
    return {"id": info.model_id, "sha256": info.sha256}, VideoModelConfig.from_dict(info.config).levels


def unavailable(name: str, model: str | None = None) -> str | None:
    """Why codec `name` cannot run on this machine (one line), or None when it can."""
    if name == "ncodec":
        try:
            ncodec_model(model)
        except BenchError as err:
            return str(err)
        return None
    import av

    for kind, lib, mode in (("encoder", ENCODERS[name], "w"), ("decoder", DECODERS[name], "r")):
        try:
            av.codec.Codec(lib, mode)
        except (av.codec.codec.UnknownCodecError, ValueError):
            return f"the FFmpeg inside PyAV {av.__version__} has no {lib} {kind}"
    return None


def encoder_options(name: str, setting: Setting, threads: int) -> dict[str, str]:
    options = {"crf": f"{setting:g}", "preset": PRESETS[name]}
    if name == "x264":
        options["threads"] = str(threads)
    elif name == "x265":
        pools = "none" if threads == 1 else str(threads)
        options["x265-params"] = f"log-level=error:pools={pools}:frame-threads={threads}"
    elif name == "svtav1":
        options["svtav1-params"] = f"lp={threads}"
    return options


def _padded(width: int, height: int, name: str) -> tuple[int, int]:
    side = MIN_SIDE[name]
    return max(width + width % 2, side), max(height + height % 2, side)


@dataclass
class Coded:
    """What one clip through a codec took: bytes out, frames back, seconds spent."""

    bytes: int = 0
    frames: int = 0
    enc_s: float = 0.0
    dec_s: float = 0.0


class NcodecSession:
    """ncodec's video codec for one clip at one quality, with AnchorSession's interface: each frame
    is encoded into an in-memory .ncz and its chunk decoded at once (bounded memory)."""

    def __init__(self, width: int, height: int, rate: Fraction, setting: Setting, threads: int = 1,
                 model: str | None = None, gop: int | None = None):
        import io

        import torch
        from ncodec.video_codec import DEFAULT_GOP, FrameCoder, VideoEncoder

        torch.set_num_threads(threads)
        self.name, self.width, self.height = "ncodec", width, height
        self.encoder = VideoEncoder(io.BytesIO(), width, height, rate, float(setting), gop or DEFAULT_GOP,
                                    model)
        self.decoder = FrameCoder(self.encoder.model, self.encoder.params)
        self.result = Coded()

    def feed(self, rgb: np.ndarray | None, clock: Callable[[], float]) -> Iterator[np.ndarray]:
        """Encode one RGB frame and decode it back (None: finish the file, count its bytes)."""
        if rgb is None:
            t0 = clock()
            self.result.bytes = self.encoder.close()
            self.result.enc_s += clock() - t0
            return
        t = self.encoder.frames
        t0 = clock()
        chunk = self.encoder.write(rgb)
        self.result.enc_s += clock() - t0
        t0 = clock()
        out = self.decoder.decode(chunk.type, chunk.data, t)
        self.result.dec_s += clock() - t0
        self.result.frames += 1
        yield out


def session(name: str, width: int, height: int, rate: Fraction, setting: Setting, threads: int = 1,
            model: str | None = None, gop: int | None = None) -> AnchorSession | NcodecSession:
    """The encode/decode session of codec `name` for one clip at one setting; `gop`: the intra period
    (None: the codec's default, ncodec's DEFAULT_GOP, x264's and x265's 250, SVT-AV1's own)."""
    if name == "ncodec":
        return NcodecSession(width, height, rate, setting, threads, model, gop)
    return AnchorSession(name, width, height, rate, setting, threads, gop)


class AnchorSession:
    """One encoder and one decoder for one clip at one setting, fed frame by frame (bounded memory:
    only frames inside the encoder's lookahead are held)."""

    def __init__(self, name: str, width: int, height: int, rate: Fraction, setting: Setting,
                 threads: int = 1, gop: int | None = None):
        import av
        from av.video.reformatter import VideoReformatter
        from ncodec.video_io import sws_interpolation

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (read when the encoder starts)
        self.name, self.width, self.height = name, width, height
        self.coded_width, self.coded_height = _padded(width, height, name)
        enc = av.CodecContext.create(ENCODERS[name], "w")
        enc.width, enc.height, enc.pix_fmt = self.coded_width, self.coded_height, PIX_FMT
        enc.time_base, enc.framerate = 1 / rate, rate
        enc.colorspace, enc.color_range = 1, 1  # BT.709, limited: tagged as converted
        enc.thread_count = threads
        if gop is not None:
            enc.gop_size = gop  # (the keyframe interval: x264's and x265's keyint, SVT-AV1's intra period)
        enc.options = encoder_options(name, setting, threads)
        dec = av.CodecContext.create(DECODERS[name], "r")
        dec.thread_count = threads
        self.enc, self.dec, self.pts = enc, dec, 0
        self.to_yuv, self.to_rgb = VideoReformatter(), VideoReformatter()
        self.interpolation = sws_interpolation()
        self.result = Coded()

    def _yuv(self, rgb: np.ndarray):
        import av

        pad_h, pad_w = self.coded_height - self.height, self.coded_width - self.width
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = self.to_yuv.reformat(frame, format=PIX_FMT, dst_colorspace=MATRIX, src_color_range="JPEG",
                                     dst_color_range="MPEG", interpolation=self.interpolation, threads=1)
        frame.pts = self.pts
        self.pts += 1
        return frame

    def _rgb(self, frame) -> np.ndarray:
        if (frame.width, frame.height) != (self.coded_width, self.coded_height):
            raise BenchError(f"{self.name} decoded {frame.width}x{frame.height}, "
                             f"encoded {self.coded_width}x{self.coded_height}")
        rgb = self.to_rgb.reformat(frame, format="rgb24", src_colorspace=MATRIX, src_color_range="MPEG",
                                   dst_color_range="JPEG", interpolation=self.interpolation,
                                   threads=1).to_ndarray()
        return rgb[:self.height, :self.width]

    def _decode(self, packets, clock: Callable[[], float]) -> Iterator[np.ndarray]:
        for packet in packets:
            self.result.bytes += packet.size
            t0 = clock()
            frames = self.dec.decode(packet)
            decoded = [self._rgb(f) for f in frames]
            self.result.dec_s += clock() - t0
            self.result.frames += len(decoded)
            yield from decoded

    def feed(self, rgb: np.ndarray | None, clock: Callable[[], float]) -> Iterator[np.ndarray]:
        """Encode one RGB frame (None: flush both ends); yields the frames decoded so far."""
        t0 = clock()
        packets = self.enc.encode(None if rgb is None else self._yuv(rgb))
        self.result.enc_s += clock() - t0
        yield from self._decode(packets, clock)
        if rgb is None:
            t0 = clock()
            frames = [self._rgb(f) for f in self.dec.decode(None)]
            self.result.dec_s += clock() - t0
            self.result.frames += len(frames)
            yield from frames
