"""Video <-> .ncz with a video model: intra frames as images, inter frames with a temporal prior.

Encode, frame by frame (RGB, padded to multiples of 64 as an image is):
  x -> g_a (tiled) -> y * gain -> h_a -> z (rounded, factorized tables) -> exact h_s -> (mean_h, scale_h)
  intra frame (t % gop == 0): exactly the image codec (with the channel context, if any)
  inter frame: (mean, scale) = (base, scale_h) + P(y_q[t-1], mean_h, scale_h), P in exact integers,
    base = mean_h or y_q[t-1] as the prior's base says (a model may hold one prior per base)
  -> symbols round(y * gain - mean), each coded with the Gaussian table its scale selects
  -> one IFRM (DFRM) / SFRM / HFRM / TFRM chunk per frame; a seek index lists the intra frames
  (random access).
An inter frame may skip blocks of 4x4 latent positions (64x64 pixels; 2x2, 32x32 pixels, in a fine
skip map, where that costs less): a skipped block copies the
previous frame's latent and costs no symbols, and a frame that skips every block codes no z either.
The encoder skips a block when that lowers rate + lambda * distortion (lambda of the quality, the
distortion measured on a float synthesis of both choices), and of a model's two priors takes the
one whose frame costs less so; the decoder just follows the skip map and the frame's mode flags.
Encoder-side latent refinement (image_refine) applies to intra frames and to inter frames that code
blocks (under the parameters the temporal prior gives): the same decoder, better rate-distortion.
An inter frame may also change a brightness offset added to the decoded pixels, a global motion
by which they are moved (1/8 pixels, bilinear) and (a TFRM chunk) a tone by which they are scaled
(1/16 octaves): the latent codes the frame moved back, less the offset, scaled up by the tone, so
skipped blocks follow exposure drift, a pan of the camera and a fade, and a dark frame codes a
picture stretched to the range the transforms know. In an HFRM chunk a move
map says which skipped 32x32 blocks instead keep the previous frame's picture or show it moved by a
vector of their own, or by one per 16x16 quarter (1/4 pixels, bilinear; video_moves): what moves
before a still camera. Such blocks are held: later frames that skip them keep them, with no map.
The state carried from frame to frame is y_q[t] = symbols * 2^12 + mean (or the copied latent), an
integer latent that encoder and decoder compute identically, with the offset, the motion and the
picture (g_s's int16 output, kept and moved blocks shown) and which blocks are held.
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
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from ncodec.entropy import coder

from . import container as ct
from .fixed_point import ACT_BITS, ACT_LIMIT, run_tiled
from .image_codec import (
    QUALITY_STEPS,
    ImageError,
    ImageParams,
    SliceCoder,
    _code_slices,
    _gain,
    _hyper,
    _inverse_gain,
    _latent_out,
    _refine,
    _slice_decoder,
    _slice_encoder,
    _z_index,
    latent_symbols,
    refine_steps,
    symbol_values,
)
from .image_weights import GAIN_BITS
from .video_audio import check_audio_track, interleave, track_length
from .video_io import VideoError
from .video_moves import (
    COPY,
    HELD_KINDS,
    KEEP,
    LEAST_MOVE_BITS,
    MOVE,
    MOVE_BITS,
    MOVED_KINDS,
    SPLIT,
    Moves,
    block_sums,
    kind_symbols,
    move_blocks,
    pack_move_map,
    per_pixel,
    quarters,
    search_moves,
    symbol_tables,
    unpack_move_map,
)
from .video_weights import VideoCodingModel, VideoModelError, load_coding_model
from .zoo import ModelInfo, find_by_hash, model_for

PARAMS = struct.Struct(">IIIIIHH")  # width, height, rate num, rate den, frames, gop, quality
CHUNK_INTRA, CHUNK_INTER, CHUNK_AUDIO = b"IFRM", b"SFRM", b"AUDI"
CHUNK_INTER_V1 = b"PFRM"  # inter frame without a skip map (files of earlier writers; still read)
CHUNK_HELD = b"HFRM"  # inter frame with moved blocks, held in later frames: a move map follows the skip map
CHUNK_TONED = b"TFRM"  # an HFRM whose offset field also changes the tone
CHUNK_INTRA_TONED = b"DFRM"  # an intra frame with a tone: a byte, then an IFRM's data
INTRA_CHUNKS = (CHUNK_INTRA, CHUNK_INTRA_TONED)
CHUNK_MOVED = b"MFRM"  # ... whose moved blocks are not held (files of earlier writers; still read)
HELD_CHUNKS = (CHUNK_HELD, CHUNK_TONED)
MAPPED_CHUNKS = (*HELD_CHUNKS, CHUNK_MOVED)
FRAME_CHUNKS = (*INTRA_CHUNKS, CHUNK_INTER, CHUNK_INTER_V1, *MAPPED_CHUNKS)
INTER_CHUNKS = (CHUNK_INTER, CHUNK_INTER_V1, *MAPPED_CHUNKS)
KNOWN_CHUNKS = (*FRAME_CHUNKS, CHUNK_AUDIO, ct.SEEK)
SKIP_BLOCK = 4  # latent positions per side of a skip block (64x64 pixels)
FINE_BLOCK = 2  # ... of a block of a fine skip map (32x32 pixels)
# Inter frames' choices weigh distortion at a fraction of the quality's training lambda (the intra
# frame, which every skipped block copies, and refinement use the whole of it): INTER_LAMBDA_SCALES
# at the lowest and the highest quality, log-linear in quality between. Measured on the held-out
# clip (the video model card has the runs): 0.3 codes it for 15% fewer bits than 1 (v5's priors
# before their joint training); with v6, 0.1 is cheaper than 0.3 at qualities 1-4 (quality 1:
# 0.0023 bpp at 30.47 dB against 0.0043 at 30.77), even at 6 and dearer at 8.
INTER_LAMBDA_SCALES = (0.1, 0.3)
# Refinement steps of intra frames when the caller names none (inter frames get the image default):
# one frame in a GOP, which every skipped block copies, so more encode time pays there. On the
# held-out clip's first frame (video-stprior-v7's image part), 40 steps against 20: quality 4 +1.4%
# bytes at +0.26 dB, quality 7 -1.6% at +0.13 dB (the video model card has the clip's figures).
DEFAULT_INTRA_REFINE = 40
# What a payload costs beyond its symbols' estimated bits: its u32 length and the range coder's
# rounding up to 32-bit words (16 bits on average). A frame that codes any block pays it once per
# payload (z, and each tile of each slice): with 8 channel-context slices some 400 bits, which at
# the lowest qualities outweighs what coding a few blocks saves.
PAYLOAD_BITS = 48
MOVE_MAP_BITS = 3 * PAYLOAD_BITS + 24  # a move map's payload, its kinds' and vectors' payloads, 3 counts
MAP_NONE, MAP_ALL, MAP_CODED, MAP_FINE = 0, 1, 2, 3  # skip map kinds: none, all, coded flags, finer ones
Z_COPIED = 0x80  # skip map kind flag: the frame codes no z and reuses the last coded one
NO_PRIOR = 0x40  # skip map kind flag: the temporal prior does not correct h_s's (mean, scale)
SLICED = 0x20  # skip map kind flag: the channel context codes the frame slice by slice
SECOND_PRIOR = 0x10  # skip map kind flag: the model's second temporal prior corrects them
MODE_FLAGS = NO_PRIOR | SLICED | SECOND_PRIOR
OFFSET = 0x08  # skip map kind flag: 3 signed bytes follow, the change of the brightness offset (R, G, B)
OFFSET_BITS = 3  # brightness offsets are in units of 2^-OFFSET_BITS pixel levels
OFFSET_LIMIT = 255 << OFFSET_BITS  # the largest |offset| of a frame
OFFSET_CHANGE_BITS = 24  # what a frame's change of the offset costs (its 3 bytes)
# The encoder's limit on the share of a channel's pixels that the frame less its offset (what the
# latent codes) puts outside 0..255, where the transforms never trained: a fade from black is not
# an offset (Big Buck Bunny's opening at quality 8: 44.97 dB with offsets there, 49.77 without).
OFFSET_OUTSIDE = 0.01
# A TFRM's offset field (and a DFRM's first byte) also sets the frame's tone: its picture is scaled by
# 2^(-tone/16) before the offset is added, so a dark frame codes a picture stretched to the range the
# transforms trained on, and skipped blocks follow a fade (weighted prediction).
TONE_STEPS = 16  # tones per octave
TONE_LIMIT = 127  # the largest tone (the picture scaled by about 1/245)
TONE_MANTISSAS = (65536, 62757, 60097, 57549, 55109, 52773, 50535, 48393,  # 2^16 * 2^(-k/16), rounded
                  46341, 44376, 42495, 40693, 38968, 37316, 35734, 34219)
TONE_CHANGE_BITS = 8 + 32  # what a frame's change of the tone costs: its byte, an empty move map's length
TONE_SHARE = 0.001  # the share of pixels the encoder lets a tone push beyond 255 (they clip)
STRETCH_CODED = 0.5  # the share of blocks a frame codes for the encoder to weigh stretching it
MOTION = 0x04  # skip map kind flag: 2 signed bytes follow (after the offset's), the change of the motion
MOTION_BITS = 3  # global motion is in units of 2^-MOTION_BITS pixels (down, right)
MOTION_LIMIT = 1 << 15  # the largest |motion| of a frame (4096 pixels)
MOTION_CHANGE_BITS = 16  # what a frame's change of the motion costs (its 2 bytes)
MOTION_SEARCH = 16  # pixels: the largest change of the motion per frame the encoder looks for
MAX_SIDE = 16384
MAX_PIXELS = 36_000_000  # per frame: 8K UHD (7680x4320) fits
MAX_FRAMES = 100_000_000  # 38 days at 30 frames/s
MAX_GOP = 65535
MAX_RATE = 1000  # frames per second
DEFAULT_GOP = 32
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
    pieces = _payloads(data, 1 + tiles, t)
    return pieces[0], pieces[1:]


def _payloads(data: bytes, count: int, t: int, rest: bool = False) -> list[bytes]:
    """`count` length-prefixed payloads that make up `data` exactly (rest: and what follows them)."""
    pieces, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            raise VideoError(f"frame {t}: chunk holds {len(pieces)} of {count} payloads")
        (n,) = _U32.unpack_from(data, pos)
        if n > len(data) - pos - 4:
            raise VideoError(f"frame {t}: payload {len(pieces)} claims {n} bytes, "
                             f"{len(data) - pos - 4} remain")
        pieces.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if rest:
        return [*pieces, data[pos:]]
    if pos != len(data):
        raise VideoError(f"frame {t}: {len(data) - pos} stray bytes after the payloads")
    return pieces


def _skip_tables(p: int) -> coder.TableSet:
    """A block is skipped with probability p / 256."""
    return symbol_tables((256 - p, p))


@dataclass(frozen=True)
class InterMode:
    """How an inter frame's entropy parameters are formed (SPEC 7.3), chosen per frame."""

    prior: int | None = 0  # which of the model's temporal priors corrects h_s's (mean, scale); None: none
    context: bool = False  # then the channel context corrects them slice by slice (as in intra frames)

    @property
    def flags(self) -> int:
        return {None: NO_PRIOR, 0: 0, 1: SECOND_PRIOR}[self.prior] | (SLICED if self.context else 0)

    @classmethod
    def from_flags(cls, flags: int) -> InterMode:
        """The mode of an inter frame's skip map kind byte (whose NO_PRIOR and SECOND_PRIOR flags
        the caller has checked are not both set)."""
        prior = None if flags & NO_PRIOR else int(bool(flags & SECOND_PRIOR))
        return cls(prior=prior, context=bool(flags & SLICED))


