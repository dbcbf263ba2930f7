"""Generic, modality-independent ncodec bitstream container, format 1.x.

Normative description: ``bitstream_spec/SPEC.md``. In short::

    file  = MAGIC chunk*            (first chunk HEAD, last chunk TAIL, nothing after TAIL)
    chunk = length:u32 | type:4 ASCII letters | data[length] | crc32(length|type|data):u32

All integers are big-endian. A chunk type whose first letter is uppercase is critical
(a reader that does not know it must refuse the file), lowercase is ancillary (skipped).
TAIL carries the CRC-32 of every byte before it, so any single-bit error is detected.

No pickle, eval or JSON is involved: every field is a fixed-width integer or raw bytes.
"""

from __future__ import annotations

import enum
import io
import re
import struct
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "MAGIC",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAX_CHUNK",
    "MAX_MODEL_ID",
    "MAX_PARAMS",
    "HEAD",
    "TAIL",
    "SEEK",
    "ContainerError",
    "Modality",
    "Header",
    "Chunk",
    "is_critical",
    "ContainerWriter",
    "write_container",
    "read_container",
    "ChunkRef",
    "scan_container",
    "read_chunk",
    "encode_seek_index",
    "decode_seek_index",
    "check_claim",
]

MAGIC = b"\x89NCZ\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
MAX_CHUNK = 1 << 30
MAX_MODEL_ID = 64
MAX_PARAMS = 4096
HASH_LEN = 32

HEAD = b"HEAD"
TAIL = b"TAIL"
SEEK = b"seek"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_U32 = struct.Struct(">I")
_SEEK_ENTRY = struct.Struct(">QQ")
_TAIL_SIZE = 16  # length(4) + type(4) + file crc(4) + chunk crc(4)
_BLOCK = 1 << 20  # bytes read at a time when a stream is checked without loading chunk data
_MODEL_ID_RE = re.compile(rb"[a-z0-9][a-z0-9._-]*")
# fixed part of HEAD before model_id: major, minor, modality, flags, model_id_len
_HEAD_FIXED = 5


class ContainerError(ValueError):
    """Malformed, corrupted, truncated or unsupported ncodec file (one-line message)."""


class Modality(enum.IntEnum):
    """Media type carried by the file (HEAD byte 2)."""

    IMAGE = 1
    AUDIO = 2
    VIDEO = 3


@dataclass(frozen=True)
class Header:
    """Decoded HEAD chunk. ``params`` is the codec-defined opaque parameter struct."""

    modality: Modality
    model_id: str
    weights_hash: bytes
    params: bytes = b""
    major: int = FORMAT_MAJOR
    minor: int = FORMAT_MINOR


@dataclass(frozen=True)
class Chunk:
    """One chunk; ``offset`` is the byte offset of its length field from the file start."""

    type: bytes
    data: bytes
    offset: int = 0


def _is_valid_type(chunk_type: bytes) -> bool:
    return (
        isinstance(chunk_type, bytes)
        and len(chunk_type) == 4
        and all(65 <= c <= 90 or 97 <= c <= 122 for c in chunk_type)
    )


def _name(chunk_type: bytes) -> str:
    """Printable chunk type for messages (valid types print as plain letters)."""
    if _is_valid_type(chunk_type):
        return chunk_type.decode("ascii")
    return repr(bytes(chunk_type))[2:-1]


def is_critical(chunk_type: bytes) -> bool:
    """True when the first letter of the type is uppercase (bit 5 clear), PNG-style."""
    if not _is_valid_type(chunk_type):
        raise ContainerError(f"invalid chunk type {bytes(chunk_type)!r}: need 4 ASCII letters")
    return 65 <= chunk_type[0] <= 90


def check_claim(name: str, value: int, limit: int) -> None:
    """Refuse a size claimed by the file before allocating for it."""
    if value < 0:
        raise ContainerError(f"{name} {value} is negative")
    if value > limit:
        raise ContainerError(f"{name} {value} exceeds limit {limit}")


