"""Video <-> .ncz with a video model: intra frames as images, inter frames with a temporal prior.

Encode, frame by frame (RGB, padded to multiples of 64 as an image is):
  x -> g_a (tiled) -> y * gain -> h_a -> z (rounded, factorized tables) -> exact h_s -> (mean_h, scale_h)
  intra frame (t % gop == 0): (mean, scale) = (mean_h, scale_h)        exactly the image codec
  inter frame: (mean, scale) = (mean_h, scale_h) + P(y_q[t-1], mean_h, scale_h), P in exact integers
  -> symbols round(y * gain - mean), each coded with the Gaussian table its scale selects
  -> one IFRM / PFRM chunk per frame; a seek index lists the intra frames (random access).
The only state carried from frame to frame is y_q[t] = symbols * 2^12 + mean, an integer latent
that encoder and decoder compute identically (the encoder never needs to synthesize pixels).
Decoding mirrors it with integer arithmetic only, so the output never depends on the machine.
Memory stays constant: frames stream through, the container is read chunk by chunk.
Layout of the HEAD params and chunks: bitstream_spec/SPEC.md section 7.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from ncodec.entropy import coder

from . import container as ct
from .fixed_point import ACT_BITS, ACT_LIMIT, run_tiled
from .image_codec import QUALITY_STEPS, ImageParams, _gain, _inverse_gain, _to_pixels, _z_index
from .image_weights import GAIN_BITS
from .video_audio import check_audio_track, interleave, track_length
from .video_io import VideoError
from .video_weights import VideoCodingModel, VideoModelError, load_coding_model
from .zoo import ModelInfo, find_by_hash, model_for

PARAMS = struct.Struct(">IIIIIHH")  # width, height, rate num, rate den, frames, gop, quality
CHUNK_INTRA, CHUNK_INTER, CHUNK_AUDIO = b"IFRM", b"PFRM", b"AUDI"
FRAME_CHUNKS = (CHUNK_INTRA, CHUNK_INTER)
KNOWN_CHUNKS = (CHUNK_INTRA, CHUNK_INTER, CHUNK_AUDIO, ct.SEEK)
MAX_SIDE = 16384
MAX_PIXELS = 36_000_000  # per frame: 8K UHD (7680x4320) fits
MAX_FRAMES = 100_000_000  # 38 days at 30 frames/s
MAX_GOP = 65535
MAX_RATE = 1000  # frames per second
DEFAULT_GOP = 32
SYMBOL_LIMIT = 1 << 20  # decoded symbols are clamped to +-SYMBOL_LIMIT (as images are)
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class VideoParams:
    """HEAD params: what the decoder restores and how the frames are coded."""

    width: int
    height: int
    rate_num: int
    rate_den: int
    frames: int
    gop: int  # frame t is intra when t % gop == 0 (gop 1: every frame)
    quality_fx: int  # (quality - 1) * 256

    def pack(self) -> bytes:
        return PARAMS.pack(self.width, self.height, self.rate_num, self.rate_den, self.frames, self.gop,
                           self.quality_fx)

    @classmethod
    def unpack(cls, data: bytes, levels: int) -> VideoParams:
        """Parse and validate every claim (before anything is allocated for it)."""
        if len(data) < PARAMS.size:
            raise VideoError("video parameters too short")
        p = cls(*PARAMS.unpack_from(data))
        p.validate(levels)
        return p

    def validate(self, levels: int, frames_known: bool = True) -> None:
        for name, v in (("width", self.width), ("height", self.height)):
            if not 1 <= v <= MAX_SIDE:
                raise VideoError(f"video {name} {v} outside 1..{MAX_SIDE}")
        ct.check_claim("video pixels per frame", self.width * self.height, MAX_PIXELS)
        if self.rate_num < 1 or self.rate_den < 1 or self.rate_num > MAX_RATE * self.rate_den:
            raise VideoError(f"frame rate {self.rate_num}/{self.rate_den} outside (0, {MAX_RATE}] frames/s")
        if frames_known and self.frames < 1:
            raise VideoError("video without frames")
        ct.check_claim("video frame count", self.frames, MAX_FRAMES)
        if not 1 <= self.gop <= MAX_GOP:
            raise VideoError(f"GOP {self.gop} outside 1..{MAX_GOP}")
        if self.quality_fx > (levels - 1) * QUALITY_STEPS:
            raise VideoError(f"quality {self.quality_fx / QUALITY_STEPS + 1:.2f} outside this model's range")

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.rate_num, self.rate_den)

    @property
    def quality(self) -> float:
        return 1 + self.quality_fx / QUALITY_STEPS

    @property
    def image(self) -> ImageParams:
        """The geometry of every frame: padding, latent tiles (as an RGB image of this size)."""
        return ImageParams(self.width, self.height, "RGB", self.quality_fx)

    def intra(self, t: int) -> bool:
        return t % self.gop == 0

    def intra_frames(self) -> range:
        return range(0, self.frames, self.gop)


def _model_info(model_id: str | None) -> ModelInfo:
    """The video model to encode with: `model_id`, else the default, else the one installed."""
    return model_for(model_id, "video", VideoError, "ncodec train video --init-image MODEL --export FILE")


def _load(info: ModelInfo) -> VideoCodingModel:
    try:
        return load_coding_model(info.path)
    except VideoModelError as err:
        raise VideoError(str(err)) from None


def pack_frame(z: bytes, ys: list[bytes]) -> bytes:
    """Frame chunk data: u32 length + payload of z, then of each latent tile."""
    return b"".join(part for payload in (z, *ys) for part in (_U32.pack(len(payload)), payload))


def unpack_frame(data: bytes, tiles: int, t: int) -> tuple[bytes, list[bytes]]:
    """(z payload, y payloads) of frame t's chunk data, every length checked against the data."""
    pieces, pos = [], 0
    for _ in range(1 + tiles):
        if pos + 4 > len(data):
            raise VideoError(f"frame {t}: chunk holds {len(pieces)} of {1 + tiles} payloads")
        (n,) = _U32.unpack_from(data, pos)
        if n > len(data) - pos - 4:
            raise VideoError(f"frame {t}: payload {len(pieces)} claims {n} bytes, "
                             f"{len(data) - pos - 4} remain")
        pieces.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if pos != len(data):
        raise VideoError(f"frame {t}: {len(data) - pos} stray bytes after the payloads")
    return pieces[0], pieces[1:]