def pack_skip_map(skip: np.ndarray, z_copied: bool = False, mode: InterMode = InterMode(),
                  offset: tuple[int, int, int] = (0, 0, 0), motion: tuple[int, int] = (0, 0),
                  fine: bool = False, tone: int | None = None) -> bytes:
    """An inter frame's first payload: u8 kind (MAP_NONE, MAP_ALL, MAP_CODED or MAP_FINE (`fine`:
    the flags are of 32x32-pixel blocks, twice as many each way), plus Z_COPIED
    when the frame reuses the last coded z, the flags of its `mode`, OFFSET when the brightness
    `offset` (or the `tone`) changes, its 3 signed bytes then following (a TFRM's, whose `tone` is
    not None: 4, the tone's change last), and MOTION when the global `motion` changes, its 2 signed
    bytes following those); MAP_CODED and MAP_FINE add u8 p (skip probability * 256) and the
    range-coded flags, row-major over the blocks."""
    fields = offset if tone is None else (*offset, tone)
    shifted = any(fields)
    change = struct.pack(f">{len(fields)}b", *fields) if shifted else b""
    change += struct.pack(">bb", *motion) if any(motion) else b""
    moves = (OFFSET if shifted else 0) | (MOTION if any(motion) else 0)
    if skip.all():
        return bytes([MAP_ALL | moves]) + change
    head = (Z_COPIED if z_copied else 0) | mode.flags | moves
    if not skip.any():
        return bytes([MAP_NONE | head]) + change
    p = min(max(round(256 * float(skip.mean())), 1), 255)
    flags = skip.ravel().astype(np.int64)
    coded = coder.encode(flags, np.zeros_like(flags), _skip_tables(p))
    return bytes([(MAP_FINE if fine else MAP_CODED) | head]) + change + bytes([p]) + coded