def _encode_head(header: Header) -> bytes:
    """Validate ``header`` and serialise it as HEAD data."""
    if not isinstance(header.modality, int) or header.modality not in set(Modality):
        raise ContainerError(f"unknown modality {header.modality!r}")
    for field in ("major", "minor"):
        v = getattr(header, field)
        if not isinstance(v, int) or not 0 <= v <= 255:
            raise ContainerError(f"format {field} {v!r} must be an integer 0..255")
    try:
        mid = header.model_id.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ContainerError(f"invalid model id {header.model_id!r}") from None
    if not 1 <= len(mid) <= MAX_MODEL_ID or not _MODEL_ID_RE.fullmatch(mid):
        raise ContainerError(
            f"invalid model id {header.model_id!r}: need 1..{MAX_MODEL_ID} chars "
            "matching [a-z0-9][a-z0-9._-]*"
        )
    wh = bytes(header.weights_hash)
    if len(wh) != HASH_LEN:
        raise ContainerError(f"weights hash must be {HASH_LEN} bytes, got {len(wh)}")
    params = bytes(header.params)
    check_claim("HEAD params length", len(params), MAX_PARAMS)
    return b"".join(
        (
            bytes((header.major, header.minor, int(header.modality), 0, len(mid))),
            mid,
            wh,
            struct.pack(">H", len(params)),
            params,
        )
    )


def _decode_head(data: bytes) -> Header:
    """Parse HEAD data (CRC already verified). Version is checked before anything else."""
    if len(data) < 2:
        raise ContainerError(f"corrupted file: HEAD chunk too short ({len(data)} bytes)")
    major, minor = data[0], data[1]
    if major != FORMAT_MAJOR:
        raise ContainerError(
            f"file uses ncodec bitstream format {major}.{minor}; this build reads {FORMAT_MAJOR}.x"
        )
    if len(data) < _HEAD_FIXED:
        raise ContainerError(f"corrupted file: HEAD chunk too short ({len(data)} bytes)")
    modality, flags, id_len = data[2], data[3], data[4]
    if modality not in set(Modality):
        raise ContainerError(f"unsupported modality {modality} in HEAD")
    if flags != 0:
        raise ContainerError(f"unsupported HEAD flags 0x{flags:02x} (must be 0 in format 1.x)")
    if not 1 <= id_len <= MAX_MODEL_ID:
        raise ContainerError(f"corrupted file: model id length {id_len} not in 1..{MAX_MODEL_ID}")
    pos = _HEAD_FIXED
    if len(data) < pos + id_len + HASH_LEN + 2:
        raise ContainerError(f"corrupted file: HEAD chunk too short ({len(data)} bytes)")
    mid = data[pos : pos + id_len]
    if not _MODEL_ID_RE.fullmatch(mid):
        raise ContainerError(f"corrupted file: invalid model id {mid!r} in HEAD")
    pos += id_len
    weights_hash = data[pos : pos + HASH_LEN]
    pos += HASH_LEN
    (params_len,) = struct.unpack_from(">H", data, pos)
    pos += 2
    check_claim("HEAD params length", params_len, MAX_PARAMS)
    if len(data) < pos + params_len:
        raise ContainerError(
            f"corrupted file: HEAD params need {params_len} bytes, {len(data) - pos} remain"
        )
    params = data[pos : pos + params_len]
    pos += params_len
    if pos != len(data) and minor <= FORMAT_MINOR:
        # Appended HEAD fields are only legal in files from a newer minor version.
        raise ContainerError(
            f"corrupted file: {len(data) - pos} unexpected bytes at end of HEAD "
            f"(format {major}.{minor})"
        )
    return Header(
        modality=Modality(modality),
        model_id=mid.decode("ascii"),
        weights_hash=bytes(weights_hash),
        params=bytes(params),
        major=major,
        minor=minor,
    )


def _frame(chunk_type: bytes, data: bytes | memoryview) -> tuple[bytes, bytes]:
    """(length|type prefix, crc suffix) of a chunk."""
    prefix = _U32.pack(len(data)) + chunk_type
    return prefix, _U32.pack(zlib.crc32(data, zlib.crc32(prefix)))


