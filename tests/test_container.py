"""Tests of the generic ncodec bitstream container (codec/container.py, bitstream_spec/SPEC.md).

The helpers ``_chunk``/``_file``/``_head`` below re-implement the framing from the spec
independently of the module, so hand-made (valid or semantically odd) files can be built.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ncodec.container import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    MAX_CHUNK,
    Chunk,
    ContainerError,
    ContainerWriter,
    Header,
    Modality,
    check_claim,
    decode_seek_index,
    encode_seek_index,
    is_critical,
    read_chunk,
    read_container,
    scan_container,
    write_container,
)

HASH = hashlib.sha256(b"weights").digest()
HEADER = Header(Modality.IMAGE, "img-tiny.v1", HASH, params=b"\x01\x02\x03\x04")
KNOWN = {b"IDAT", b"seek"}


def _chunk(ctype: bytes, data: bytes) -> bytes:
    prefix = struct.pack(">I", len(data)) + ctype
    return prefix + data + struct.pack(">I", zlib.crc32(prefix + data))


def _file(head_data: bytes, body: bytes = b"") -> bytes:
    """MAGIC + HEAD(head_data) + body (already framed chunks) + a correct TAIL."""
    before = MAGIC + _chunk(b"HEAD", head_data) + body
    return before + _chunk(b"TAIL", struct.pack(">I", zlib.crc32(before)))


def _head(
    *,
    major: int = FORMAT_MAJOR,
    minor: int = FORMAT_MINOR,
    modality: int = 1,
    flags: int = 0,
    model_id: bytes = b"m1",
    id_len: int | None = None,
    weights_hash: bytes = HASH,
    params: bytes = b"",
    params_len: int | None = None,
    extra: bytes = b"",
) -> bytes:
    return (
        bytes((major, minor, modality, flags, len(model_id) if id_len is None else id_len))
        + model_id
        + weights_hash
        + struct.pack(">H", len(params) if params_len is None else params_len)
        + params
        + extra
    )


def _small_file() -> bytes:
    """A valid container of about 150 bytes."""
    return write_container(
        HEADER, [(b"IDAT", bytes(range(12))), (b"info", b"ancillary"), (b"IDAT", b"xyz")]
    )


# ---------------------------------------------------------------- round trips


def test_round_trip_preserves_header_chunks_and_offsets():
    chunks = [(b"IDAT", b"first"), (b"IDAT", b""), (b"IDAT", bytes(range(256)) * 3)]
    blob = write_container(HEADER, chunks)
    assert blob.startswith(MAGIC)
    header, got = read_container(blob, KNOWN)
    assert header == HEADER
    assert [(c.type, c.data) for c in got] == chunks
    for c in got:
        (length,) = struct.unpack_from(">I", blob, c.offset)
        assert length == len(c.data)
        assert blob[c.offset + 4 : c.offset + 8] == c.type
        assert blob[c.offset + 8 : c.offset + 8 + length] == c.data


def test_round_trip_of_every_modality_and_empty_params():
    for modality in Modality:
        h = Header(modality, "a", b"\x00" * 32)
        assert read_container(write_container(h, []), ()) == (h, [])


def test_streaming_writer_output_equals_write_container_and_offsets_match():
    chunks = [(b"IDAT", b"a" * 10), (b"info", b"note"), (b"IDAT", b"b" * 1000)]
    buf = io.BytesIO()
    w = ContainerWriter(buf, HEADER)
    offsets = [w.add(t, d) for t, d in chunks]
    total = w.close()
    assert buf.getvalue() == write_container(HEADER, chunks)
    assert total == len(buf.getvalue())
    _, got = read_container(buf.getvalue(), {b"IDAT", b"info"})
    assert [c.offset for c in got] == offsets


def test_writer_rejects_bad_chunk_types_reserved_types_and_use_after_close():
    w = ContainerWriter(io.BytesIO(), HEADER)
    for bad in (b"ID1T", b"IDA", b"IDATA", b"ID T", b"\xc9DAT", "IDAT"):
        with pytest.raises(ContainerError):
            w.add(bad, b"")
    for reserved in (b"HEAD", b"TAIL"):
        with pytest.raises(ContainerError):
            w.add(reserved, b"")
    w.close()
    with pytest.raises(ContainerError):
        w.add(b"IDAT", b"")
    with pytest.raises(ContainerError):
        w.close()


@pytest.mark.parametrize(
    "header",
    [
        Header(Modality.IMAGE, "", HASH),
        Header(Modality.IMAGE, "Upper", HASH),
        Header(Modality.IMAGE, "-lead", HASH),
        Header(Modality.IMAGE, "a" * 65, HASH),
        Header(Modality.IMAGE, "caf\u00e9", HASH),
        Header(Modality.IMAGE, "ok", b"short"),
        Header(Modality.IMAGE, "ok", HASH, params=b"p" * 4097),
        Header(4, "ok", HASH),  # type: ignore[arg-type]
        Header(Modality.IMAGE, "ok", HASH, major=256),
    ],
)
def test_writer_rejects_invalid_header(header):
    with pytest.raises(ContainerError):
        write_container(header, [])


def test_is_critical_follows_case_of_first_letter():
    assert is_critical(b"IDAT") and is_critical(b"HEAD") and is_critical(b"TAIL")
    assert not is_critical(b"seek") and not is_critical(b"iNFO")
    with pytest.raises(ContainerError):
        is_critical(b"1DAT")


# ---------------------------------------------------------------- compatibility


def test_unknown_ancillary_chunk_is_skipped():
    blob = write_container(HEADER, [(b"IDAT", b"1"), (b"zzzz", b"later"), (b"IDAT", b"2")])
    header, got = read_container(blob, {b"IDAT"})
    assert header == HEADER
    assert [c.data for c in got] == [b"1", b"2"]
    # the same chunk is returned when the caller knows it
    _, got = read_container(blob, {b"IDAT", b"zzzz"})
    assert [c.type for c in got] == [b"IDAT", b"zzzz", b"IDAT"]


def test_unknown_critical_chunk_is_refused_naming_its_type():
    blob = write_container(HEADER, [(b"IDAT", b"1"), (b"XYZW", b"new feature")])
    with pytest.raises(ContainerError, match="unknown critical chunk 'XYZW'"):
        read_container(blob, {b"IDAT"})


def test_newer_major_version_is_refused_before_parsing_the_rest_of_head():
    # A 2.x HEAD may have any layout after its first two bytes: only those are read.
    blob = _file(bytes((2, 0)) + b"\xff" * 3)
    with pytest.raises(ContainerError) as e:
        read_container(blob, KNOWN)
    assert str(e.value) == "file uses ncodec bitstream format 2.0; this build reads 1.x"
    blob = write_container(Header(Modality.IMAGE, "m", HASH, major=7, minor=3), [])
    with pytest.raises(ContainerError, match=r"format 7\.3; this build reads 1\.x"):
        read_container(blob, KNOWN)


def test_newer_minor_version_with_extra_head_bytes_is_accepted():
    blob = _file(
        _head(minor=FORMAT_MINOR + 1, params=b"PP", extra=b"future fields"),
        _chunk(b"IDAT", b"payload") + _chunk(b"newz", b"new ancillary"),
    )
    header, got = read_container(blob, KNOWN)
    assert (header.major, header.minor) == (FORMAT_MAJOR, FORMAT_MINOR + 1)
    assert header.params == b"PP" and header.model_id == "m1"
    assert got == [Chunk(b"IDAT", b"payload", got[0].offset)]


def test_extra_head_bytes_in_current_minor_version_are_refused():
    with pytest.raises(ContainerError, match="unexpected bytes at end of HEAD"):
        read_container(_file(_head(extra=b"x")), KNOWN)


# ---------------------------------------------------------------- error detection


def test_every_single_bit_flip_is_detected():
    blob = _small_file()
    assert 130 <= len(blob) <= 170
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ContainerError):
            read_container(bytes(bad), KNOWN | {b"info"})


def test_bit_flip_in_chunk_data_is_reported_with_chunk_name_and_offset():
    blob = _small_file()
    _, got = read_container(blob, KNOWN)
    off = got[0].offset
    bad = bytearray(blob)
    bad[off + 12] ^= 0x10
    with pytest.raises(ContainerError) as e:
        read_container(bytes(bad), KNOWN)
    assert str(e.value) == f"corrupted file: CRC mismatch in chunk 'IDAT' at byte {off}"


def test_tail_with_wrong_whole_file_crc_is_refused():
    # every chunk CRC is right but a byte before TAIL was changed (and its chunk re-CRC'd)
    good = _small_file()
    body = _chunk(b"IDAT", bytes(range(40)))
    forged = MAGIC + _chunk(b"HEAD", _head()) + body
    tail_of_other = good[-16:]
    with pytest.raises(ContainerError, match="whole-file CRC mismatch"):
        read_container(forged + tail_of_other, KNOWN)


def test_every_truncation_is_detected():
    blob = _small_file()
    for n in range(len(blob)):
        with pytest.raises(ContainerError):
            read_container(blob[:n], KNOWN)


def test_trailing_bytes_after_tail_are_detected():
    blob = _small_file()
    for extra in (b"\x00", b"garbage", _small_file()):
        with pytest.raises(ContainerError, match="trailing bytes after TAIL"):
            read_container(blob + extra, KNOWN)


def test_empty_file_is_refused():
    with pytest.raises(ContainerError, match="^empty file$"):
        read_container(b"", KNOWN)


def test_png_file_is_refused_as_not_ncodec():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buf, format="PNG")
    with pytest.raises(ContainerError, match=r"not an ncodec file \(bad magic"):
        read_container(buf.getvalue(), KNOWN)
    with pytest.raises(ContainerError, match=r"not an ncodec file \(bad magic\)"):
        read_container(b"hello world, not a codec file", KNOWN)


def test_huge_chunk_claim_in_small_file_is_refused_as_truncated():
    blob = MAGIC + struct.pack(">I", 1 << 30) + b"HEAD" + b"\x00" * 24
    assert len(blob) == 40
    with pytest.raises(ContainerError, match=r"^truncated file: chunk 'HEAD' at byte 8 needs"):
        read_container(blob, KNOWN)


def test_chunk_claim_over_max_chunk_is_refused():
    blob = MAGIC + struct.pack(">I", MAX_CHUNK + 1) + b"HEAD" + b"\x00" * 28
    with pytest.raises(ContainerError, match="exceeds limit"):
        read_container(blob, KNOWN)


def test_first_chunk_must_be_head_and_head_must_be_unique():
    before = MAGIC + _chunk(b"IDAT", b"x")
    blob = before + _chunk(b"TAIL", struct.pack(">I", zlib.crc32(before)))
    with pytest.raises(ContainerError, match="expected 'HEAD'"):
        read_container(blob, KNOWN)
    with pytest.raises(ContainerError, match="second HEAD"):
        read_container(_file(_head(), _chunk(b"HEAD", _head())), KNOWN)


def test_missing_tail_is_refused():
    with pytest.raises(ContainerError, match="missing TAIL"):
        read_container(MAGIC + _chunk(b"HEAD", _head()), KNOWN)


def test_check_claim_raises_with_name_value_and_limit():
    check_claim("image width", 4096, 4096)
    with pytest.raises(ContainerError) as e:
        check_claim("image width", 4097, 4096)
    assert str(e.value) == "image width 4097 exceeds limit 4096"
    with pytest.raises(ContainerError):
        check_claim("image width", -1, 4096)


# ---------------------------------------------------------------- seek index


def test_seek_index_round_trip():
    entries = [(0, 50), (4096, 9000), (8192, 1 << 40), ((1 << 64) - 1, (1 << 64) - 1)]
    data = encode_seek_index(entries)
    assert len(data) == 4 + 16 * len(entries)
    assert decode_seek_index(data) == entries
    assert decode_seek_index(encode_seek_index([])) == []


@pytest.mark.parametrize(
    "entries",
    [[(0, 10), (0, 20)], [(0, 10), (5, 10)], [(5, 10), (3, 20)], [(-1, 0)], [(0, 1 << 64)]],
)
def test_seek_index_encoder_rejects_non_monotonic_or_out_of_range(entries):
    with pytest.raises(ContainerError):
        encode_seek_index(entries)


def test_seek_index_decoder_rejects_non_monotonic_and_garbled_data():
    non_monotonic = struct.pack(">IQQQQ", 2, 10, 100, 10, 200)
    backwards = struct.pack(">IQQQQ", 2, 10, 100, 20, 50)
    for bad in (
        non_monotonic,
        backwards,
        b"",
        b"\x00\x00",
        struct.pack(">I", 1),  # claims one entry, has none
        encode_seek_index([(0, 1)]) + b"\x00",  # stray byte
        struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 16,
    ):
        with pytest.raises(ContainerError):
            decode_seek_index(bad)


def test_seek_chunk_is_validated_against_chunk_offsets():
    buf = io.BytesIO()
    w = ContainerWriter(buf, Header(Modality.AUDIO, "aud", HASH))
    offs = [w.add(b"IDAT", bytes(100)) for _ in range(3)]
    w.add(b"seek", encode_seek_index([(0, offs[0]), (1024, offs[1]), (2048, offs[2])]))
    w.close()
    _, got = read_container(buf.getvalue(), KNOWN)
    assert decode_seek_index(got[-1].data)[1] == (1024, offs[1])

    bad = write_container(HEADER, [(b"IDAT", b"x"), (b"seek", encode_seek_index([(0, 9999)]))])
    with pytest.raises(ContainerError, match="not the start of a chunk"):
        read_container(bad, KNOWN)
    read_container(bad, {b"IDAT"})  # a reader that ignores seek drops it
    seek = encode_seek_index([])
    with pytest.raises(ContainerError, match="seek chunks"):
        read_container(write_container(HEADER, [(b"seek", seek), (b"seek", seek)]), KNOWN)


# ---------------------------------------------------------------- fuzzing


@st.composite
def _valid_containers(draw) -> bytes:
    header = Header(
        draw(st.sampled_from(list(Modality))),
        draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)),
        draw(st.binary(min_size=32, max_size=32)),
        params=draw(st.binary(max_size=12)),
    )
    chunks = draw(
        st.lists(
            st.tuples(
                st.sampled_from([b"IDAT", b"seek", b"info", b"XTRA"]), st.binary(max_size=40)
            ),
            max_size=4,
        )
    )
    return write_container(header, chunks)


@st.composite
def _mutated(draw) -> bytes:
    source = draw(
        st.sampled_from(["mutate"] * 6 + ["random", "magic+random", "content", "content"])
    )
    if source == "random":
        return draw(st.binary(max_size=200))
    if source == "magic+random":
        return MAGIC + draw(st.binary(max_size=200))
    if source == "content":  # mutate HEAD/seek/chunk contents, keep every CRC correct
        rnd = draw(st.randoms(use_true_random=True))
        parts = [bytearray(_head(minor=rnd.choice([0, 0, 1]), params=rnd.randbytes(4)))]
        # unmutated: HEAD at 8, seek at 65, IDAT at 113 and 129
        parts += [bytearray(encode_seek_index([(0, 113), (9, 129)])), bytearray(b"data")]
        for _ in range(rnd.randint(0, 3)):
            part = rnd.choice(parts)
            if not part:
                continue
            pos = rnd.randrange(len(part))
            if rnd.random() < 0.5:
                part[pos] = rnd.randrange(256)
            else:
                del part[pos:]
        body = _chunk(b"seek", parts[1]) + _chunk(b"IDAT", parts[2]) + _chunk(b"IDAT", b"more")
        return _file(bytes(parts[0]), body)
    data = bytearray(draw(_valid_containers()))
    rnd = draw(st.randoms(use_true_random=True))  # positions spread evenly over the file
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "concat"]))
        pos = rnd.randrange(max(len(data), 1))
        if kind == "flip" and data:
            data[pos] ^= 1 << rnd.randrange(8)
        elif kind == "set" and data:
            data[pos] = rnd.randrange(256)
        elif kind == "insert":
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif kind == "delete":
            del data[pos : pos + rnd.randint(1, 8)]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "concat":
            data += draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


def _outcome(read):
    try:
        return read()
    except ContainerError as e:
        return str(e)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_streaming_scan_accepts_and_refuses_exactly_what_read_container_does(blob):
    whole = _outcome(lambda: read_container(blob, KNOWN))
    stream = io.BytesIO(b"prefix" + blob)
    stream.seek(6)  # offsets count from where the scan starts
    scanned = _outcome(lambda: scan_container(stream, KNOWN))
    if isinstance(whole, str):
        assert scanned == whole
    else:
        header, refs = scanned
        assert header == whole[0]
        assert [(r.type, r.offset, r.length) for r in refs] == [(c.type, c.offset, len(c.data))
                                                               for c in whole[1]]
        loaded = [c.data if c.type == b"seek" else None for c in whole[1]]
        assert [r.data for r in refs] == loaded
        assert [read_chunk(stream, r, base=6) for r in refs] == [c.data for c in whole[1]]


def test_scan_reads_big_chunks_piece_by_piece_and_read_chunk_notices_changes(tmp_path):
    payload = bytes(range(256)) * 9000  # > 2 MB: several read blocks
    path = tmp_path / "big.ncz"
    path.write_bytes(write_container(HEADER, [(b"IDAT", payload), (b"IDAT", b"tail")]))
    with open(path, "rb") as f:
        header, refs = scan_container(f, KNOWN)
        assert header == HEADER and [r.length for r in refs] == [len(payload), 4]
        assert refs[0].data is None and read_chunk(f, refs[0]) == payload
    data = bytearray(path.read_bytes())
    data[refs[1].offset + 9] ^= 1
    path.write_bytes(bytes(data))
    with open(path, "rb") as f, pytest.raises(ContainerError, match="changed while"):
        read_chunk(f, refs[1])


def test_rewrite_header_replaces_head_and_keeps_the_file_valid():
    buf = io.BytesIO()
    w = ContainerWriter(buf, Header(Modality.VIDEO, "vid", HASH, params=bytes(8)))
    w.add(b"IDAT", b"frame")
    new = Header(Modality.VIDEO, "vid", HASH, params=b"\x00\x00\x00\x07" + bytes(4))
    w.rewrite_header(new)
    w.add(b"IDAT", b"more")
    w.close()
    header, chunks = read_container(buf.getvalue(), KNOWN)
    assert header == new and [c.data for c in chunks] == [b"frame", b"more"]
    with pytest.raises(ContainerError, match="same length|bytes, the written one"):
        ContainerWriter(io.BytesIO(), HEADER).rewrite_header(Header(Modality.IMAGE, "other-id", HASH))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_fuzzed_input_either_parses_or_raises_container_error(blob):
    try:
        header, chunks = read_container(blob, KNOWN)
    except ContainerError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(header, Header)
        assert all(c.type in KNOWN for c in chunks)


_MODEL_ID = re.compile(rb"[a-z0-9][a-z0-9._-]*")
_odd_heads = st.one_of(
    st.builds(
        lambda mid: _head(model_id=mid),
        st.binary(min_size=1, max_size=64).filter(lambda b: not _MODEL_ID.fullmatch(b)),
    ),
    st.just(_head(model_id=b"")),  # zero-length id
    st.builds(lambda n: _head(model_id=b"a" * n), st.integers(65, 255)),  # id too long
    st.builds(lambda f: _head(flags=f), st.integers(1, 255)),
    st.builds(lambda m: _head(modality=m), st.integers(0, 255).filter(lambda m: m > 3 or m == 0)),
    st.builds(lambda n: _head(params=b"p" * n), st.integers(4097, 5000)),  # params too long
    st.builds(lambda n: _head(params=b"pp", params_len=n), st.integers(3, 65535)),  # overrun
    st.builds(lambda n: _head(id_len=n), st.integers(3, 255)),  # id length overruns
    st.builds(lambda n: _head()[:n], st.integers(0, 40)),  # HEAD cut short (CRC still valid)
    st.builds(lambda h: _head(weights_hash=h), st.binary(max_size=31)),
)


@settings(max_examples=500, deadline=None)
@given(_odd_heads)
def test_structurally_valid_but_semantically_odd_head_is_refused(head_data):
    blob = _file(head_data, _chunk(b"IDAT", b"payload"))
    with pytest.raises(ContainerError):
        read_container(blob, KNOWN)
