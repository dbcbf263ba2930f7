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

ncodec's learned video codec does not exist yet: `ncodec` is listed with the reason it cannot
run (unavailable()), never silently dropped.
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
    "ncodec": [],
}
SETTING_RANGE = {"x264": (0, 51), "x265": (0, 51), "svtav1": (1, 63)}
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
}


def check_video_codec(name: str) -> None:
    if name not in SETTINGS:
        raise BenchError(f"unknown video codec {name!r} (known: {', '.join(SETTINGS)})")


def check_settings(name: str, settings: list[Setting]) -> None:
    lo, hi = SETTING_RANGE.get(name, (None, None))
    bad = [s for s in settings if lo is not None and not lo <= s <= hi]
    if bad:
        raise BenchError(f"{name} CRF must be {lo}..{hi}, got {bad[0]:g}")


def unavailable(name: str) -> str | None:
    """Why codec `name` cannot run on this machine (one line), or None when it can."""
    if name == "ncodec":
        from ncodec.zoo import installed

        if any(m.modality == "video" for m in installed()):
            return "this ncodec version has no video codec to run its video model with"
        return "no ncodec video model is installed (the learned video codec is not built yet)"
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


class AnchorSession:
    """One encoder and one decoder for one clip at one setting, fed frame by frame (bounded memory:
    only frames inside the encoder's lookahead are held)."""

    def __init__(self, name: str, width: int, height: int, rate: Fraction, setting: Setting,
                 threads: int = 1):
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