class ContainerWriter:
    """Streaming writer: MAGIC and HEAD at construction, ``add`` per chunk, TAIL on ``close``.

    Offsets are counted from the first byte this writer writes. The whole-file CRC is kept
    as a running value, so the file is never held in memory.
    """

    def __init__(self, stream: BinaryIO, header: Header) -> None:
        head = _encode_head(header)
        self._stream = stream
        try:
            self._start: int | None = stream.tell()
        except (OSError, AttributeError, ValueError):  # a pipe: rewrite_header is not possible
            self._start = None
        self._pos = 0
        self._crc = 0
        self._closed = False
        self._head_len = len(head)
        self._write(MAGIC)
        self._write_chunk(HEAD, head)

    def _write(self, b: bytes | memoryview) -> None:
        self._stream.write(b)
        self._crc = zlib.crc32(b, self._crc)
        self._pos += len(b)

    def _write_chunk(self, chunk_type: bytes, data: bytes | memoryview) -> int:
        offset = self._pos
        prefix, suffix = _frame(chunk_type, data)
        self._write(prefix)
        self._write(data)
        self._write(suffix)
        return offset

    def add(self, chunk_type: bytes, data: bytes) -> int:
        """Append a chunk; returns the byte offset where it starts."""
        if self._closed:
            raise ContainerError("container already closed")
        if not _is_valid_type(chunk_type):
            raise ContainerError(f"invalid chunk type {chunk_type!r}: need 4 ASCII letters")
        if chunk_type in (HEAD, TAIL):
            raise ContainerError(f"chunk '{_name(chunk_type)}' is written by the container")
        data = memoryview(data).cast("B")
        check_claim(f"chunk '{_name(chunk_type)}' length", len(data), MAX_CHUNK)
        return self._write_chunk(chunk_type, data)

    @property
    def position(self) -> int:
        """Bytes written so far (= offset of the next chunk)."""
        return self._pos

    def rewrite_header(self, header: Header) -> None:
        """Replace HEAD by one of the same length (e.g. a frame count known only at the end).

        The stream must be seekable and readable (a file opened "w+b", a BytesIO); the running
        whole-file CRC is recomputed from the bytes written so far.
        """
        if self._closed:
            raise ContainerError("container already closed")
        head = _encode_head(header)
        if len(head) != self._head_len:
            raise ContainerError(f"new HEAD has {len(head)} bytes, the written one {self._head_len}")
        if self._start is None:
            raise ContainerError("cannot rewrite HEAD on a stream that is not seekable")
        s, end = self._stream, self._start + self._pos
        prefix, suffix = _frame(HEAD, head)
        s.seek(self._start + len(MAGIC))
        s.write(prefix + head + suffix)
        s.seek(self._start)
        crc, left = 0, self._pos
        while left:
            block = s.read(min(left, _BLOCK))
            if not block:
                raise ContainerError("cannot read back the written container to rewrite HEAD")
            crc, left = zlib.crc32(block, crc), left - len(block)
        self._crc = crc
        s.seek(end)

    def close(self) -> int:
        """Write TAIL (CRC of everything before it); returns the total file size in bytes."""
        if self._closed:
            raise ContainerError("container already closed")
        self._write_chunk(TAIL, _U32.pack(self._crc))
        self._closed = True
        return self._pos


