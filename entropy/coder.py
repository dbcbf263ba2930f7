"""Range coding of integer symbols with integer probability tables (constriction).

Every symbol carries a table index. Symbols are coded in groups, one group per table in
ascending table order, so each group is one vectorized call with one model. Values outside a
table's range are coded as that table's escape bin, followed (after all groups) by their
zig-zag value in 16-bit pieces under a uniform model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import constriction
import numpy as np

_model = constriction.stream.model
_ESCAPE_BITS = 64  # escape value bit-lengths are coded over 0..63


class DecodeError(ValueError):
    """The payload is not a valid range-coded stream for these tables."""


@dataclass
class TableSet:
    """Integer tables: row t has bins for values offsets[t] .. offsets[t]+sizes[t]-1, then escape.

    counts: [T, W] integer counts (>= 1 in the used bins); sizes, offsets: [T].
    """

    counts: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    _models: dict = field(default_factory=dict, repr=False, compare=False)
    totals: np.ndarray = field(init=False, repr=False, compare=False)  # [T] sum of the used bins

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.sizes = np.asarray(self.sizes, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        t = len(self.counts)
        if self.sizes.shape != (t,) or self.offsets.shape != (t,):
            raise ValueError("sizes and offsets need one entry per table")
        if (self.sizes < 1).any() or (self.sizes + 1 > self.counts.shape[1]).any():
            raise ValueError("table sizes do not fit the count rows")
        used = np.arange(self.counts.shape[1]) <= self.sizes[:, None]
        if (self.counts[used] < 1).any():
            raise ValueError("every used bin needs a count >= 1")
        self.totals = np.where(used, self.counts, 0).sum(1)

    def __len__(self) -> int:
        return len(self.counts)

    def model(self, t: int):
        if t not in self._models:
            row = self.counts[t, : self.sizes[t] + 1].astype(np.float64)
            self._models[t] = _model.Categorical(row, perfect=False)
        return self._models[t]


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def _groups(index: np.ndarray, num_tables: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of positions grouped by table, and the group boundaries."""
    if index.size and (index.min() < 0 or index.max() >= num_tables):
        raise ValueError("table index out of range")
    if num_tables > 1 << 16:
        raise ValueError("at most 65536 tables")
    narrow = index.astype(np.uint8 if num_tables <= 256 else np.uint16)  # radix sort in numpy
    order = np.argsort(narrow, kind="stable")
    bounds = np.searchsorted(narrow[order], np.arange(num_tables + 1))
    return order, bounds


def encode(symbols: np.ndarray, index: np.ndarray, tables: TableSet) -> bytes:
    """Range-code integer symbols, symbol i with table index[i]. Returns the payload."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    index = np.asarray(index, dtype=np.int64).ravel()
    if symbols.shape != index.shape:
        raise ValueError("symbols and index must have the same length")
    order, bounds = _groups(index, len(tables))
    enc = constriction.stream.queue.RangeEncoder()
    escaped = []
    for t in range(len(tables)):
        pos = order[bounds[t] : bounds[t + 1]]
        if not pos.size:
            continue
        rel = symbols[pos] - tables.offsets[t]
        out = (rel < 0) | (rel >= tables.sizes[t])
        rel[out] = tables.sizes[t]
        enc.encode(rel.astype(np.int32), tables.model(t))
        escaped.append(symbols[pos][out])
    _encode_escapes(enc, np.concatenate(escaped) if escaped else np.zeros(0, np.int64))
    return enc.get_compressed().astype("<u4").tobytes()


def cost_bits(symbols: np.ndarray, index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Ideal code length in bits of each symbol (what `encode` spends on it, up to rounding).

    An escaped value costs its escape bin plus the bits of its bit-length and 16-bit pieces.
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    rel = symbols - tables.offsets[index]
    sizes = tables.sizes[index]
    out = (rel < 0) | (rel >= sizes)
    bits = np.log2(tables.totals[index] / tables.counts[index, np.where(out, sizes, rel)])
    if out.any():
        length = np.array([int(v).bit_length() for v in _zigzag(symbols[out])])
        bits[out] += math.log2(_ESCAPE_BITS) + 16 * -(-length // 16)
    return bits


def decode(payload: bytes, index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of `encode` given the same index array; raises DecodeError on bad payloads."""
    index = np.asarray(index, dtype=np.int64).ravel()
    if len(payload) % 4:
        raise DecodeError("range-coded payload length is not a multiple of 4")
    order, bounds = _groups(index, len(tables))
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    symbols = np.empty(index.size, dtype=np.int64)
    escape_pos = []
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        for t in range(len(tables)):
            pos = order[bounds[t] : bounds[t + 1]]
            if not pos.size:
                continue
            rel = dec.decode(tables.model(t), pos.size).astype(np.int64)
            symbols[pos] = rel + tables.offsets[t]
            escape_pos.append(pos[rel == tables.sizes[t]])
        pos = np.concatenate(escape_pos) if escape_pos else np.zeros(0, np.int64)
        symbols[pos] = _decode_escapes(dec, pos.size)
    except DecodeError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # constriction reports bad data as AssertionError or a panic
        raise DecodeError(f"invalid range-coded payload ({type(err).__name__})") from None
    return symbols


def _encode_escapes(enc, values: np.ndarray) -> None:
    if not values.size:
        return
    if np.abs(values).max() > 1 << 62:
        raise ValueError("symbol magnitude above 2**62 cannot be coded")
    u = _zigzag(values)
    nbits = np.array([int(x).bit_length() for x in u], dtype=np.int32)
    enc.encode(nbits, _model.Uniform(_ESCAPE_BITS))
    pieces = [(int(x) >> s) & 0xFFFF for x, n in zip(u, nbits, strict=True) for s in range(0, int(n), 16)]
    if pieces:
        enc.encode(np.array(pieces, dtype=np.int32), _model.Uniform(1 << 16))


def _decode_escapes(dec, count: int) -> np.ndarray:
    if not count:
        return np.zeros(0, np.int64)
    nbits = dec.decode(_model.Uniform(_ESCAPE_BITS), count).astype(np.int64)
    npieces = (nbits + 15) // 16
    pieces = dec.decode(_model.Uniform(1 << 16), int(npieces.sum())).tolist()
    values, k = [], 0
    for n in npieces.tolist():
        values.append(sum(pieces[k + j] << (16 * j) for j in range(n)) & ((1 << 63) - 1))
        k += n
    return _unzigzag(np.array(values, dtype=np.uint64))