def unpack_skip_map(data: bytes, shape: tuple[int, int], t: int, toned: bool = False
                    ) -> tuple[np.ndarray, bool, InterMode, tuple[int, int, int], tuple[int, int], int]:
    """(skip flags [blocks down, blocks across], z copied, mode, change of the brightness offset,
    change of the global motion, change of the tone) of an inter frame's first payload, checked;
    `shape`: the blocks of 64x64 pixels (a fine map's flags are of 32x32-pixel blocks, twice as many
    each way); `toned`: a TFRM's, whose offset field also holds the tone's change."""
    if not data:
        raise VideoError(f"frame {t}: empty skip map")
    head = data[0]
    kind, z_copied = head & ~(Z_COPIED | MODE_FLAGS | OFFSET | MOTION), bool(head & Z_COPIED)
    mode = InterMode.from_flags(head)
    if head & NO_PRIOR and head & SECOND_PRIOR:
        raise VideoError(f"frame {t}: skip map names a temporal prior and none")
    offset, tone, rest = (0, 0, 0), 0, data[1:]
    if head & OFFSET:
        size = 3 + toned
        if len(rest) < size:
            raise VideoError(f"frame {t}: skip map ends inside its brightness offset")
        fields, rest = struct.unpack(f">{size}b", rest[:size]), rest[size:]
        offset, tone = fields[:3], fields[3] if toned else 0
    motion = (0, 0)
    if head & MOTION:
        if len(rest) < 2:
            raise VideoError(f"frame {t}: skip map ends inside its global motion")
        motion, rest = struct.unpack(">bb", rest[:2]), rest[2:]
    if not rest and (kind == MAP_NONE or head & ~(OFFSET | MOTION) == MAP_ALL):
        return np.full(shape, kind == MAP_ALL), z_copied, mode, offset, motion, tone
    if kind not in (MAP_CODED, MAP_FINE) or not rest or not 1 <= rest[0] <= 255:
        raise VideoError(f"frame {t}: invalid skip map")
    if kind == MAP_FINE:
        shape = (shape[0] * SKIP_BLOCK // FINE_BLOCK, shape[1] * SKIP_BLOCK // FINE_BLOCK)
    try:
        flags = coder.decode(rest[1:], np.zeros(shape[0] * shape[1], np.int64), _skip_tables(rest[0]))
    except coder.DecodeError as err:
        raise VideoError(f"frame {t}: skip map: {err}") from None
    if ((flags != 0) & (flags != 1)).any():
        raise VideoError(f"frame {t}: skip map holds values other than 0 and 1")
    return flags.reshape(shape).astype(bool), z_copied, mode, offset, motion, tone


def inter_lambda_scale(quality: float, levels: int) -> float:
    """The fraction of the training lambda an inter frame's choices use at `quality` (1..levels)."""
    lo, hi = INTER_LAMBDA_SCALES
    return lo * (hi / lo) ** ((quality - 1) / (levels - 1))


def inter_lambda(quality: float, lambdas: tuple[float, ...]) -> float:
    """Bits per unit of SSE (pixels in 0..1, summed over 3 channels, lambda in units of 255^2 MSE)
    that an inter frame's choices (skipped blocks, the prior) trade: `inter_lambda_scale` times
    the quality's training lambda."""
    from .image_refine import quality_lambda

    return inter_lambda_scale(quality, len(lambdas)) * quality_lambda(quality, lambdas) * 255**2 / 3


def tone_scale(tone: int) -> float:
    """What a tone scales the picture by: 2^(-tone/16), as the decoder's integers give it."""
    octaves, mantissa = divmod(tone, TONE_STEPS)
    return TONE_MANTISSAS[mantissa] / 2.0 ** (16 + octaves)


def _moved(offset: tuple[int, ...], change: tuple[int, ...]) -> tuple[int, ...]:
    """A brightness offset after a frame's change."""
    return tuple(a + b for a, b in zip(offset, change, strict=True))


def _byte_change(change: Iterable[int], now: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """A change of an offset or a motion `now` clamped to a signed byte (it is written as one) and
    so that the result stays within +-`limit`."""
    return tuple(max(-127, -limit - n, min(127, limit - n, c)) for c, n in zip(change, now, strict=True))


def glide(a: torch.Tensor, motion: tuple[int, int]) -> torch.Tensor:
    """`a` [..., H, W] moved by the global `motion` (down, right; 1/8 pixels): output (i, j) is `a`
    at (i + motion[0] / 8, j + motion[1] / 8), interpolated bilinearly between the four nearest
    samples (coordinates clamped to the array) with integer weights that sum to 64, the sum left
    unnormalized (exact for integer `a`; SPEC 7.4 step 4)."""
    one = 1 << MOTION_BITS
    for axis, m in ((-2, motion[0]), (-1, motion[1])):
        whole, part = divmod(m, one)  # (floor, so that the weights are never negative)
        size = a.shape[axis]
        index = torch.arange(size) + whole
        moved = (one - part) * (a.index_select(axis, index.clamp(0, size - 1)) if whole else a)
        if part:
            moved = moved + part * a.index_select(axis, (index + 1).clamp(0, size - 1))
        a = moved
    return a


def _kind_bits(kinds: np.ndarray) -> float:
    """Estimated bits of range-coded symbols (skip flags; COPY, KEEP, MOVE) at their own frequencies."""
    p = np.bincount(kinds.ravel(), minlength=3) / kinds.size
    p = p[p > 0]
    return -kinds.size * float((p * np.log2(p)).sum())


def _flag_bits(skip: np.ndarray) -> float:
    """Estimated bits of a skip map's coded flags and their probability byte (none when every block
    or none is skipped: MAP_ALL, MAP_NONE)."""
    return 8 + _kind_bits(skip.astype(np.int64)) if 0 < skip.sum() < skip.size else 0.0


class FrameCoder:
    """The per-frame steps shared by encoder and decoder, and the latent carried between frames.

    `encode(rgb, intra)` returns a frame chunk (type, data), `decode(kind, data, t)` the frame's
    pixels; both update `latent` (y_q of the frame, int32), which the next inter frame is coded
    against. Encoder only: `synthesis` (the float g_s) enables skipped blocks in inter frames,
    `refine` > 0 refines the latents of inter frames that code blocks for that many steps (as
    `image_codec.encode_image` does), `intra_refine` those of intra frames (default: `refine`).
    """

    def __init__(self, model: VideoCodingModel, params: VideoParams,
                 synthesis: Callable[[torch.Tensor], torch.Tensor] | None = None, refine: int = 0,
                 intra_refine: int | None = None):
        self.model, self.params = model, params
        self.im = model.image
        self.geometry = params.image
        self.tiles = self.geometry.y_tiles()
        self.inv = _inverse_gain(self.im, params.quality_fx)
        self.latent: torch.Tensor | None = None
        self.z_sym: torch.Tensor | None = None  # the last z coded (an inter frame may copy it)
        hp, wp = self.geometry.padded
        self.blocks = (-(-hp // (16 * SKIP_BLOCK)), -(-wp // (16 * SKIP_BLOCK)))
        self.synthesis, self.refine = synthesis, refine
        self.intra_refine = refine if intra_refine is None else intra_refine
        self.recon: torch.Tensor | None = None  # encoder: float synthesis of the previous frame's latent
        self.canvas: torch.Tensor | None = None  # its picture, moved blocks shown (decoder: int16)
        self.held = self._fine(np.zeros(self.blocks, dtype=bool))  # 32x32 blocks kept where skipped
        self._searched: tuple[tuple, tuple] | None = None  # encoder: ((x, recon, canvas), _skipping(x))
        self._valid = None  # encoder with skips: 1 on the frame's pixels, 0 on the padding
        if synthesis is not None:
            self._valid = torch.zeros(hp, wp)
            self._valid[: self.geometry.height, : self.geometry.width] = 1
        self.offset = (0, 0, 0)  # the frame's brightness offset (R, G, B; 2^-OFFSET_BITS levels)
        self.motion = (0, 0)  # the frame's global motion (down, right; 2^-MOTION_BITS pixels)
        self.tone = 0  # the frame's tone: its picture is scaled by tone_scale(tone)
        self._weight = 1.0  # encoder: tone_scale(tone)^2 of the frame planned, SSE of the picture to pixels
        self._shown: tuple[torch.Tensor, torch.Tensor] | None = None  # decoder: last (y_hat, g_s output)

    @cached_property
    def _lambda(self) -> float:
        """The encoder's `inter_lambda` (bits per unit of SSE) at this file's quality."""
        return inter_lambda(self.params.quality, self.im.cfg.lambdas)

    def _params(self, z_sym: torch.Tensor, prior: int | None) -> torch.Tensor:
        """h_s's output for z [1, 2M, h, w] (int32: means, then raw scales), corrected by the
        model's temporal prior number `prior` unless None (SPEC 7.3: the means then start from
        that prior's base)."""
        hyper = _hyper(self.im, z_sym)
        if prior is None:
            return hyper
        if self.latent is None:
            raise VideoError("an inter frame needs the previous frame's latent")
        m = self.im.cfg.m
        delta = torch.empty_like(hyper)
        run_tiled(self.model.priors[prior], torch.cat([self.latent, hyper], 1).double(), 1, tile=64,
                  margin=self.model.margin, out=delta)
        base = self.latent if self.model.cfg.prior_bases[prior] == "previous" else hyper[:, :m]
        mean = (base.long() + delta[:, :m]).clamp_(-int(ACT_LIMIT), int(ACT_LIMIT))
        return torch.cat([mean, hyper[:, m:].long() + delta[:, m:]], 1).int()

    def _walk(self, hyper: torch.Tensor, mode: InterMode, code: SliceCoder) -> torch.Tensor:
        """q [int64] of an inter frame coded or decoded by `code` slice by slice from `_params`'
        output `hyper` (SPEC 7.3, 7.4)."""
        return _code_slices(self.im, hyper, code, _latent_out(self.im, hyper, torch.int64), lambda part, q: q,
                            mode.context)

    def _estimate(self, y: torch.Tensor, hyper: torch.Tensor, mode: InterMode
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q [int64], scale index, symbols) of every latent element of an inter frame coded in
        `mode` with `_params`' output `hyper`, were no block skipped. (The context nets are per position, so
        these are also the coded elements' values when blocks are skipped.)"""
        indices, syms = [], []

        def record(s: int, mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            syms.append(latent_symbols(y[:, s * mean.shape[1]:(s + 1) * mean.shape[1]], mean))
            indices.append(index)
            return symbol_values(syms[-1], mean)

        q = self._walk(hyper, mode, record)
        return q, torch.cat(indices, 1), torch.cat(syms, 1)

    def _modes(self) -> list[InterMode]:
        """The inter modes the encoder weighs: each of the model's temporal priors and, when it
        measures distortion (skipped blocks enabled), none, each alone and with the channel context
        if the model has one. (Without a prior a frame codes for fewer bits on moving footage but
        reconstructs worse, by 5 dB on Big Buck Bunny at quality 2: the prior's means lie closer to
        the latent, so rounding moves it less; only rate + lambda * distortion can weigh it. So
        weighed, it coded Big Buck Bunny's first 16 frames at quality 4 with v8 in 0.0426 bpp at
        40.87 dB against 0.0488 at 40.25, and changed nothing on two fixed-camera clips.)"""
        priors = [*range(len(self.model.priors)), *([None] if self.synthesis is not None else [])]
        contexts = (False, True)[: 1 + bool(self.im.context)]
        return [InterMode(prior, context) for prior in priors for context in contexts]

    def _intra(self, z_sym: torch.Tensor, code: SliceCoder) -> tuple[torch.Tensor, torch.Tensor]:
        """(q [int64], latent [int32]) of an intra frame, coded or decoded by `code` slice by
        slice exactly as the image codec does (`image_codec._code_slices`)."""
        hyper = _hyper(self.im, z_sym)
        q = _code_slices(self.im, hyper, code, _latent_out(self.im, hyper, torch.int64), lambda part, q: q)
        return q, q.clamp(-int(ACT_LIMIT), int(ACT_LIMIT)).int()

    def _block(self, skip: np.ndarray) -> int:
        """The latent positions per side of the blocks of skip flags `skip` (SKIP_BLOCK or FINE_BLOCK)."""
        return SKIP_BLOCK * self.blocks[0] // skip.shape[0]

    def _positions(self, skip: np.ndarray) -> torch.Tensor:
        """Per-block flags [blocks down, blocks across] -> per latent position [H/16, W/16]."""
        hp, wp = self.geometry.padded
        block = self._block(skip)
        full = np.repeat(np.repeat(skip, block, 0), block, 1)
        return torch.from_numpy(np.ascontiguousarray(full[: hp // 16, : wp // 16]))

    def _synthesize(self, q: torch.Tensor) -> torch.Tensor:
        """Float pixels [1, 3, H, W] (padded) of integer latents q (encoder-side estimate)."""
        hp, wp = self.geometry.padded
        y = q.double() * 2.0**-ACT_BITS * (self.inv.double() * 2.0**-GAIN_BITS)
        return run_tiled(lambda v: self.synthesis(v.float()).float().clamp_(0, 1), y, 16, tile=32,
                         margin=self.im.synthesis_margin, out=torch.empty(1, 3, hp, wp))

    def _choose_skips(self, x: torch.Tensor, q: torch.Tensor, sym: torch.Tensor, index: torch.Tensor,
                      fixed: float = 0.0) -> tuple[np.ndarray, Moves, torch.Tensor, float]:
        """Skip flags per block (rate + lambda * SSE of skipping vs coding, `inter_lambda`) of 64x64 or,
        where that costs less, 32x32 pixels, the moved blocks among the skipped ones, the coded
        synthesis, and the frame's cost with those flags (the coded blocks' y bits + lambda * SSE, the
        flags' and the move map's bits, plus `fixed`, the bits a frame that codes any block spends
        besides them: every block is skipped when that costs less). A skipped 32x32 block copies the
        previous latent or, where that costs less, keeps or moves the previous picture, when what
        the frame's kept and moved blocks save pays for its move map."""
        coded = self._synthesize(q)
        lam = self._lambda * self._weight
        err_coded = ((coded - x) ** 2).sum((0, 1)) * self._valid
        copying, keeping, moving, shown, vectors, picture = self._skipping(x)
        copies = np.where(self.held, (copying < moving).numpy(), (copying <= moving).numpy())
        kind = np.where(copies, COPY, shown)  # (ties: as an SFRM shows the block)
        skipping = torch.minimum(copying, moving)  # a skipped 32x32 block's cost, kept or moved if that pays
        plain = torch.where(torch.from_numpy(self.held), keeping, copying)  # ... without a map

        def moves(skip: np.ndarray) -> tuple[Moves, float]:
            """The skipped blocks' kinds and what they change in the frame's cost from showing them
            as a frame without a move map does (the map's bits less what they save; none without one)."""
            skipped = self._fine(skip)
            still = np.where(skipped & self.held, KEEP, COPY)
            kinds = np.where(skipped, kind, COPY)
            if (kinds != still).any():
                saved = float((plain - skipping)[torch.from_numpy(skipped)].sum())
                symbols = kind_symbols(kinds, self.held)[skipped]
                change = MOVE_MAP_BITS + _kind_bits(symbols) - saved
                if change < 0:
                    return Moves(kinds, vectors, picture, mapped=True), change
            return Moves(still, picture=self.canvas), 0.0

        every = np.ones(self.blocks, dtype=bool)
        best = every, *moves(every)
        best = best[0], best[1], float(plain.sum()) + best[2]  # (every block skipped)
        bits = coder.cost_bits(sym.numpy(), index.long().numpy(), self.im.y_tables).sum((0, 1))
        bits = torch.from_numpy(bits)
        for block in (SKIP_BLOCK, FINE_BLOCK):  # 64x64 or 32x32 pixels, whichever costs less
            coding = block_sums(bits, block) + lam * block_sums(err_coded, 16 * block)
            skip = block_sums(skipping, block // FINE_BLOCK) <= coding
            if skip.all():
                continue
            chosen, change = moves(skip.numpy())
            copied = block_sums(plain, block // FINE_BLOCK)
            cost = float(torch.where(skip, copied, coding).sum()) + fixed + change
            cost += _flag_bits(skip.numpy())
            if cost < best[2]:
                best = skip.numpy(), chosen, cost
        return best[0], best[1], coded, best[2]

    def _skipping(self, x: torch.Tensor) -> tuple:
        """What skipping each 32x32 block of x costs: lambda * SSE (+ vector bits) of copying the previous
        latent, of keeping the previous picture, and of the cheapest of keeping it, moving it by a
        vector (`search_moves`) or moving its 16x16 quarters by four; that choice (KEEP, MOVE, SPLIT),
        the vectors of the quarters [2H, 2W, 2] and the picture so moved (once per x and previous frame)."""
        key = (x, self.recon, self.canvas)
        if self._searched is None or any(a is not b for a, b in zip(self._searched[0], key, strict=True)):
            block, lam = 16 * FINE_BLOCK, self._lambda * self._weight
            sse = (((a - x) ** 2).sum((0, 1)) * self._valid for a in (self.recon, self.canvas))
            copying, keeping = (lam * block_sums(e, block) for e in sse)
            active = keeping > LEAST_MOVE_BITS  # (the others are kept: a move costs more, even split)
            moving, vectors = search_moves(self.canvas, x, self._valid, lam, block, active=active)
            split, parts = search_moves(self.canvas, x, self._valid, lam, block // 2, zero_free=False,
                                        active=torch.from_numpy(quarters(active.numpy())))
            split = block_sums(split, 2)
            moving = torch.where(vectors.any(-1), moving, keeping)  # (the zero vector costed as copying is:
            kept = keeping <= torch.minimum(moving, split)  # equal pictures tie)
            splits = ~kept & (split < moving)
            shown = np.where(kept, KEEP, np.where(splits, SPLIT, MOVE))
            moving = torch.where(kept, keeping, torch.minimum(moving, split))
            vectors = np.where(quarters(splits.numpy())[..., None], parts.numpy(),
                               quarters(np.where(kept[..., None], 0, vectors.numpy())))
            picture = move_blocks(self.canvas, torch.from_numpy(vectors), block // 2) / (1 << 2 * MOVE_BITS)
            self._searched = key, (copying, keeping, moving, shown, vectors, picture)
        return self._searched[1]

    def _fine(self, skip: np.ndarray) -> np.ndarray:
        """Skip flags of 64x64 or 32x32-pixel blocks as flags of the 32x32-pixel blocks."""
        fine = self._block(skip) // FINE_BLOCK
        return np.repeat(np.repeat(skip, fine, 0), fine, 1)

    def encode(self, rgb: np.ndarray, intra: bool) -> tuple[bytes, bytes]:
        p = self.geometry
        hp, wp = p.padded
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255)
            x = F.pad(x, (0, wp - p.width, 0, hp - p.height), mode="replicate")
            if intra:
                self.offset, self.motion, self.held = (0, 0, 0), (0, 0), np.zeros_like(self.held)
                if self.synthesis is not None:
                    self.tone, y, z_sym = self._intra_tone(x)
                else:
                    self.tone, (y, z_sym) = 0, self._analyse(x)
                self._weight = tone_scale(self.tone) ** 2
                data = self._encode_intra(x / tone_scale(self.tone), y, z_sym)
                return (CHUNK_INTRA_TONED, bytes([self.tone]) + data) if self.tone else (CHUNK_INTRA, data)
            # with a change of the motion or the brightness offset worth trying, the frame is
            # weighed with both and with neither, and with each change of the tone worth trying alone:
            # a fade's, and stretches where the better codes most blocks anyway (a cut, a new scene)
            # and so do they (a stretch that skips most blocks would show their old picture dimmed
            # or brightened: what no fade does, and what later frames inherit)
            glided, change = (0, 0), (0, 0, 0)
            if self.synthesis is not None:
                glided = self._motion_change(x)
                change = self._offset_change(self._unmoved(x, _moved(self.motion, glided)))
            plans = [self._plan(x, change, glided)]
            if any(change) or any(glided):
                plans.append(self._plan(x, (0, 0, 0), (0, 0)))
            plan = min(plans, key=lambda plan: plan[0])
            if self.synthesis is not None:
                fade, stretches = self._tone_changes(self._unmoved(x, self.motion),
                                                     stretch=(~plan[11]).mean() >= STRETCH_CODED)
                toned = [self._plan(x, (0, 0, 0), (0, 0), fade)] if fade else []
                toned += [p for p in (self._plan(x, (0, 0, 0), (0, 0), t) for t in stretches)
                          if (~p[11]).mean() >= STRETCH_CODED]
                plan = min([plan, *toned], key=lambda plan: plan[0])
            _, change, glided, toned, x, y, z_sym, z_bits, options, mode, z_copied, skip, moves, coded = plan
            self.offset, self.motion = _moved(self.offset, change), _moved(self.motion, glided)
            self.tone += toned
            self._weight = tone_scale(self.tone) ** 2
            if self.refine and not skip.all():  # (a frame that copies every block is not refined)
                y = self._refine_inter(x, y, z_bits, options, mode, z_copied, skip)
                _, _, q, index, sym = options[mode, z_copied]
                if self.synthesis is not None:
                    fixed = self._fixed_bits(mode, z_copied, z_bits)
                    skip, moves, coded, _ = self._choose_skips(x, q, sym, index, fixed)
            keep = ~self._positions(skip)
            blocks = None  # (the blocks whose z the frame codes: all)
            if self.synthesis is not None and not skip.all():
                # z again, weighed at the coded positions: the last one, or this frame's at the blocks
                # that code any position (the last one's elsewhere)
                blocks = self._z_blocks(skip)
                if not blocks.all():
                    options[mode, False] = self._option(y, self._partial_z(z_sym, blocks), mode, {})
                bits = {copied: self._y_bits(options[mode, copied][4], options[mode, copied][3], keep)
                        for copied in (False, True)}
                copy = bits[True] < bits[False] + self._z_bits(z_sym, blocks)
                planned = copy == z_copied and (copy or blocks.all())
                coded = coded if planned else None  # (coded is of the latents planned)
                z_copied = copy
            z_sym = self.z_sym if z_copied else self._partial_z(z_sym, blocks)
            payloads: list[bytes] = []
            if not skip.all():
                hyper = options[mode, z_copied][1]
                code = _slice_encoder(self.im, y, self.tiles, payloads, keep, self.latent)
                q = self._walk(hyper, mode, code)
                self.z_sym = z_sym  # coded (or copied): the decoder holds it from here on
                if self.synthesis is not None:  # what the next frame's choices compare with
                    self.recon = coded if coded is not None and keep.all() else self._synthesize(q)
                self.latent = q.clamp(-int(ACT_LIMIT), int(ACT_LIMIT)).int()
            held = self.held
            if self.synthesis is not None:
                self.canvas = self._picture(self.recon, moves)
                self.held = moves.kinds != COPY
        pieces = [] if skip.all() else payloads if z_copied else [self._code_z(z_sym, blocks), *payloads]
        partly = not (skip.all() or z_copied or blocks is None or blocks.all())  # (z of some blocks)
        fine = self._block(skip) == FINE_BLOCK
        if moves.mapped or partly or toned:
            head = pack_skip_map(skip, z_copied, mode, change, glided, fine, tone=toned if toned else None)
            skipped = self._fine(skip)
            move_map = pack_move_map(moves.kinds, skipped, moves.vectors, held) if moves.mapped else b""
            return CHUNK_TONED if toned else CHUNK_HELD, pack_frame(head, [move_map, *pieces])
        return CHUNK_INTER, pack_frame(pack_skip_map(skip, z_copied, mode, change, glided, fine), pieces)

    @staticmethod
    def _picture(synth: torch.Tensor, moves: Moves) -> torch.Tensor:
        """A frame's picture (SPEC 7.4 step 4's x): g_s's output `synth`, with the kept and moved
        blocks' pixels from the previous picture moved by their vectors (`moves.picture`)."""
        if not moves.any():
            return synth
        shown = per_pixel(torch.from_numpy(moves.kinds != COPY), 16 * FINE_BLOCK, synth.shape[-2:])
        return torch.where(shown, moves.picture, synth)

    @staticmethod
    def _shift(offset: tuple[int, ...]) -> torch.Tensor:
        """A brightness offset as float pixels [1, 3, 1, 1] (0..1 scale)."""
        return torch.tensor(offset, dtype=torch.float32).view(1, 3, 1, 1) / (255 << OFFSET_BITS)

    def _offset_change(self, x: torch.Tensor) -> tuple[int, int, int]:
        """The change of the brightness offset that makes the previous frame's pixels match the
        padded frame x [1, 3, H, W]: per channel the median over blocks of their mean difference,
        rounded, where at least half the blocks lie within a level of it (a change of the whole
        frame, not of what moves) and the frame less the new offset leaves 0..255 for at most
        OFFSET_OUTSIDE of the pixels; none when what it saves on those blocks (lambda * SSE, at
        the inter lambda) is not worth OFFSET_CHANGE_BITS."""
        px, valid = 16 * SKIP_BLOCK, self._valid
        counts = block_sums(valid, px)
        inside = counts > 0
        scale = tone_scale(self.tone)
        diff = (x - scale * self.canvas - self._shift(self.offset))[0] * valid
        sums = torch.stack([block_sums(d, px) for d in diff])[:, inside]
        means = sums / counts[inside]
        median = means.median(1, keepdim=True).values
        near = (means - median).abs() <= 1 / 255
        agrees = (2 * near.sum(1) >= near.shape[1]).tolist()
        steps = [round(m * (255 << OFFSET_BITS)) if agree else 0
                 for m, agree in zip(median.view(-1).tolist(), agrees, strict=True)]
        change = _byte_change(steps, self.offset, OFFSET_LIMIT)
        shifted = (x - self._shift(_moved(self.offset, change)))[0] / scale  # what the latent would code
        outside = ((shifted < -0.5 / 255) | (shifted > 1 + 0.5 / 255)) & (valid > 0)
        change = [c if share <= OFFSET_OUTSIDE else 0
                  for c, share in zip(change, (outside.sum((1, 2)) / valid.sum()).tolist(), strict=True)]
        d = self._shift(change).view(3, 1)
        saved = float(((2 * d * sums - counts[inside] * d**2) * near).sum())  # SSE before - after
        worth = self._lambda * saved > OFFSET_CHANGE_BITS
        return tuple(change) if worth else (0, 0, 0)

    def _reach(self, x: torch.Tensor) -> int:
        """The tone that stretches the padded frame x [1, 3, H, W] (less the offset) to the full range:
        all but TONE_SHARE of its values within 0..255."""
        values = x[0][:, self._valid > 0].flatten()
        top = float(values.kthvalue(max(1, math.ceil((1 - TONE_SHARE) * values.numel()))).values)
        return min(max(math.floor(TONE_STEPS * math.log2(1 / max(top, 1 / 255))), 0), TONE_LIMIT)

    def _intra_tone(self, x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        """An intra frame's tone, with `_analyse`'s (y, z) of the padded frame x stretched by it: of 0
        and the whole octaves up to `_reach`'s (none for a frame that spans half the range or more),
        the one of least rate + lambda * SSE (the quality's training lambda; the symbols coded
        without refinement, the SSE of their float synthesis)."""
        from .image_refine import quality_lambda

        reach = self._reach(x)
        if reach < TONE_STEPS:
            return 0, *self._analyse(x)
        lam = quality_lambda(self.params.quality, self.im.cfg.lambdas) * 255**2 / 3

        def option(tone: int) -> tuple[float, int, torch.Tensor, torch.Tensor]:
            scale = tone_scale(tone)
            y, z_sym = self._analyse(x / scale)
            payloads: list[bytes] = []
            q, _ = self._intra(z_sym, _slice_encoder(self.im, y, self.tiles, payloads))
            sse = (((self._synthesize(q) * scale - x) ** 2).sum((0, 1)) * self._valid).sum()
            return 8 * sum(map(len, payloads)) + self._z_bits(z_sym) + lam * float(sse), tone, y, z_sym

        return min((option(tone) for tone in range(0, reach + 1, TONE_STEPS)), key=lambda o: o[0])[1:]

    def _tone_changes(self, x: torch.Tensor, stretch: bool = True) -> tuple[int, list[int]]:
        """The changes of the tone worth weighing for the padded frame x [1, 3, H, W] (moved back by
        the motion) less the brightness offset: (to the tone of a fade from the picture shown, the
        median over 64x64 blocks of the frame's least-squares ratio to it, by an octave at most;
        if `stretch`, to the tones at whole octaves), no higher than the one that stretches the frame
        to the full range (all but TONE_SHARE of its values within 0..255); 0 or none for those
        within TONE_STEPS // 8 of the tone, and while the frame spans half the range or more at
        tone 0."""
        x = x - self._shift(self.offset)
        reach = self._reach(x)
        if reach < TONE_STEPS and self.tone == 0:
            return 0, []
        px = 16 * SKIP_BLOCK
        shown = self.canvas * tone_scale(self.tone)
        weights = (self._valid > 0).float()
        cross = block_sums((x * shown).sum((0, 1)) * weights, px)
        power = block_sums((shown**2).sum((0, 1)) * weights, px)
        lit = power > block_sums(weights, px) * 3 / 255**2  # (blocks shown at a level or more)
        ratio = float((cross[lit] / power[lit]).median()) if lit.any() else 0.0
        fade = TONE_STEPS if ratio <= 0 else -round(TONE_STEPS * math.log2(ratio))
        fade = min(max(self.tone + min(max(fade, -TONE_STEPS), TONE_STEPS), 0), reach) - self.tone
        octaves = range(TONE_STEPS, reach + 1, TONE_STEPS) if stretch else ()
        stretches = [tone - self.tone for tone in octaves]
        worth = TONE_STEPS // 8
        return (fade if abs(fade) >= worth else 0), [c for c in stretches if abs(c) >= worth and c != fade]

    def _analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y scaled by the quality's gain, rounded z) of padded pixels x [1, 3, H, W]."""
        im, (hp, wp) = self.im, self.geometry.padded
        y = run_tiled(im.g_a, x, 1 / 16, tile=1024, margin=im.analysis_margin,
                      out=torch.empty(1, im.cfg.m, hp // 16, wp // 16))
        y = y * _gain(im, self.params.quality_fx)
        z = run_tiled(im.h_a, y, 1 / 4, tile=256, margin=16, out=torch.empty(1, im.cfg.n, hp // 64, wp // 64))
        return y, torch.round(z).long()

    def _plan(self, x: torch.Tensor, change: tuple[int, int, int], glided: tuple[int, int],
              toned: int = 0) -> tuple:
        """An inter frame's choices with the brightness offset moved by `change`, the global motion
        by `glided` and the tone by `toned`: (cost, change, glided, toned, the picture the latent
        codes (the frame moved back by the motion, less the offset, over the tone's scale), y, z,
        z_bits, options, then `_choose`'s mode, z copied, skip flags and coded synthesis). The cost is
        `_choose`'s rate + lambda * SSE (of the pixels: the picture's SSE times the scale squared),
        plus the bits of the changes and lambda * SSE of the pixels shown from beyond the frame the
        latent codes."""
        motion = _moved(self.motion, glided)
        edge = self._lambda * self._edge_sse(x, motion)
        scale = tone_scale(self.tone + toned)
        x = (self._unmoved(x, motion) - self._shift(_moved(self.offset, change))) / scale
        self._weight = scale**2
        y, z_sym = self._analyse(x)
        z_bits = self._z_bits(z_sym)
        options = self._options(y, z_sym, z_bits)  # (mode, z copied) -> (bits, params, q, index, symbols)
        *choice, cost = self._choose(x, z_bits, options)
        cost += OFFSET_CHANGE_BITS * (any(change) or bool(toned)) + TONE_CHANGE_BITS * bool(toned)
        cost += MOTION_CHANGE_BITS * any(glided) + edge
        return (cost, change, glided, toned, x, y, z_sym, z_bits, options, *choice)

    @staticmethod
    def _moved_pixels(a: torch.Tensor, motion: tuple[int, int]) -> torch.Tensor:
        """Float pixels [1, 3, H, W] moved by the global `motion` as the decoder moves them (`glide`)."""
        return glide(a, motion) / (1 << 2 * MOTION_BITS) if any(motion) else a

    def _unmoved(self, x: torch.Tensor, motion: tuple[int, int]) -> torch.Tensor:
        """The padded frame x moved back by the global `motion`: in the coordinates of the latent."""
        return self._moved_pixels(x, (-motion[0], -motion[1]))

    def _edge_sse(self, x: torch.Tensor, motion: tuple[int, int]) -> float:
        """SSE of the frame's pixels that the global `motion` shows from beyond the padded frame
        (the decoder repeats its edge there), against the previous frame's pixels so moved."""
        if not any(motion):  # (nothing from beyond; an encoder without skipped blocks has no motion)
            return 0.0
        one = 1 << MOTION_BITS

        def outside(size: int, move: int) -> torch.Tensor:
            at = torch.arange(size) * one + move
            return (at < 0) | (at > (size - 1) * one)

        hp, wp = self.geometry.padded
        beyond = (outside(hp, motion[0])[:, None] | outside(wp, motion[1])[None, :]) * self._valid
        if not beyond.any():
            return 0.0
        shown = self._moved_pixels(self.canvas, motion) * tone_scale(self.tone) + self._shift(self.offset)
        return float((((x - shown) ** 2).sum((0, 1)) * beyond).sum())

    def _motion_change(self, x: torch.Tensor) -> tuple[int, int]:
        """The change of the global motion that best moves the previous frame's pixels onto the
        padded frame x [1, 3, H, W] (least squares on the mean of the channels, coarse to fine: whole
        pixels on a 4x smaller image up to MOTION_SEARCH, then whole, half, quarter and eighth
        pixels), clamped to a signed byte and MOTION_LIMIT; none when what it saves (lambda * SSE at
        the inter lambda) is not worth MOTION_CHANGE_BITS."""
        valid, one = self._valid, 1 << MOTION_BITS
        target = (x - self._shift(self.offset)).mean(1)[0]
        ref = self.canvas.mean(1)[0] * tone_scale(self.tone)
        margin = MOTION_SEARCH + 2  # pixels left out at the frame's edges (moved from beyond it)
        inner = torch.zeros_like(valid)
        inner[margin:-margin, margin:-margin] = valid[margin:-margin, margin:-margin]
        if not inner.any():
            return (0, 0)

        def sse(motion: tuple[int, int], a=ref, b=target, w=inner) -> float:
            return float((((glide(a, motion) / one**2 - b) ** 2) * w).sum())

        small = [F.avg_pool2d(v[None, None], 4)[0, 0] for v in (ref, target, inner)]  # (motion / 4 there)
        reach = range(-MOTION_SEARCH // 4, MOTION_SEARCH // 4 + 1)
        best = min(((dy * 4 * one, dx * 4 * one) for dy in reach for dx in reach),
                   key=lambda d: sse(((self.motion[0] + d[0]) // 4, (self.motion[1] + d[1]) // 4), *small))
        for step in (2 * one, one, one // 2, one // 4, one // 8):
            around = [(best[0] + dy * step, best[1] + dx * step) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            best = min(around, key=lambda d: sse(_moved(self.motion, d)))
        best = _byte_change(best, self.motion, MOTION_LIMIT)
        saved = sse(self.motion) - sse(_moved(self.motion, best))
        worth = self._lambda * 3 * saved > MOTION_CHANGE_BITS
        return best if worth and any(best) else (0, 0)

    def _choose(self, x: torch.Tensor, z_bits: float, options: dict
                ) -> tuple[InterMode, bool, np.ndarray, Moves, torch.Tensor | None, float]:
        """(mode, z copied, skip flags, moved blocks, coded synthesis or None, cost) of an inter frame:
        for each temporal prior the option (context, z) of fewest estimated bits; among the priors, with
        skipped blocks enabled, the one of least rate + lambda * SSE once its blocks are skipped where
        that pays (the priors round the latent around different means, so their distortions
        differ), else the one of fewest bits (the cost: those bits). z_bits: the estimated bits of
        the frame's own z."""
        best: dict[int | None, tuple[InterMode, bool]] = {}
        for key, (bits, *_) in options.items():
            if key[0].prior not in best or bits < options[best[key[0].prior]][0]:
                best[key[0].prior] = key
        if self.synthesis is None:
            mode, z_copied = min(best.values(), key=lambda key: options[key][0])
            skip = np.zeros(self.blocks, dtype=bool)
            return mode, z_copied, skip, Moves(np.zeros(1, np.int64)), None, options[mode, z_copied][0]
        if None in best and len(best) > 1 and options[best[None]][0] >= min(
                options[key][0] for prior, key in best.items() if prior is not None):
            del best[None]  # no prior and more bits: it rounds farther from the latent too (a synthesis less)
        choices = {}
        for key in best.values():
            _, _, q, index, sym = options[key]
            choices[key] = self._choose_skips(x, q, sym, index, self._fixed_bits(*key, z_bits))
        key = min(choices, key=lambda key: choices[key][3])
        return *key, *choices[key]

    def _encode_intra(self, x: torch.Tensor, y: torch.Tensor, z_sym: torch.Tensor) -> bytes:
        """An intra frame's chunk data (z, then the y payloads slice by slice, tile by tile), with
        the encoder-side refinement of y when enabled; keeps its latent for the next frame."""
        if self.intra_refine:
            hyper = _hyper(self.im, z_sym).double() * 2.0**-ACT_BITS
            with torch.inference_mode(False):  # (gradients through the synthesis)
                y = _refine(self.model.info.path, self.im, x, y, hyper, self.params.quality_fx,
                            self.intra_refine, None)
        payloads: list[bytes] = []
        q, self.latent = self._intra(z_sym, _slice_encoder(self.im, y, self.tiles, payloads))
        self.z_sym = z_sym
        if self.synthesis is not None:
            self.recon = self.canvas = self._synthesize(q)
        return pack_frame(self._code_z(z_sym), payloads)

    def _refine_inter(self, x: torch.Tensor, y: torch.Tensor, z_bits: float, options: dict,
                      mode: InterMode, z_copied: bool, skip: np.ndarray) -> torch.Tensor:
        """y refined (as intra latents are) under the entropy parameters of the chosen `mode` and z,
        over the rectangle of latents around the blocks `skip` codes (with a margin of context);
        `options`' entries of that mode are re-estimated for the refined y in place."""
        rows, cols = np.nonzero(~skip)
        block = self._block(skip)
        box = (block * int(rows.min()), min(block * (int(rows.max()) + 1), y.shape[2]),
               block * int(cols.min()), min(block * (int(cols.max()) + 1), y.shape[3]))
        hyper = options[mode, z_copied][1].double() * 2.0**-ACT_BITS
        with torch.inference_mode(False):  # (gradients through the synthesis)
            y = _refine(self.model.info.path, self.im, x, y, hyper, self.params.quality_fx, self.refine, None,
                        context=mode.context, region=box)
        for copied in (False, True):
            if (mode, copied) in options:
                params = options[mode, copied][1]
                q, index, sym = self._estimate(y, params, mode)
                bits = self._y_bits(sym, index) + self._fixed_bits(mode, copied, z_bits)
                options[mode, copied] = (bits, params, q, index, sym)
        return y

    def _options(self, y: torch.Tensor, z_sym: torch.Tensor, z_bits: float
                 ) -> dict[tuple[InterMode, bool], tuple]:
        """Every way the encoder weighs to code the inter frame whose scaled latent is y and rounded
        hyper latent z_sym (of `z_bits` estimated bits): each mode, with its own z or (with skipped
        blocks enabled) the last coded one, mapped to (estimated bits over the whole frame,
        `_params`' output, then `_estimate`'s tensors)."""
        options = {}
        for copied in (False, True)[: 1 + (self.synthesis is not None)]:
            params: dict[int | None, torch.Tensor] = {}  # h_s (and P) once per z and prior
            for mode in self._modes():
                option = self._option(y, self.z_sym if copied else z_sym, mode, params)
                options[mode, copied] = (option[0] + self._fixed_bits(mode, copied, z_bits), *option[1:])
        return options

    def _option(self, y: torch.Tensor, z_sym: torch.Tensor, mode: InterMode, params: dict) -> tuple:
        """(estimated bits of the symbols, `_params`' output, then `_estimate`'s tensors) of y coded in
        `mode` with z_sym (`params`: `_params`' outputs for z_sym so far, by prior)."""
        if mode.prior not in params:
            params[mode.prior] = self._params(z_sym, mode.prior)
        q, index, sym = self._estimate(y, params[mode.prior], mode)
        return (self._y_bits(sym, index), params[mode.prior], q, index, sym)

    def _z_blocks(self, skip: np.ndarray) -> np.ndarray:
        """Of skip flags `skip`, the 64x64 blocks (z positions) with a coded position."""
        h, w = self.blocks
        return (~self._fine(skip)).reshape(h, 2, w, 2).any((1, 3))

    def _partial_z(self, z_sym: torch.Tensor, blocks: np.ndarray | None) -> torch.Tensor:
        """The last coded z with z_sym's symbols at `blocks` (all blocks if None)."""
        if blocks is None:
            return z_sym
        mask = torch.from_numpy(blocks)
        z = self.z_sym.clone()
        z[..., mask] = z_sym[..., mask]
        return z

    @staticmethod
    def _z_at(z_sym: torch.Tensor, blocks: np.ndarray | None) -> torch.Tensor:
        """z's symbols [1, channels, ...] at `blocks` (all if None), position by position row-major."""
        return z_sym if blocks is None else z_sym[..., torch.from_numpy(blocks)]

    def _z_bits(self, z_sym: torch.Tensor, blocks: np.ndarray | None = None) -> float:
        """Estimated bits of z's payload (its symbols at `blocks`, all if None, and `PAYLOAD_BITS`)."""
        z = self._z_at(z_sym, blocks)
        bits = coder.cost_bits(z.numpy().ravel(), _z_index(z), self.im.z_tables)
        return float(bits.sum()) + PAYLOAD_BITS

    def _fixed_bits(self, mode: InterMode, z_copied: bool, z_bits: float) -> float:
        """Estimated bits an inter frame in `mode` that codes any block spends besides its symbols: the
        framing of its y payloads (one per tile, and per slice with the channel context) and, unless
        copied, z's payload (of `z_bits`)."""
        return PAYLOAD_BITS * self._y_payloads(mode) + (0 if z_copied else z_bits)

    def _y_payloads(self, mode: InterMode) -> int:
        """How many y payloads an inter frame in `mode` holds: one per tile, and per slice with the
        channel context (SPEC 7.2)."""
        return len(self.tiles) * (self.im.cfg.context_slices if mode.context else 1)

    def _y_bits(self, sym: torch.Tensor, index: torch.Tensor, keep: torch.Tensor | None = None) -> float:
        """Estimated bits of the symbols (at positions `keep`, if given)."""
        if keep is not None:
            sym, index = sym[..., keep], index[..., keep]
        return float(coder.cost_bits(sym.numpy(), index.long().numpy(), self.im.y_tables).sum())

    def _code_z(self, z_sym: torch.Tensor, blocks: np.ndarray | None = None) -> bytes:
        """z's payload: its symbols at `blocks` (all if None), channel by channel."""
        z = self._z_at(z_sym, blocks)
        return coder.encode(z.numpy(), _z_index(z), self.im.z_tables)

    def decode(self, kind: bytes, data: bytes, t: int, synthesize: bool = True) -> np.ndarray | None:
        """Frame t's RGB pixels (H, W, 3) uint8 from its chunk (type `kind`, `data`);
        synthesize=False only updates the latent and the held blocks (and drops the picture a later
        frame's moved blocks would need, unless blocks are held)."""
        p, im = self.geometry, self.im
        hp, wp = p.padded
        skip, z_copied, mode = np.zeros(self.blocks, dtype=bool), False, InterMode()
        change, glided, toned = (0, 0, 0), (0, 0), 0
        if kind == CHUNK_INTRA_TONED:
            if not data:
                raise VideoError(f"frame {t}: a DFRM chunk without its tone")
            toned, data = data[0], data[1:]
        if kind in (CHUNK_INTER, *MAPPED_CHUNKS):
            head, data = _payloads(data, 1, t, rest=True)
            skip, z_copied, mode, change, glided, toned = unpack_skip_map(head, self.blocks, t,
                                                                          kind == CHUNK_TONED)
        skipped = self._fine(skip)
        kinds = np.where(skipped & self.held, KEEP, COPY)
        vectors = np.zeros((*quarters(skipped).shape, 2), np.int64)  # (of the 16x16 quarters)
        move_map = b""
        if kind in MAPPED_CHUNKS:
            move_map, data = _payloads(data, 1, t, rest=True)
        if move_map or kind == CHUNK_MOVED:  # (an HFRM's map may be empty: none; an MFRM's may not)
            if self.canvas is None:
                raise VideoError(f"frame {t}: moved blocks need the previous frame's picture")
            alphabet = MOVED_KINDS if kind == CHUNK_MOVED else HELD_KINDS
            kinds, vectors = unpack_move_map(move_map, skipped, t, self.held, alphabet)
        previous, self.held = self.canvas, (kinds != COPY) & (kind != CHUNK_MOVED)
        intra = kind in INTRA_CHUNKS
        offset = (0, 0, 0) if intra else _moved(self.offset, change)
        motion = (0, 0) if intra else _moved(self.motion, glided)
        tone = toned if intra else self.tone + toned
        if not 0 <= tone <= TONE_LIMIT:
            raise VideoError(f"frame {t}: tone {tone} outside 0..{TONE_LIMIT}")
        if max(map(abs, offset)) > OFFSET_LIMIT:
            raise VideoError(f"frame {t}: brightness offset {offset} beyond +-{OFFSET_LIMIT}")
        if max(map(abs, motion)) > MOTION_LIMIT:
            raise VideoError(f"frame {t}: global motion {motion} beyond +-{MOTION_LIMIT}")
        if skip.all():
            _payloads(data, 0, t)  # nothing may follow
            q, latent = self.latent.long(), self.latent
        elif intra:
            q, latent = self._decode_intra(data, t)
        else:
            z_blocks = self._z_blocks(skip) if kind in HELD_CHUNKS else None
            q, latent = self._decode_inter(data, t, ~self._positions(skip), z_copied, mode, z_blocks)
        y_hat = (q * self.inv >> GAIN_BITS).clamp_(-int(ACT_LIMIT), int(ACT_LIMIT)).int()
        self.latent, self.offset, self.motion, self.tone = latent, offset, motion, tone
        if not synthesize and not self.held.any():
            self._shown = self.canvas = None
            return None
        if self._shown is None or not torch.equal(self._shown[0], y_hat):  # (else: same latents, same g_s)
            synth = torch.empty(1, 3, hp, wp, dtype=torch.int16)
            run_tiled(lambda v: im.g_s(v.double()).clamp_(-(2**15), 2**15 - 1), y_hat, 16, tile=24,
                      margin=im.synthesis_margin, out=synth)
            self._shown = (y_hat, synth)
        self.canvas = self._shown[1]
        if (kinds != COPY).any():
            block = 16 * FINE_BLOCK
            shifted = previous  # (kept blocks only: moved by nothing)
            if vectors.any():
                moved = move_blocks(previous, torch.from_numpy(vectors), block // 2)
                shifted = ((moved + 8) >> 2 * MOVE_BITS).short()
            shown = per_pixel(torch.from_numpy(kinds != COPY), block, (hp, wp))
            self.canvas = torch.where(shown, shifted, self.canvas)
        return self._pixels(self.canvas, offset, motion, tone) if synthesize else None

    def _pixels(self, synth: torch.Tensor, offset: tuple[int, ...], motion: tuple[int, int],
                tone: int = 0) -> np.ndarray:
        """RGB pixels (H, W, 3) uint8 of g_s's output `synth` [1, 3, H', W'] (padded; int16) moved by
        the global `motion` (`glide`), scaled by the `tone` and raised by the brightness `offset`
        (SPEC 5.5 step 4, 7.4 step 4), in integer arithmetic (below 2^53: 4^3 * 2^15 * 255 * 2^16
        plus the rounding and the offset)."""
        p = self.geometry
        fixed = ACT_BITS + 2 * MOTION_BITS  # the fractional bits of glide's sums
        octaves, mantissa = divmod(tone, TONE_STEPS)
        scale = 16 + octaves  # the tone's
        rgb = np.empty((p.height, p.width, 3), np.uint8)
        for c in range(3):
            add = ((1 << (fixed - 1)) + (offset[c] << (fixed - OFFSET_BITS))) << scale
            x = glide(synth[0, c].long(), motion)[: p.height, : p.width] * (255 * TONE_MANTISSAS[mantissa])
            x += add
            rgb[..., c] = (x >> (fixed + scale)).clamp_(0, 255).numpy()
        return rgb

    def _decode_intra(self, data: bytes, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(q [int64], latent [int32]) of an intra frame's chunk data."""
        slices = max(self.im.cfg.context_slices, 1)
        z_payload, y_payloads = unpack_frame(data, slices * len(self.tiles), t)
        try:
            self.z_sym = self._decode_z(z_payload)
            return self._intra(self.z_sym, _slice_decoder(self.im, self.tiles, iter(y_payloads)))
        except coder.DecodeError as err:
            raise VideoError(f"frame {t}: {err}") from None

    def _decode_z(self, payload: bytes, blocks: np.ndarray | None = None) -> torch.Tensor:
        """z from its payload (`_code_z`): its symbols at `blocks`, the last z's elsewhere (None: all)."""
        hp, wp = self.geometry.padded
        z_sym = torch.zeros((1, self.im.cfg.n, hp // 64, wp // 64), dtype=torch.long)
        if blocks is not None:
            z_sym = self.z_sym.clone()
        z = torch.zeros_like(self._z_at(z_sym, blocks))
        z.view(-1)[:] = torch.from_numpy(coder.decode(payload, _z_index(z), self.im.z_tables))
        if blocks is None:
            return z
        z_sym[..., torch.from_numpy(blocks)] = z
        return z_sym

    def _decode_inter(self, data: bytes, t: int, keep: torch.Tensor, z_copied: bool, mode: InterMode,
                      z_blocks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(q [int64], latent [int32]) of an inter frame with coded symbols at positions `keep`; the
        other positions copy the previous latent. z_copied: the chunk holds no z, the last one serves;
        z_blocks: it holds z at these blocks only (`_decode_z`)."""
        if mode.context and not self.im.context:
            raise VideoError(f"frame {t}: coded with a channel context, which model "
                             f"{self.model.info.model_id} lacks")
        if mode.prior is not None and mode.prior >= len(self.model.priors):
            raise VideoError(f"frame {t}: coded with temporal prior {mode.prior + 1}; model "
                             f"{self.model.info.model_id} has {len(self.model.priors)}")
        count = self._y_payloads(mode)
        if z_copied:
            y_payloads = _payloads(data, count, t)
        else:
            z_payload, y_payloads = unpack_frame(data, count, t)
        try:
            if not z_copied:
                self.z_sym = self._decode_z(z_payload, z_blocks)
            hyper = self._params(self.z_sym, mode.prior)
            code = _slice_decoder(self.im, self.tiles, iter(y_payloads), keep, self.latent)
            q = self._walk(hyper, mode, code)
        except coder.DecodeError as err:
            raise VideoError(f"frame {t}: {err}") from None
        return q, q.clamp(-int(ACT_LIMIT), int(ACT_LIMIT)).int()


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

    Memory stays constant: one frame and the previous frame's latent and picture. `frames`, when
    known, is written in HEAD and checked at `close`; without it the stream must be seekable and
    readable (a file opened "w+b", a BytesIO): HEAD is rewritten with the count at `close`.
    """

    def __init__(self, stream: BinaryIO, width: int, height: int, frame_rate, quality: float = 4.0,
                 gop: int = DEFAULT_GOP, model_id: str | None = None, frames: int | None = None,
                 skip_blocks: bool = True, refine: int | None = None):
        info = _model_info(model_id)
        self.model = _load(info)
        levels = self.model.cfg.levels
        if not 1 <= quality <= levels:
            raise VideoError(f"quality must be within 1..{levels}, got {quality}")
        if not isinstance(gop, int) or not 1 <= gop <= MAX_GOP:
            raise VideoError(f"GOP must be an integer within 1..{MAX_GOP}, got {gop}")
        try:  # frames are refined as images of the frame size are, intra frames longer by default
            intra_refine = refine_steps(refine, int(width), int(height), DEFAULT_INTRA_REFINE)
            refine = refine_steps(refine, int(width), int(height))
        except ImageError as err:
            raise VideoError(str(err)) from None
        rate = _frame_rate(frame_rate)
        self.params = VideoParams(int(width), int(height), rate.numerator, rate.denominator, frames or 0,
                                  gop, round((quality - 1) * QUALITY_STEPS))
        self.params.validate(levels, frames_known=frames is not None)
        self._info, self._declared = info, frames
        self._header = ct.Header(ct.Modality.VIDEO, info.model_id, info.weights_hash, self.params.pack())
        self._writer = ct.ContainerWriter(stream, self._header)
        synthesis = None
        if skip_blocks:
            from .image_refine import float_model

            synthesis = float_model(info.path).g_s
        self._coder = FrameCoder(self.model, self.params, synthesis, refine, intra_refine)
        self._seek: list[tuple[int, int]] = []
        self._audio = False
        self.frames = 0  # written so far
        self.bytes = self._writer.position

    def write(self, rgb: np.ndarray) -> ct.Chunk:
        """Encode the next frame; returns its chunk (type and data, what FrameCoder.decode takes)."""
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
        kind, data = self._coder.encode(rgb, intra)
        offset = self._writer.add(kind, data)
        if intra:
            self._seek.append((self.frames, offset))
        self.frames += 1
        self.bytes = self._writer.position
        return ct.Chunk(kind, data, offset)

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
                 model_id: str | None = None, skip_blocks: bool = True,
                 refine: int | None = None) -> bytes:
    """Compress RGB frames (H, W, 3) uint8 at `frame_rate` to .ncz bytes.

    skip_blocks=False codes every block of every inter frame (no copies from the previous frame);
    refine: latent refinement steps of intra frames and of inter frames that code blocks (0: off;
    None: as images of the frame size, DEFAULT_INTRA_REFINE for intra frames).
    """
    buf = io.BytesIO()
    enc = None
    for rgb in frames:
        if enc is None:
            rgb = np.asarray(rgb)
            if rgb.ndim != 3:
                raise VideoError(f"frames must be (H, W, 3) uint8 arrays, got shape {rgb.shape}")
            enc = VideoEncoder(buf, rgb.shape[1], rgb.shape[0], frame_rate, quality, gop, model_id,
                               skip_blocks=skip_blocks, refine=refine)
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
            want = INTRA_CHUNKS if p.intra(t) else INTER_CHUNKS
            if ref.type not in want:
                raise VideoError(f"frame {t} is a {ref.type.decode()} chunk; with GOP {p.gop} it must be "
                                 f"{' or '.join(w.decode() for w in want)}")
        self._types = [r.type for r in frames]
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
        key = self.key_frame(a)
        # frames before `a` are synthesized only for the moved blocks of a later frame up to `a` (and
        # where blocks are held: the decoder sees to that)
        moving = max((t for t in range(key, a + 1) if self._types[t] in MAPPED_CHUNKS), default=key)
        for t in range(key, b):
            ref = ct.ChunkRef(self._types[t], int(self._offsets[t]), int(self._lengths[t]))
            data = ct.read_chunk(self._stream, ref, self._base)
            rgb = coder_.decode(ref.type, data, t, synthesize=t >= a or t < moving)
            if t >= a:
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