class FrameCoder:
    """The per-frame steps shared by encoder and decoder, and the latent carried between frames.

    `encode(rgb, intra)` returns a frame chunk's data, `decode(data, intra)` the frame's pixels;
    both update `latent` (y_q of the frame, int32), which the next inter frame is coded against.
    """

    def __init__(self, model: VideoCodingModel, params: VideoParams):
        self.model, self.params = model, params
        self.im = model.image
        self.geometry = params.image
        self.tiles = self.geometry.y_tiles()
        self.inv = _inverse_gain(self.im, params.quality_fx)
        self.latent: torch.Tensor | None = None

    def entropy_params(self, z_sym: torch.Tensor, intra: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (mean [int64, ACT_BITS fraction], scale index [uint8]) of every y element."""
        im, m = self.im, self.im.cfg.m
        _, _, h, w = z_sym.shape
        hyper = torch.empty(1, 2 * m, 4 * h, 4 * w, dtype=torch.int32)
        run_tiled(im.h_s, z_sym.double() * 2.0**ACT_BITS, 4, tile=32, margin=2, out=hyper)
        mean, scale = hyper[:, :m].long(), hyper[:, m:].long()
        if not intra:
            if self.latent is None:
                raise VideoError("an inter frame needs the previous frame's latent")
            delta = torch.empty_like(hyper)
            run_tiled(self.model.prior, torch.cat([self.latent, hyper], 1).double(), 1, tile=64,
                      margin=self.model.margin, out=delta)
            mean = (mean + delta[:, :m]).clamp_(-int(ACT_LIMIT), int(ACT_LIMIT))
            scale = scale + delta[:, m:]
        index = torch.searchsorted(im.thresholds, scale.double().reshape(-1), right=True)
        return mean, index.view(scale.shape).to(torch.uint8)

    def _carry(self, sym: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """sym * 2^ACT_BITS + mean (int64), and the clamped latent kept for the next frame."""
        q = sym.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT) * (1 << ACT_BITS) + mean
        return q, q.clamp(-int(ACT_LIMIT), int(ACT_LIMIT)).int()

    def encode(self, rgb: np.ndarray, intra: bool) -> bytes:
        p, im = self.geometry, self.im
        hp, wp = p.padded
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255)
            x = F.pad(x, (0, wp - p.width, 0, hp - p.height), mode="replicate")
            y = run_tiled(im.g_a, x, 1 / 16, tile=1024, margin=im.analysis_margin,
                          out=torch.empty(1, im.cfg.m, hp // 16, wp // 16))
            y = y * _gain(im, self.params.quality_fx)
            z = run_tiled(im.h_a, y, 1 / 4, tile=256, margin=16,
                          out=torch.empty(1, im.cfg.n, hp // 64, wp // 64))
            z_sym = torch.round(z).long()
            mean, index = self.entropy_params(z_sym, intra)
            sym = torch.round(y.double() - mean.double() * 2.0**-ACT_BITS).long()
            self.latent = self._carry(sym, mean)[1]
        ys = [coder.encode(sym[..., y0:y1, x0:x1].numpy(), index[..., y0:y1, x0:x1].numpy(), im.y_tables)
              for y0, y1, x0, x1 in self.tiles]
        return pack_frame(coder.encode(z_sym.numpy(), _z_index(z_sym), im.z_tables), ys)

    def decode(self, data: bytes, intra: bool, t: int, synthesize: bool = True) -> np.ndarray | None:
        """Frame t's RGB pixels (H, W, 3) uint8; synthesize=False only updates the latent."""
        p, im = self.geometry, self.im
        hp, wp = p.padded
        m, n = im.cfg.m, im.cfg.n
        z_payload, y_payloads = unpack_frame(data, len(self.tiles), t)
        try:
            z_sym = torch.zeros((1, n, hp // 64, wp // 64), dtype=torch.long)
            z_sym.view(-1)[:] = torch.from_numpy(coder.decode(z_payload, _z_index(z_sym), im.z_tables))
            mean, index = self.entropy_params(z_sym, intra)
            y_hat = torch.empty(1, m, hp // 16, wp // 16, dtype=torch.int32)
            latent = torch.empty_like(y_hat)
            for (y0, y1, x0, x1), payload in zip(self.tiles, y_payloads, strict=True):
                idx = index[..., y0:y1, x0:x1]
                sym = torch.from_numpy(coder.decode(payload, idx.numpy(), im.y_tables)).view(idx.shape)
                q, latent[..., y0:y1, x0:x1] = self._carry(sym, mean[..., y0:y1, x0:x1])
                y_hat[..., y0:y1, x0:x1] = (q * self.inv >> GAIN_BITS).clamp_(-int(ACT_LIMIT), int(ACT_LIMIT))
        except coder.DecodeError as err:
            raise VideoError(f"frame {t}: {err}") from None
        self.latent = latent
        if not synthesize:
            return None
        pixels = torch.empty(1, 3, hp, wp, dtype=torch.uint8)
        run_tiled(lambda v: _to_pixels(im.g_s(v.double())), y_hat, 16, tile=24, margin=im.synthesis_margin,
                  out=pixels)
        return np.ascontiguousarray(pixels[0, :, : p.height, : p.width].permute(1, 2, 0).numpy())


def _frame_rate(rate) -> Fraction:
    try:
        value = Fraction(rate)
    except (TypeError, ValueError):
        raise VideoError(f"frame rate must be a positive number or fraction, got {rate!r}") from None
    if not 0 < value <= MAX_RATE:
        raise VideoError(f"frame rate must be within (0, {MAX_RATE}] frames/s, got {rate}")
    if value.denominator > 0xFFFFFFFF or value.numerator > 0xFFFFFFFF:
        value = value.limit_denominator(1_000_000)
    return value


class VideoEncoder:
    """Streams RGB frames into a .ncz container: `write` each frame (H, W, 3) uint8, then `close`.

    Memory stays constant: one frame and the previous frame's latent. `frames`, when known, is
    written in HEAD and checked at `close`; without it the stream must be seekable and readable
    (a file opened "w+b", a BytesIO): HEAD is rewritten with the count at `close`.
    """

    def __init__(self, stream: BinaryIO, width: int, height: int, frame_rate, quality: float = 4.0,
                 gop: int = DEFAULT_GOP, model_id: str | None = None, frames: int | None = None):
        info = _model_info(model_id)
        self.model = _load(info)
        levels = self.model.cfg.levels
        if not 1 <= quality <= levels:
            raise VideoError(f"quality must be within 1..{levels}, got {quality}")
        if not isinstance(gop, int) or not 1 <= gop <= MAX_GOP:
            raise VideoError(f"GOP must be an integer within 1..{MAX_GOP}, got {gop}")
        rate = _frame_rate(frame_rate)
        self.params = VideoParams(int(width), int(height), rate.numerator, rate.denominator, frames or 0,
                                  gop, round((quality - 1) * QUALITY_STEPS))
        self.params.validate(levels, frames_known=frames is not None)
        self._info, self._declared = info, frames
        self._header = ct.Header(ct.Modality.VIDEO, info.model_id, info.weights_hash, self.params.pack())
        self._writer = ct.ContainerWriter(stream, self._header)
        self._coder = FrameCoder(self.model, self.params)
        self._seek: list[tuple[int, int]] = []
        self._audio = False
        self.frames = 0  # written so far
        self.bytes = self._writer.position

    def write(self, rgb: np.ndarray) -> bytes:
        """Encode the next frame; returns its chunk's data (what FrameCoder.decode takes)."""
        rgb = np.asarray(rgb)
        p = self.params
        if rgb.dtype != np.uint8 or rgb.shape != (p.height, p.width, 3):
            raise VideoError(f"frame {self.frames}: expected uint8 ({p.height}, {p.width}, 3), "
                             f"got {rgb.dtype} {rgb.shape}")
        if self._declared is not None and self.frames >= self._declared:
            raise VideoError(f"more frames than the declared {self._declared}")
        if self._audio:
            raise VideoError("the audio track is written: no more frames")
        ct.check_claim("video frame count", self.frames + 1, MAX_FRAMES)
        intra = p.intra(self.frames)
        data = self._coder.encode(rgb, intra)
        offset = self._writer.add(CHUNK_INTRA if intra else CHUNK_INTER, data)
        if intra:
            self._seek.append((self.frames, offset))
        self.frames += 1
        self.bytes = self._writer.position
        return data

    def add_audio(self, data: bytes) -> None:
        """Add the audio track after the last frame: an audio .ncz (video_audio.encode_track) whose
        length is the written frames' duration at its sample rate."""
        from .audio_codec import AudioDecoder

        if self._audio:
            raise VideoError("the video already has an audio track")
        check_audio_track(AudioDecoder(data), self.frames, self.params.frame_rate)
        self._writer.add(CHUNK_AUDIO, data)
        self._audio = True
        self.bytes = self._writer.position

    def close(self) -> int:
        """Write the seek index and TAIL; returns the file size in bytes."""
        if self.frames == 0:
            raise VideoError("no frames to encode")
        if self._declared is None:
            params = replace(self.params, frames=self.frames)
            self._writer.rewrite_header(ct.Header(ct.Modality.VIDEO, self._info.model_id,
                                                  self._info.weights_hash, params.pack()))
            self.params = params
        elif self.frames != self._declared:
            raise VideoError(f"got {self.frames} frames, declared {self._declared}")
        self._writer.add(ct.SEEK, ct.encode_seek_index(self._seek))
        self.bytes = self._writer.close()
        return self.bytes


def encode_video(frames: Iterable[np.ndarray], frame_rate, quality: float = 4.0, gop: int = DEFAULT_GOP,
                 model_id: str | None = None) -> bytes:
    """Compress RGB frames (H, W, 3) uint8 at `frame_rate` to .ncz bytes."""
    buf = io.BytesIO()
    enc = None
    for rgb in frames:
        if enc is None:
            rgb = np.asarray(rgb)
            if rgb.ndim != 3:
                raise VideoError(f"frames must be (H, W, 3) uint8 arrays, got shape {rgb.shape}")
            enc = VideoEncoder(buf, rgb.shape[1], rgb.shape[0], frame_rate, quality, gop, model_id)
        enc.write(rgb)
    if enc is None:
        raise VideoError("no frames to encode")
    enc.close()
    return buf.getvalue()


class VideoDecoder:
    """Checks a whole file, then `frames(first, count)` streams decoded RGB frames of any range.

    source: .ncz bytes, a path, or a seekable binary stream (read from its current position).
    Opening reads the file once, piece by piece (every CRC, the chunk layout, the seek index);
    decoding then reads one frame chunk at a time, starting at the intra frame at or before the
    first frame asked for.
    """

    def __init__(self, source: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO):
        self._own = isinstance(source, (str, os.PathLike))
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._stream: BinaryIO = io.BytesIO(bytes(source))
        elif self._own:
            self._stream = open(source, "rb")  # noqa: SIM115 - closed by close()
        else:
            self._stream = source
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self._base = self._stream.tell()
        header, refs = ct.scan_container(self._stream, KNOWN_CHUNKS, (ct.SEEK, CHUNK_AUDIO))
        if header.modality != ct.Modality.VIDEO:
            raise VideoError(f"this is an {header.modality.name.lower()} file, not a video")
        self.model = _load(find_by_hash(header.model_id, header.weights_hash))
        self.params = p = VideoParams.unpack(header.params, self.model.cfg.levels)
        frames = [r for r in refs if r.type in FRAME_CHUNKS]
        if len(frames) != p.frames:
            raise VideoError(f"file holds {len(frames)} frame chunks, its header says {p.frames} frames")
        for t, ref in enumerate(frames):
            want = CHUNK_INTRA if p.intra(t) else CHUNK_INTER
            if ref.type != want:
                raise VideoError(f"frame {t} is a {ref.type.decode()} chunk; with GOP {p.gop} it must be "
                                 f"{want.decode()}")
        self._offsets = np.array([r.offset for r in frames], dtype=np.int64)
        self._lengths = np.array([r.length for r in frames], dtype=np.int64)
        seek = [r for r in refs if r.type == ct.SEEK]
        self.seek_index = ct.decode_seek_index(seek[0].data) if seek else None
        audio = [r for r in refs if r.type == CHUNK_AUDIO]
        if len(audio) > 1:
            raise VideoError(f"file holds {len(audio)} audio tracks (at most 1)")
        self.audio = None  # the audio track's decoder
        if audio:
            from .audio_codec import AudioDecoder, AudioError

            try:
                self.audio = AudioDecoder(audio[0].data)
            except (AudioError, ct.ContainerError) as err:
                raise VideoError(f"audio track: {err}") from None
            check_audio_track(self.audio, p.frames, p.frame_rate)
        if self.seek_index is not None:
            want = [(t, int(self._offsets[t])) for t in p.intra_frames()]
            if self.seek_index != want:
                raise VideoError("seek index does not list exactly the intra frames")

    def close(self) -> None:
        if self._own:
            self._stream.close()

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def frame_rate(self) -> Fraction:
        return self.params.frame_rate

    def frame_at(self, seconds: float) -> int:
        """The first frame shown at or after `seconds` (frame t is shown at t / frame_rate)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise VideoError(f"start must be a non-negative number of seconds, got {seconds}")
        t = max(math.ceil(Fraction(seconds) * self.frame_rate - Fraction(1, 2)), 0)
        n = self.params.frames
        if t >= n:
            end = float(n / self.frame_rate)
            raise VideoError(f"start {seconds:g} s is at or beyond the end ({end:.3f} s, {n} frames)")
        return t

    def span(self, first: int = 0, count: int | None = None) -> tuple[int, int]:
        """Frames [first, end) for a first frame and a count (None: to the end), checked."""
        total = self.params.frames
        if not 0 <= first < total:
            raise VideoError(f"first frame {first} outside 0..{total - 1}")
        if count is not None and count < 1:
            raise VideoError(f"frame count must be at least 1, got {count}")
        return first, total if count is None else min(total, first + count)

    def key_frame(self, t: int) -> int:
        """The intra frame decoding of frame t starts from (found through the seek index)."""
        key = t // self.params.gop * self.params.gop
        if self.seek_index is not None:
            position, offset = self.seek_index[key // self.params.gop]
            assert position == key and offset == self._offsets[key]
        return key

    def frames(self, first: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """RGB frames (H, W, 3) uint8 first .. first + count - 1, equal bit for bit to the same frames
        of a whole-file decode. Frames from the intra frame before `first` are entropy-decoded
        (for the latent they carry) but not synthesized."""
        a, b = self.span(first, count)
        return self._frames(a, b)

    def _frames(self, a: int, b: int) -> Iterator[np.ndarray]:
        coder_ = FrameCoder(self.model, self.params)
        for t in range(self.key_frame(a), b):
            ref = ct.ChunkRef(CHUNK_INTRA if self.params.intra(t) else CHUNK_INTER, int(self._offsets[t]),
                              int(self._lengths[t]))
            data = ct.read_chunk(self._stream, ref, self._base)
            rgb = coder_.decode(data, self.params.intra(t), t, synthesize=t >= a)
            if rgb is not None:
                yield rgb


class Video:
    """A decoded video: size, rate and frame count at once; frames are decoded as you iterate.

        video = ncodec.decode("clip.ncz")
        for rgb in video: ...               # (H, W, 3) uint8, in order
        video.save("clip.mkv")              # .y4m .mkv (lossless FFV1) .mp4 (H.264)
    """

    def __init__(self, decoder: VideoDecoder, first: int = 0, count: int | None = None):
        self._decoder = decoder
        self.first, end = decoder.span(first, count)
        self.width, self.height = decoder.params.width, decoder.params.height
        self.frame_rate = decoder.frame_rate
        self.frame_count = end - self.first
        track = decoder.audio.params if decoder.audio else None
        self.audio_rate = track.sample_rate if track else 0  # Hz of the audio track (0: none)
        self.audio_channels = track.channels if track else 0

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._decoder.frames(self.first, self.frame_count)

    def __repr__(self) -> str:
        return (f"Video({self.width}x{self.height}, {self.frame_count} frames at {self.frame_rate} fps, "
                f"from frame {self.first})")

    def audio_blocks(self) -> Iterator[np.ndarray]:
        """The audio track's int16 samples [channels, n] that play with these frames, in blocks."""
        if self._decoder.audio is None:
            raise VideoError("this video has no audio track")
        end = self.first + self.frame_count
        return self._decoder.audio.samples(track_length(self.first, self.frame_rate, self.audio_rate),
                                           track_length(end, self.frame_rate, self.audio_rate))

    def save(self, path: str | os.PathLike, pix_fmt: str | None = None,
             progress: Callable[[int], None] | None = None) -> Path:
        """Write the frames, and the audio track where the file type holds audio (.mkv: FLAC,
        .mp4: AAC; .y4m: video only, with a VideoWarning), through ncodec.video_io; returns the
        path. `progress(frames_written)` is called after every frame."""
        from .video_io import AUDIO_CODECS, VideoWarning, VideoWriter

        audio = self.audio_rate > 0
        if audio and Path(path).suffix.lower() not in AUDIO_CODECS:
            warnings.warn(f"the audio track is not written: {Path(path).suffix.lower()} holds video only "
                          "(write .mkv or .mp4 to keep it)", VideoWarning, stacklevel=2)
            audio = False
        with VideoWriter(path, self.frame_rate, pix_fmt,
                         audio=(self.audio_rate, self.audio_channels) if audio else None) as out:
            items = interleave(iter(self), self.audio_blocks() if audio else None, self.first,
                               self.frame_rate, self.audio_rate)
            for kind, data in items:
                if kind == "audio":
                    out.write_audio(data)
                    continue
                out.write(data)
                if progress:
                    progress(out.frames)
        return Path(path)

    def to_array(self) -> np.ndarray:
        """All frames as one (frames, H, W, 3) uint8 array (mind the memory for long clips)."""
        out = np.empty((self.frame_count, self.height, self.width, 3), np.uint8)
        for i, rgb in enumerate(self):
            out[i] = rgb
        return out


def decode_video(data: bytes, start: float | None = None, frames: int | None = None) -> Video:
    """A Video of .ncz bytes; start (seconds) and frames (count) select a range."""
    dec = VideoDecoder(data)
    first = dec.frame_at(start) if start else 0
    return Video(dec, first, frames)
