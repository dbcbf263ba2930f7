"""Moved blocks of inter frames (SPEC 7.2, 7.4): 32x32-pixel blocks shown from the previous frame's
picture, kept or moved by a vector of their own (1/4 pixels, bilinear in integers), and their move map.

A skipped block copies the previous frame's latent (its pixels are then g_s's output for the
frame, as in a frame without a move map), keeps the previous frame's picture (before the global
motion and the brightness offset), or shows that picture moved by its vector: what lets a hand or
a head that moves be shown for a vector's bits instead of a block of new latents; a block may also be
split into 16x16 quarters moved by four vectors (what deforms: a hand). A block an HFRM chunk keeps
or moves is *held*: later frames that skip it keep it without a move map.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from ncodec.entropy import coder

from .video_io import VideoError

MOVE_BITS = 2  # vectors are in units of 2^-MOVE_BITS pixels (down, right)
MOVE_LIMIT = 256  # the largest |component| of a vector (64 pixels)
MOVE_RANGE = 64  # components within +-MOVE_RANGE have a bin of their own; farther ones escape
MOVE_SEARCH = 16  # pixels: the largest whole-pixel vector the encoder looks for
COPY, KEEP, MOVE, SPLIT = 0, 1, 2, 3  # what a skipped block of a move map shows: the latent, the
# picture, the picture moved, or moved by a vector per 16x16 quarter
HELD_KINDS, MOVED_KINDS = 4, 3  # the kinds an HFRM chunk's move map may name, and an MFRM's
_U32 = struct.Struct(">I")


def _vector_tables() -> coder.TableSet:
    """One table for a vector component v (-MOVE_RANGE..MOVE_RANGE): counts 4096 // (1 + |v|), then
    an escape of count 1 (SPEC 7.2)."""
    v = np.arange(-MOVE_RANGE, MOVE_RANGE + 1)
    counts = np.append(4096 // (1 + np.abs(v)), 1)
    return coder.TableSet(counts[None], np.array([v.size]), np.array([-MOVE_RANGE]))


VECTOR_TABLES = _vector_tables()


@dataclass(frozen=True)
class Moves:
    """An inter frame's kept and moved blocks (encoder): COPY, KEEP, MOVE or SPLIT over the 32x32-pixel
    blocks, the vectors of their 16x16 quarters, and the previous picture with every quarter moved by
    its vector (float, padded frame)."""

    kinds: np.ndarray
    vectors: np.ndarray | None = None
    picture: torch.Tensor | None = None
    mapped: bool = False  # whether the frame needs a move map (else: held blocks kept, others copied)

    def any(self) -> bool:
        """Whether a block keeps or moves the picture."""
        return bool((self.kinds != COPY).any())


def kind_symbols(kinds: np.ndarray, held: np.ndarray) -> np.ndarray:
    """A move map's symbols of `kinds` (or the kinds of symbols: the map is its own inverse): 0 shows a
    block as a frame without a map would (kept if `held`, else copied), 1 the other of the two, 2
    moves it, 3 moves its quarters."""
    swap = held & (kinds <= KEEP)
    return np.where(swap, KEEP - kinds, kinds)


def symbol_tables(counts: Iterable[int]) -> coder.TableSet:
    """One table of the symbols 0, 1, ... with these counts, then an escape of count 1 (never written:
    skip flags, a move map's kinds)."""
    counts = list(counts)
    return coder.TableSet(np.array([[*counts, 1]]), np.array([len(counts)]), np.array([0]))


def block_sums(a: torch.Tensor, block: int) -> torch.Tensor:
    """Sums of a [H, W] tensor over block x block squares (zero-extended at the far edges)."""
    h, w = a.shape
    a = F.pad(a, (0, -w % block, 0, -h % block))
    return a.view(a.shape[0] // block, block, a.shape[1] // block, block).sum((1, 3))


def per_pixel(a: torch.Tensor, block: int, shape: tuple[int, int]) -> torch.Tensor:
    """Per-block values [bh, bw, ...] repeated over their block x block pixels, cropped to `shape`."""
    return a.repeat_interleave(block, 0).repeat_interleave(block, 1)[: shape[0], : shape[1]]


def move_blocks(a: torch.Tensor, vectors: torch.Tensor, block: int) -> torch.Tensor:
    """`a` [..., H, W] with each block x block square shown from `a` moved by its vector
    (`vectors` [H / block, W / block, 2], down and right in 1/4 pixels): output (i, j) is `a` at
    (i + v_y / 4, j + v_x / 4), bilinear between the four nearest samples (coordinates clamped to the
    array) with integer weights that sum to 16, the sum left unnormalized (exact for integer `a`)."""
    h, w = a.shape[-2:]
    one = 1 << MOVE_BITS
    v = per_pixel(vectors.long(), block, (h, w))
    whole = torch.div(v, one, rounding_mode="floor")
    part = v - whole * one
    rows = torch.arange(h)[:, None] + whole[..., 0]
    cols = torch.arange(w)[None, :] + whole[..., 1]
    r0, r1 = rows.clamp(0, h - 1), (rows + 1).clamp(0, h - 1)
    c0, c1 = cols.clamp(0, w - 1), (cols + 1).clamp(0, w - 1)
    py, px = part[..., 0], part[..., 1]
    if not a.is_floating_point():
        a = a.long()
    else:
        py, px = py.to(a.dtype), px.to(a.dtype)
    return ((one - py) * ((one - px) * a[..., r0, c0] + px * a[..., r0, c1])
            + py * ((one - px) * a[..., r1, c0] + px * a[..., r1, c1]))


def vector_bits(vectors: torch.Tensor, zero_free: bool = True) -> torch.Tensor:
    """Estimated bits [...] of each vector [..., 2] (zero_free: none for a zero vector, which keeps
    a whole block)."""
    v = vectors.numpy()
    bits = coder.cost_bits(v, np.zeros_like(v), VECTOR_TABLES).sum(-1)
    return torch.from_numpy(bits * v.any(-1) if zero_free else bits)


def _least_move_bits() -> float:
    """The bits of the cheapest vector that moves a block (one quarter pixel)."""
    return float(vector_bits(torch.tensor([[0, 1], [1, 0], [0, -1], [-1, 0]])).min())


LEAST_MOVE_BITS = _least_move_bits()  # a block kept for less never pays a move's bits


def quarters(a: np.ndarray) -> np.ndarray:
    """Per-block values [H, W, ...] repeated over the blocks' 2x2 quarters: [2H, 2W, ...]."""
    return np.repeat(np.repeat(a, 2, 0), 2, 1)


def _vector_slots(kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The quarters whose vectors a move map holds, in its order: (rows, columns) over the quarters.
    Blocks row-major; a moved block's vector once (its first quarter's), a split block's four
    quarters row-major."""
    i, j = np.nonzero(kinds >= MOVE)
    n = np.where(kinds[i, j] == SPLIT, 4, 1)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return 2 * np.repeat(i, n) + k // 2, 2 * np.repeat(j, n) + k % 2


def pack_move_map(kinds: np.ndarray, skipped: np.ndarray, vectors: np.ndarray,
                  held: np.ndarray | None = None, alphabet: int = HELD_KINDS) -> bytes:
    """An HFRM chunk's move map (alphabet MOVED_KINDS: an MFRM's): u8 counts of the symbols 0 ..
    alphabet - 1 (1..255, in proportion to their use), u32 length and the range-coded symbols of the
    `skipped` blocks' kinds (`kind_symbols` with the blocks `held` before the frame), then the
    vectors' components, range-coded (`_vector_slots`' order; down, then right). `kinds`, `skipped`
    and `held` are over the 32x32-pixel blocks, `vectors` over their 16x16 quarters."""
    held = np.zeros_like(skipped) if held is None else held
    coded = kind_symbols(kinds, held)[skipped].astype(np.int64)
    use = np.bincount(coded, minlength=alphabet)
    counts = bytes(min(max(round(255 * n / coded.size), 1), 255) for n in use)
    payload = coder.encode(coded, np.zeros_like(coded), symbol_tables(counts))
    v = vectors[_vector_slots(kinds)].astype(np.int64).ravel()
    return counts + _U32.pack(len(payload)) + payload + coder.encode(v, np.zeros_like(v), VECTOR_TABLES)


def unpack_move_map(data: bytes, skipped: np.ndarray, t: int, held: np.ndarray | None = None,
                    alphabet: int = HELD_KINDS) -> tuple[np.ndarray, np.ndarray]:
    """(kinds over the 32x32-pixel blocks, vectors [.., .., 2] over their 16x16 quarters) from a move
    map (`pack_move_map`), checked: some symbol not 0 (the map changes what the frame shows), every
    vector component within +-MOVE_LIMIT."""
    start = alphabet + _U32.size
    if len(data) < start or not all(data[:alphabet]):
        raise VideoError(f"frame {t}: invalid move map")
    (n,) = _U32.unpack_from(data, alphabet)
    if n > len(data) - start:
        raise VideoError(f"frame {t}: move map kinds claim {n} bytes, {len(data) - start} remain")
    try:
        coded = coder.decode(data[start : start + n], np.zeros(int(skipped.sum()), np.int64),
                             symbol_tables(data[:alphabet]))
        if (coded >= alphabet).any():
            raise VideoError(f"frame {t}: move map holds symbols beyond {alphabet - 1}")
        if not coded.any():
            raise VideoError(f"frame {t}: move map changes no block")
        symbols = np.zeros(skipped.shape, np.int64)
        symbols[skipped] = coded
        kinds = kind_symbols(symbols, np.zeros_like(skipped) if held is None else held & skipped)
        slots = _vector_slots(kinds)
        v = coder.decode(data[start + n :], np.zeros(2 * slots[0].size, np.int64), VECTOR_TABLES)
    except coder.DecodeError as err:
        raise VideoError(f"frame {t}: move map: {err}") from None
    if v.size and np.abs(v).max() > MOVE_LIMIT:
        raise VideoError(f"frame {t}: a block's vector is beyond +-{MOVE_LIMIT} (1/4 pixels)")
    vectors = np.zeros((2 * skipped.shape[0], 2 * skipped.shape[1], 2), np.int64)
    vectors[slots] = v.reshape(-1, 2)
    whole = quarters(kinds == MOVE)  # (a moved block's vector holds for its four quarters)
    vectors[whole] = quarters(vectors[::2, ::2])[whole]
    return kinds, vectors


def _blocks(a: torch.Tensor, block: int, margin: int = 0) -> torch.Tensor:
    """The block x block squares of a [C, H, W] (H, W multiples of block), each with `margin` pixels
    of its surroundings (the edges repeated beyond a): [blocks, C, block + 2 margin, ...], row-major."""
    if margin:
        a = F.pad(a[None], (margin,) * 4, mode="replicate")[0]
    size = block + 2 * margin
    tiles = a.unfold(1, size, block).unfold(2, size, block)  # [C, bh, bw, size, size]
    return tiles.permute(1, 2, 0, 3, 4).reshape(-1, a.shape[0], size, size)


def _moved_blocks(tiles: torch.Tensor, vectors: torch.Tensor, margin: int, block: int) -> torch.Tensor:
    """Each tile's centre block x block square moved by its vector (1/4 pixels, [blocks, 2]) as
    `move_blocks` moves it, normalized: [blocks, C, block * block]."""
    one = 1 << MOVE_BITS
    whole = torch.div(vectors, one, rounding_mode="floor")
    part = (vectors - whole * one).to(tiles.dtype)
    n, c, size = tiles.shape[0], tiles.shape[1], tiles.shape[2]
    at = torch.arange(block)
    rows, cols = margin + whole[:, :1] + at, margin + whole[:, 1:] + at  # [blocks, block]
    flat = tiles.reshape(n, c, size * size)
    index = (rows[:, :, None] * size + cols[:, None, :]).view(n, 1, -1).expand(n, c, block * block)

    def take(shift: int) -> torch.Tensor:
        return flat.gather(2, index + shift)

    py, px = part[:, :1, None], part[:, 1:, None]
    return ((one - py) * ((one - px) * take(0) + px * take(1))
            + py * ((one - px) * take(size) + px * take(size + 1))) / one**2


def search_moves(prev: torch.Tensor, x: torch.Tensor, valid: torch.Tensor, lam: float, block: int,
                 zero_free: bool = True, active: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block of the padded frame x [1, 3, H, W] (H, W multiples of block), the vector that shows it
    best from the previous picture `prev` (float, same shape): whole pixels on 2x smaller images up
    to MOVE_SEARCH, then the zero vector (the block kept) and 1, 1/2 and 1/4 pixels around the best,
    by lam * SSE (over `valid` pixels) plus the vector's bits (`vector_bits`). Returns (that cost
    [bh, bw], vectors [bh, bw, 2]); blocks not `active` ([bh, bw], if given) are not searched: cost
    inf, zero vectors."""
    one, (h, w) = 1 << MOVE_BITS, x.shape[-2:]
    shape = (h // block, w // block)
    if active is not None and not active.any():
        return torch.full(shape, float("inf")), torch.zeros(*shape, 2, dtype=torch.long)
    small_prev, small_x = F.avg_pool2d(prev, 2), F.avg_pool2d(x, 2)
    small_valid = F.avg_pool2d(valid[None, None], 2)[0, 0]
    reach = MOVE_SEARCH // 2
    padded = F.pad(small_prev, (reach,) * 4, mode="replicate")
    best = vectors = None
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = padded[..., reach + dy : reach + dy + h // 2, reach + dx : reach + dx + w // 2]
            sse = block_sums(((shifted - small_x) ** 2).sum((0, 1)) * small_valid, block // 2)
            if best is None:
                best, vectors = sse, torch.zeros(*sse.shape, 2, dtype=torch.long)
                continue
            better = sse < best
            best = torch.where(better, sse, best)
            vectors[better] = torch.tensor([2 * dy * one, 2 * dx * one])
    chosen = torch.ones(shape, dtype=torch.bool) if active is None else active
    chosen = chosen.reshape(-1)
    vectors = vectors.view(-1, 2)[chosen]
    margin = MOVE_SEARCH + 3  # (the refinements reach 1.75 pixels beyond the search, bilinear one more)
    tiles = _blocks(prev[0], block, margin)[chosen]
    target, weight = (_blocks(a, block).flatten(2)[chosen] for a in (x[0], valid[None]))

    def cost(candidate: torch.Tensor) -> torch.Tensor:
        sse = (((_moved_blocks(tiles, candidate, margin, block) - target) ** 2) * weight).sum((1, 2))
        return lam * sse + vector_bits(candidate, zero_free)

    c = cost(vectors)

    def consider(candidate: torch.Tensor) -> None:
        nonlocal c, vectors
        cc = cost(candidate)
        better = cc < c
        c, vectors = torch.where(better, cc, c), torch.where(better[:, None], candidate, vectors)

    consider(torch.zeros_like(vectors))  # (the block kept)
    for step in (one, one // 2, one // 4):  # around the best
        base = vectors.clone()
        for dy in (-step, 0, step):
            for dx in (-step, 0, step):
                if dy or dx:
                    consider(base + torch.tensor([dy, dx]))
    costs = torch.full(chosen.shape, float("inf"), dtype=c.dtype)
    found = torch.zeros(*chosen.shape, 2, dtype=torch.long)
    costs[chosen], found[chosen] = c, vectors
    return costs.view(shape), found.view(*shape, 2)
