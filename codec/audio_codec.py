"""Audio <-> .ncz bytes with an RVQ audio model, streamed in chunks of one second.

Encode: PCM at any rate 8-48 kHz -> mid/side if stereo -> resample to the model rate (24 kHz)
-> per chunk of 75 latent frames (encoded with `margin` frames of context each side): RVQ codes
of the first `stages` stages -> range-coded with per-stage categorical tables -> one `RVQC`
container chunk; a `seek` index maps chunk start positions to file offsets.
Decode: codes -> integer codeword sums -> exact integer decoder, evaluated per chunk with
`margin` frames of context (so chunked decoding equals whole-signal decoding bit for bit) ->
int16 left/right -> integer resampling back to the original rate, trimmed to the exact length.
Layout of the HEAD params and chunks: bitstream_spec/SPEC.md section 6.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
import torch
from ncodec.entropy import coder
from ncodec.entropy.categorical import stage_index

from . import container as ct
from .audio_model import AudioModelConfig, bitrates
from .audio_weights import AudioCodingModel, load_coding_model
from .fixed_point import ACT_BITS
from .resample import Resampler
from .zoo import ModelInfo, find_by_hash, model_for

PARAMS = struct.Struct(">IBBQBH")  # rate, channels, bit depth, length, stages, chunk frames
CHUNK_CODES = b"RVQC"
KNOWN_CHUNKS = (CHUNK_CODES, ct.SEEK)
MIN_RATE, MAX_RATE = 8000, 48000
MAX_SECONDS = 24 * 3600
BIT_DEPTHS = (8, 16, 24, 32)
CHUNK_FRAMES = 75  # one second at 75 frames/s
CODER_SLACK = 8  # bytes per code chunk the range coder may add (its final words)
PRIOR_SLACK = 0.02  # codes may cost up to 2% more than log2(K) bits under the learned prior
MAX_CHUNK_FRAMES = 750
RESAMPLE_MARGIN = 256  # coded-rate samples of resampler context beyond a decoded range
INT16_SHIFT = 15 - ACT_BITS  # decoder output (ACT_BITS fraction) -> int16 (15 bits fraction)
BLOCK = 1 << 16  # samples per block when a whole array is encoded


class AudioError(ValueError):
    """Audio that cannot be encoded, or a file that cannot be decoded (one-line message)."""


@dataclass(frozen=True)
class AudioParams:
    """HEAD params: what the decoder restores and how the codes are laid out."""

    sample_rate: int
    channels: int
    bit_depth: int
    length: int  # samples per channel at sample_rate
    stages: int
    chunk_frames: int = CHUNK_FRAMES

    def pack(self) -> bytes:
        return PARAMS.pack(self.sample_rate, self.channels, self.bit_depth, self.length, self.stages,
                           self.chunk_frames)

    @classmethod
    def unpack(cls, data: bytes) -> AudioParams:
        """Parse and validate every claim (before anything is allocated for it)."""
        if len(data) < PARAMS.size:
            raise AudioError("audio parameters too short")
        p = cls(*PARAMS.unpack_from(data))
        p.validate()
        ct.check_claim("chunk frames", p.chunk_frames, MAX_CHUNK_FRAMES)
        if p.stages < 1 or p.chunk_frames < 1:
            raise AudioError(f"invalid stages {p.stages} / chunk frames {p.chunk_frames}")
        return p

    def validate(self) -> None:
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise AudioError(f"sample rate {self.sample_rate} Hz outside {MIN_RATE}..{MAX_RATE} Hz")
        if self.channels not in (1, 2):
            raise AudioError(f"only mono and stereo audio are supported, got {self.channels} channels")
        if self.bit_depth not in BIT_DEPTHS:
            raise AudioError(f"bit depth {self.bit_depth} is not one of {BIT_DEPTHS}")
        if self.length < 1:
            raise AudioError("empty audio (no samples)")
        ct.check_claim("audio length in samples", self.length, self.sample_rate * MAX_SECONDS)

    def coded_length(self, cfg: AudioModelConfig) -> int:
        """Samples at the model rate that carry the signal."""
        return -(-self.length * cfg.sample_rate // self.sample_rate)

    def frames(self, cfg: AudioModelConfig) -> int:
        return -(-self.coded_length(cfg) // cfg.hop)

    def chunks(self, cfg: AudioModelConfig) -> int:
        return -(-self.frames(cfg) // self.chunk_frames)


def _model_info(model_id: str | None) -> ModelInfo:
    """The audio model to encode with: `model_id`, else the default, else the one installed."""
    return model_for(model_id, "audio", AudioError, "ncodec train audio --export FILE")


def _stages_for(model: AudioCodingModel, bitrate_kbps: float, params: AudioParams, header: ct.Header) -> int:
    """RVQ stages per stream for a total bitrate B, one of the model's nominal rates: mono takes
    B's stages, stereo half of them for mid and half for side; fewer (at least 1) where the
    file, container included, could otherwise exceed B kbps at this length."""
    rates, channels = bitrates(model.cfg), params.channels
    nominal = [n for kbps, n in rates.items() if math.isclose(kbps, bitrate_kbps, rel_tol=1e-6)
               and n % channels == 0]
    if not nominal:
        choices = ", ".join(f"{k:g}" for k, n in rates.items() if n % channels == 0)
        raise AudioError(f"bitrate must be one of {choices} kbps, got {bitrate_kbps:g}")
    cfg, chunks = model.cfg, params.chunks(model.cfg)
    empty = [(CHUNK_CODES, b"")] * chunks + [(ct.SEEK, ct.encode_seek_index([(i, i) for i in range(chunks)]))]
    fixed = len(ct.write_container(header, empty)) + CODER_SLACK * chunks
    per_stage = params.frames(cfg) * channels * math.log2(cfg.codebook_size) / 8 * (1 + PRIOR_SLACK)
    budget = bitrate_kbps * 125 * params.length / params.sample_rate  # bytes
    stages = nominal[0] // channels
    while stages > 1 and fixed + stages * per_stage > budget:
        stages -= 1
    return stages


def _window(chunk: int, chunk_frames: int, margin: int, frames: int) -> tuple[int, int, int, int]:
    """(first, end) frames of a chunk and of its window with `margin` frames of context."""
    f0, f1 = chunk * chunk_frames, min((chunk + 1) * chunk_frames, frames)
    return f0, f1, max(f0 - margin, 0), min(f1 + margin, frames)


class AudioEncoder:
    """Streams PCM into a .ncz container: `write` blocks [channels, n] in order, then `close`.

    Memory stays bounded: only the resampled samples of the current chunk and its context are
    kept. `length` (samples per channel) must be known up front; it is written in HEAD.
    """

    def __init__(self, stream: BinaryIO, sample_rate: int, channels: int, length: int,
                 bitrate_kbps: float = 6.0, model_id: str | None = None, bit_depth: int = 16):
        info = _model_info(model_id)
        self.model = load_coding_model(info.path)
        params = AudioParams(int(sample_rate), int(channels), int(bit_depth), int(length), stages=1)
        params.validate()
        header = ct.Header(ct.Modality.AUDIO, info.model_id, info.weights_hash, params.pack())
        self.params = replace(params, stages=_stages_for(self.model, bitrate_kbps, params, header))
        cfg = self.model.cfg
        self._hop, self._frames = cfg.hop, self.params.frames(cfg)
        self._coded = self.params.coded_length(cfg)
        self._resampler = Resampler(channels, sample_rate, cfg.sample_rate)
        self._buffer = np.zeros((channels, 0), np.float32)
        self._buffer_start = 0  # model-rate sample index of _buffer[:, 0]
        self._received = 0
        self._chunk = 0
        self._seek: list[tuple[int, int]] = []
        header = ct.Header(ct.Modality.AUDIO, info.model_id, info.weights_hash, self.params.pack())
        self._writer = ct.ContainerWriter(stream, header)

    def write(self, block: np.ndarray) -> None:
        """Add the next samples, float [channels, n] in -1..1 (beyond is clipped)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.params.channels:
            raise AudioError(f"expected a [{self.params.channels}, n] block, got shape {block.shape}")
        if not np.isfinite(block).all():
            raise AudioError("audio contains NaN or infinite samples")
        self._received += block.shape[1]
        if self._received > self.params.length:
            raise AudioError(f"more samples than the declared length {self.params.length}")
        block = np.clip(block, -1.0, 1.0)
        if self.params.channels == 2:  # mid/side
            block = np.stack([(block[0] + block[1]) * 0.5, (block[0] - block[1]) * 0.5])
        self._append(self._resampler.push(block))
        self._encode_ready(final=False)

    def close(self) -> int:
        """Encode what is left, write the seek index and TAIL; returns the file size."""
        if self._received != self.params.length:
            raise AudioError(f"got {self._received} samples, declared {self.params.length}")
        self._append(self._resampler.flush())
        end = self._frames * self._hop - self._buffer_start  # exact length, then zero padding
        have = self._buffer[:, :end]
        self._buffer = np.pad(have, ((0, 0), (0, end - have.shape[1])))
        self._encode_ready(final=True)
        self._writer.add(ct.SEEK, ct.encode_seek_index(self._seek))
        return self._writer.close()

    def _append(self, samples: np.ndarray) -> None:
        keep = self._coded - (self._buffer_start + self._buffer.shape[1])  # samples beyond are padding
        self._buffer = np.concatenate([self._buffer, samples[:, :max(keep, 0)]], 1)

    def _encode_ready(self, final: bool) -> None:
        chunk_frames, margin, hop = self.params.chunk_frames, self.model.margin, self._hop
        while self._chunk * chunk_frames < self._frames:
            f0, f1, w0, w1 = _window(self._chunk, chunk_frames, margin, self._frames)
            if not final and self._buffer_start + self._buffer.shape[1] < w1 * hop:
                return
            a = w0 * hop - self._buffer_start
            x = torch.from_numpy(self._buffer[:, a : a + (w1 - w0) * hop]).unsqueeze(1)
            with torch.inference_mode():
                y = self.model.encoder(x)[:, :, f0 - w0 : f1 - w0]
                codes = self.model.rvq.encode(y, self.params.stages)
            codes = codes.view(self.params.channels, f1 - f0, self.params.stages).numpy()
            payload = coder.encode(codes, stage_index(codes.reshape(-1, codes.shape[-1])), self.model.tables)
            self._seek.append((f0 * hop, self._writer.add(CHUNK_CODES, payload)))
            self._chunk += 1
            drop = max((f1 - margin) * hop - self._buffer_start, 0)
            self._buffer, self._buffer_start = self._buffer[:, drop:], self._buffer_start + drop