def write_container(header: Header, chunks: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Whole file as bytes: MAGIC, HEAD, ``chunks`` in order, TAIL."""
    buf = io.BytesIO()
    w = ContainerWriter(buf, header)
    for chunk_type, data in chunks:
        w.add(chunk_type, data)
    w.close()
    return buf.getvalue()


@dataclass(frozen=True)
class ChunkRef:
    """Where one chunk lies in a stream (``scan_container``); ``data`` only for chunks loaded."""

    type: bytes
    offset: int
    length: int
    data: bytes | None = None


class _Memory:
    """A whole file in memory as the walker's input (slices are zero-copy)."""

    def __init__(self, data: bytes) -> None:
        self.mv = memoryview(data).cast("B")
        self.size = len(self.mv)

    def read(self, pos: int, n: int) -> memoryview:
        return self.mv[pos : pos + n]

    def crc(self, pos: int, n: int, crcs: tuple[int, int]) -> tuple[int, int]:
        block = self.mv[pos : pos + n]
        return zlib.crc32(block, crcs[0]), zlib.crc32(block, crcs[1])


class _Stream:
    """A seekable binary stream as the walker's input, read piece by piece."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.base = stream.tell()
        self.size = stream.seek(0, io.SEEK_END) - self.base

    def read(self, pos: int, n: int) -> bytes:
        self.stream.seek(self.base + pos)
        data = self.stream.read(n)
        if len(data) != n:
            raise ContainerError("truncated file: the input shrank while it was being read")
        return data

    def crc(self, pos: int, n: int, crcs: tuple[int, int]) -> tuple[int, int]:
        a, b = crcs
        for p in range(pos, pos + n, _BLOCK):
            block = self.read(p, min(_BLOCK, pos + n - p))
            a, b = zlib.crc32(block, a), zlib.crc32(block, b)
        return a, b


def _walk(src: _Memory | _Stream, known: Collection[bytes], load: Collection[bytes] | None
          ) -> tuple[Header, list[ChunkRef], set[int]]:
    """Check a whole file (framing, every CRC, HEAD, TAIL); the known chunks with their data if
    their type is in ``load`` (None: every type), and the offsets of all chunks between HEAD and
    TAIL (dropped ones too)."""
    n = src.size
    if n == 0:
        raise ContainerError("empty file")
    first = bytes(src.read(0, min(n, len(MAGIC))))
    if n < len(MAGIC) and first == MAGIC[:n]:
        raise ContainerError(f"truncated file: {n} bytes, shorter than the magic number")
    if first != MAGIC:
        if first == _PNG_MAGIC:
            raise ContainerError("not an ncodec file (bad magic; looks like PNG)")
        raise ContainerError("not an ncodec file (bad magic)")

    known = frozenset(known) | {HEAD, TAIL}
    header: Header | None = None
    chunks: list[ChunkRef] = []
    starts: set[int] = set()
    file_crc = zlib.crc32(MAGIC)  # of every byte before `pos`
    pos = len(MAGIC)
    while True:
        if pos == n:
            raise ContainerError(f"truncated file: missing TAIL chunk after byte {n}")
        if n - pos < 8:
            raise ContainerError(
                f"truncated file: chunk header at byte {pos} needs 8 bytes, {n - pos} remain"
            )
        prefix = bytes(src.read(pos, 8))
        (length,) = _U32.unpack_from(prefix, 0)
        ctype = prefix[4:8]
        name = _name(ctype)
        if not _is_valid_type(ctype):
            raise ContainerError(f"corrupted file: invalid chunk type '{name}' at byte {pos}")
        if header is None and ctype != HEAD:
            raise ContainerError(f"corrupted file: first chunk is '{name}', expected 'HEAD'")
        if header is not None and ctype == HEAD:
            raise ContainerError(f"corrupted file: second HEAD chunk at byte {pos}")
        if length > MAX_CHUNK:
            raise ContainerError(
                f"corrupted file: chunk '{name}' at byte {pos} claims {length} bytes, "
                f"exceeds limit {MAX_CHUNK}"
            )
        remain = n - pos - 8
        if length + 4 > remain:
            raise ContainerError(
                f"truncated file: chunk '{name}' at byte {pos} needs {length + 4} bytes, "
                f"{remain} remain"
            )
        end = pos + 8 + length
        wanted = ctype in (HEAD, TAIL) or (ctype in known and (load is None or ctype in load))
        chunk_crc, next_crc = zlib.crc32(prefix), zlib.crc32(prefix, file_crc)
        body = None
        if wanted:
            body = src.read(pos + 8, length)
            chunk_crc, next_crc = zlib.crc32(body, chunk_crc), zlib.crc32(body, next_crc)
        else:
            chunk_crc, next_crc = src.crc(pos + 8, length, (chunk_crc, next_crc))
        stored_bytes = bytes(src.read(end, 4))
        (stored,) = _U32.unpack_from(stored_bytes, 0)
        if chunk_crc != stored:
            raise ContainerError(f"corrupted file: CRC mismatch in chunk '{name}' at byte {pos}")
        next_pos = end + 4

        if ctype == HEAD:
            header = _decode_head(bytes(body))
        elif ctype == TAIL:
            if length != 4:
                raise ContainerError(f"corrupted file: TAIL chunk has {length} bytes, expected 4")
            (stored_file_crc,) = _U32.unpack_from(body, 0)
            if file_crc != stored_file_crc:
                raise ContainerError("corrupted file: whole-file CRC mismatch")
            if next_pos != n:
                raise ContainerError(
                    f"corrupted file: {n - next_pos} trailing bytes after TAIL at byte {next_pos}"
                )
            break
        elif ctype in known:
            starts.add(pos)
            chunks.append(ChunkRef(ctype, pos, length, None if body is None else bytes(body)))
        elif is_critical(ctype):
            raise ContainerError(
                f"unknown critical chunk '{name}' at byte {pos} "
                "(written by a newer or different codec)"
            )
        else:
            starts.add(pos)
        file_crc = zlib.crc32(stored_bytes, next_crc)
        pos = next_pos

    assert header is not None
    if SEEK in known:
        _check_seek_chunks(chunks, starts)
    return header, chunks, starts


def read_container(data: bytes, known: Collection[bytes]) -> tuple[Header, list[Chunk]]:
    """Verify and split a file into its header and chunks (HEAD/TAIL excluded).

    ``known`` lists the chunk types the caller understands (HEAD and TAIL always are).
    Unknown ancillary chunks are dropped; an unknown critical chunk is refused. If ``seek``
    is known, the seek index is validated against the chunk offsets. Any malformed input
    raises ContainerError and nothing else.
    """
    header, refs, _ = _walk(_Memory(data), known, None)
    return header, [Chunk(r.type, r.data, r.offset) for r in refs]


def scan_container(stream: BinaryIO, known: Collection[bytes],
                   load: Collection[bytes] = (SEEK,)) -> tuple[Header, list[ChunkRef]]:
    """``read_container`` for a seekable stream in bounded memory: the same checks (every chunk
    CRC, the whole-file CRC, the seek index), reading the stream once, piece by piece.

    Returns where the known chunks lie; only those whose type is in ``load`` come with their
    data (read the others with ``read_chunk``). Offsets count from the stream's position at
    the call. Raises ContainerError and nothing else on malformed input.
    """
    header, refs, _ = _walk(_Stream(stream), known, load)
    return header, refs


def read_chunk(stream: BinaryIO, ref: ChunkRef, base: int = 0) -> bytes:
    """The data of a chunk that ``scan_container`` found, checked again against its CRC (the
    file may have changed since). ``base``: the stream position the scan started at."""
    stream.seek(base + ref.offset)
    raw = stream.read(ref.length + 12)
    if len(raw) != ref.length + 12:
        raise ContainerError(f"truncated file: chunk '{_name(ref.type)}' at byte {ref.offset} "
                             "ends early (the file changed while it was being read)")
    (length,) = _U32.unpack_from(raw, 0)
    (stored,) = _U32.unpack_from(raw, ref.length + 8)
    if length != ref.length or raw[4:8] != ref.type or zlib.crc32(raw[: ref.length + 8]) != stored:
        raise ContainerError(f"corrupted file: chunk '{_name(ref.type)}' at byte {ref.offset} "
                             "changed while the file was being read")
    return raw[8 : ref.length + 8]


def _check_seek_chunks(chunks: list[ChunkRef], starts: set[int]) -> None:
    seeks = [c for c in chunks if c.type == SEEK]
    if len(seeks) > 1:
        raise ContainerError(f"corrupted file: {len(seeks)} seek chunks, at most 1 allowed")
    if not seeks:
        return
    starts = starts - {seeks[0].offset}
    for position, offset in decode_seek_index(seeks[0].data):
        if offset not in starts:
            raise ContainerError(
                f"corrupted file: seek entry for position {position} points to byte {offset}, "
                "which is not the start of a chunk"
            )


def encode_seek_index(entries: Sequence[tuple[int, int]]) -> bytes:
    """Serialise ``(position, offset)`` pairs, both strictly increasing, as ``seek`` data."""
    check_claim("seek entry count", len(entries), (MAX_CHUNK - 4) // _SEEK_ENTRY.size)
    out = [_U32.pack(len(entries))]
    prev: tuple[int, int] | None = None
    for entry in entries:
        position, offset = entry
        for v in (position, offset):
            if not isinstance(v, int) or not 0 <= v < 1 << 64:
                raise ContainerError(f"seek entry {entry!r}: values must be integers 0..2^64-1")
        if prev is not None and not (position > prev[0] and offset > prev[1]):
            raise ContainerError(f"seek entry {entry!r} after {prev!r} is not strictly increasing")
        prev = (position, offset)
        out.append(_SEEK_ENTRY.pack(position, offset))
    return b"".join(out)


def decode_seek_index(data: bytes) -> list[tuple[int, int]]:
    """Parse and validate ``seek`` data into ``(position, offset)`` pairs."""
    data = bytes(data)
    if len(data) < 4:
        raise ContainerError(f"corrupted file: seek index has {len(data)} bytes, need >= 4")
    (count,) = _U32.unpack_from(data, 0)
    if count * _SEEK_ENTRY.size + 4 != len(data):
        raise ContainerError(
            f"corrupted file: seek index claims {count} entries but has {len(data)} bytes"
        )
    entries = list(_SEEK_ENTRY.iter_unpack(data[4:]))
    for prev, cur in zip(entries, entries[1:], strict=False):
        if not (cur[0] > prev[0] and cur[1] > prev[1]):
            raise ContainerError(
                f"corrupted file: seek index not strictly increasing at {cur!r} after {prev!r}"
            )
    return entries