def encode_audio(samples: np.ndarray, sample_rate: int, bitrate_kbps: float = 6.0,
                 model_id: str | None = None, bit_depth: int = 16) -> bytes:
    """Compress float samples [channels, n] (or [n] for mono) at sample_rate to .ncz bytes."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2:
        raise AudioError(f"samples must be [channels, n], got shape {samples.shape}")
    if samples.shape[1] == 0:
        raise AudioError("empty audio (no samples)")
    if not np.isfinite(samples).all():
        raise AudioError("audio contains NaN or infinite samples")
    buf = io.BytesIO()
    enc = AudioEncoder(buf, sample_rate, samples.shape[0], samples.shape[1], bitrate_kbps, model_id,
                       bit_depth)
    for i in range(0, samples.shape[1], BLOCK):
        enc.write(samples[:, i : i + BLOCK])
    enc.close()
    return buf.getvalue()


class AudioDecoder:
    """Parses and checks a file; `blocks` then yields int16 PCM of any time range, in order."""

    def __init__(self, data: bytes):
        header, chunks = ct.read_container(data, KNOWN_CHUNKS)
        if header.modality != ct.Modality.AUDIO:
            raise AudioError(f"this is an {header.modality.name.lower()} file, not audio")
        self.params = p = AudioParams.unpack(header.params)
        self.model = load_coding_model(find_by_hash(header.model_id, header.weights_hash).path)
        cfg = self.model.cfg
        if p.stages > cfg.n_stages:
            raise AudioError(f"file uses {p.stages} RVQ stages, the model has {cfg.n_stages}")
        codes = [c for c in chunks if c.type == CHUNK_CODES]
        if len(codes) != p.chunks(cfg):
            raise AudioError(f"file holds {len(codes)} code chunks, its length needs {p.chunks(cfg)}")
        self._payloads = self._index(codes, [c for c in chunks if c.type == ct.SEEK])
        self._frames = p.frames(cfg)
        self._latents: dict[int, torch.Tensor] = {}

    def _index(self, codes: list[ct.Chunk], seek: list[ct.Chunk]) -> list[bytes]:
        """Code chunk payloads in time order, located through the seek index when present."""
        if not seek:
            return [c.data for c in codes]
        by_offset = {c.offset: c.data for c in codes}
        step = self.params.chunk_frames * self.model.cfg.hop
        entries = ct.decode_seek_index(seek[0].data)
        if [pos for pos, _ in entries] != [i * step for i in range(len(codes))] or any(
                off not in by_offset for _, off in entries):
            raise AudioError("seek index does not match the code chunks")
        return [by_offset[off] for _, off in entries]

    @property
    def duration(self) -> float:
        return self.params.length / self.params.sample_rate

    def span(self, start: float | None = None, duration: float | None = None) -> tuple[int, int]:
        """Sample range [a, b) at the original rate for a start and duration in seconds."""
        p = self.params
        for name, v in (("start", start), ("duration", duration)):
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise AudioError(f"{name} must be a non-negative number of seconds, got {v}")
        a = round((start or 0.0) * p.sample_rate)
        if a >= p.length:
            raise AudioError(f"start {start:g} s is at or beyond the end ({self.duration:.3f} s)")
        b = p.length if duration is None else min(p.length, a + round(duration * p.sample_rate))
        if b <= a:
            raise AudioError("duration selects no samples")
        return a, b

    def blocks(self, start: float | None = None, duration: float | None = None) -> Iterator[np.ndarray]:
        """int16 [channels, n] blocks covering [start, start + duration) at the original rate.

        The samples equal those of a whole-file decode at the same positions, bit for bit.
        """
        return self.samples(*self.span(start, duration))

    def samples(self, a: int, b: int) -> Iterator[np.ndarray]:
        """int16 [channels, n] blocks of samples [a, b) at the original rate (0 <= a < b <= length)."""
        if not 0 <= a < b <= self.params.length:
            raise AudioError(f"sample range [{a}, {b}) outside 0..{self.params.length}")
        return self._samples(a, b)

    def _samples(self, a: int, b: int) -> Iterator[np.ndarray]:
        rate, coded_rate = self.params.sample_rate, self.model.cfg.sample_rate
        end = self._frames * self.model.cfg.hop  # coded samples, zero-padded to whole frames
        if rate == coded_rate:
            yield from self._coded(a, b)
            return
        g = math.gcd(rate, coded_rate)
        period = coded_rate // g  # coded samples per `rate // g` output samples: same filter phase
        s0 = max(a * coded_rate // rate - RESAMPLE_MARGIN, 0) // period * period
        e0 = min(-(-b * coded_rate // rate) + RESAMPLE_MARGIN, end)
        pos = s0 // period * (rate // g)  # output index of the first resampled sample
        resampler = Resampler(self.params.channels, coded_rate, rate, np.int16)

        def resampled() -> Iterator[np.ndarray]:
            for x in self._coded(s0, e0):
                yield resampler.push(x)
            if e0 == end:  # the stream's end: drain the filter as a whole-file decode does
                yield resampler.flush()

        for out in resampled():
            lo, hi = max(a - pos, 0), min(b - pos, out.shape[1])
            if hi > lo:
                yield out[:, lo:hi]
            pos += out.shape[1]
        if pos < b:  # the resampler ends a few samples short of the declared length: pad
            yield np.zeros((self.params.channels, b - max(pos, a)), np.int16)

    def _coded(self, s0: int, e0: int) -> Iterator[np.ndarray]:
        """int16 left/right (or mono) at the model rate, samples [s0, e0), chunk by chunk."""
        hop, chunk_frames = self.model.cfg.hop, self.params.chunk_frames
        step = chunk_frames * hop
        for c in range(s0 // step, -(-e0 // step)):
            f0, f1, w0, w1 = _window(c, chunk_frames, self.model.margin, self._frames)
            latent = torch.cat([self._latent(k)[..., max(w0, k * chunk_frames) - k * chunk_frames:
                                                w1 - k * chunk_frames]
                                for k in range(w0 // chunk_frames, -(-w1 // chunk_frames))], 2)
            x = self.model.decoder(latent)[:, 0, (f0 - w0) * hop : (f1 - w0) * hop]
            lo, hi = max(s0 - f0 * hop, 0), min(e0 - f0 * hop, x.shape[1])
            yield _to_int16(x[:, lo:hi])
            for k in [k for k in self._latents if k < w0 // chunk_frames]:
                del self._latents[k]

    def _latent(self, c: int) -> torch.Tensor:
        """Integer latent [channels, D, frames] of code chunk c (cached while in use)."""
        if c not in self._latents:
            p = self.params
            f0, f1, _, _ = _window(c, p.chunk_frames, 0, self._frames)
            shape = (p.channels, f1 - f0, p.stages)
            index = stage_index(np.empty((p.channels * (f1 - f0), p.stages)))
            try:
                codes = coder.decode(self._payloads[c], index, self.model.tables)
            except coder.DecodeError as err:
                raise AudioError(f"code chunk {c}: {err}") from None
            if codes.min() < 0 or codes.max() >= self.model.cfg.codebook_size:
                raise AudioError(f"code chunk {c} holds codeword indices outside the codebook")
            self._latents[c] = self.model.latent(torch.from_numpy(codes).view(shape))
        return self._latents[c]


def _to_int16(x: torch.Tensor) -> np.ndarray:
    """Decoder output (ACT_BITS fraction, mid/side for stereo) -> int16 [channels, n], exact."""
    if x.shape[0] == 2:
        x = torch.stack([x[0] + x[1], x[0] - x[1]])
    return (x * 2.0**INT16_SHIFT).clamp_(-32768, 32767).to(torch.int16).numpy()


def decode_audio(data: bytes, start: float | None = None,
                 duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decompress .ncz bytes to (float32 [channels, n], sample_rate); start/duration in seconds."""
    dec = AudioDecoder(data)
    pcm = np.concatenate(list(dec.blocks(start, duration)), 1)
    return pcm.astype(np.float32) / 32768.0, dec.params.sample_rate
