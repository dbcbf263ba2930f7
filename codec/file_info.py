"""Human- and machine-readable description of a .ncz file."""

from __future__ import annotations

import io
from typing import BinaryIO

from . import container as ct


def describe_file(source: bytes | BinaryIO) -> dict:
    """Header fields, chunk sizes and rates of a .ncz file (bytes, or a seekable binary stream read
    piece by piece: a long video is never held in memory)."""
    from . import audio_codec as ac
    from . import video_codec as vc
    from .image_codec import KNOWN_CHUNKS, PARAMS, QUALITY_STEPS, ImageParams

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    start = stream.tell()
    header, chunks = ct.scan_container(stream, (*KNOWN_CHUNKS, *ac.KNOWN_CHUNKS, *vc.KNOWN_CHUNKS),
                                       (ct.SEEK, vc.CHUNK_AUDIO))
    size = stream.seek(0, io.SEEK_END) - start
    out = {
        "format": f"{header.major}.{header.minor}",
        "modality": header.modality.name.lower(),
        "model": header.model_id,
        "weights_sha256": header.weights_hash.hex(),
        "bytes": size,
        "chunks": [{"type": c.type.decode(), "bytes": c.length} for c in chunks],
    }
    if header.modality == ct.Modality.IMAGE and len(header.params) >= PARAMS.size:
        p = ImageParams.unpack(header.params, levels=1 << 16)
        out.update(width=p.width, height=p.height, mode=p.mode, bit_depth=8,
                   quality=1 + p.quality_fx / QUALITY_STEPS,
                   bpp=round(size * 8 / (p.width * p.height), 4))
    if header.modality == ct.Modality.AUDIO and len(header.params) >= ac.PARAMS.size:
        a = ac.AudioParams.unpack(header.params)
        seconds = a.length / a.sample_rate
        out.update(sample_rate=a.sample_rate, channels=a.channels, bit_depth=a.bit_depth, samples=a.length,
                   duration_s=round(seconds, 3), rvq_stages=a.stages, chunk_frames=a.chunk_frames,
                   kbps=round(size * 8 / seconds / 1000, 3))
    if header.modality == ct.Modality.VIDEO and len(header.params) >= vc.PARAMS.size:
        v = vc.VideoParams.unpack(header.params, levels=1 << 16)
        seconds = float(v.frames / v.frame_rate)
        out.update(width=v.width, height=v.height, frame_rate=str(v.frame_rate),
                   fps=round(float(v.frame_rate), 3), frames=v.frames, duration_s=round(seconds, 3),
                   gop=v.gop, intra_frames=len(v.intra_frames()), quality=v.quality,
                   bpp=round(size * 8 / (v.width * v.height * v.frames), 4),
                   kbps=round(size * 8 / seconds / 1000, 3))
        audio = [c for c in chunks if c.type == vc.CHUNK_AUDIO]
        if audio:
            track = ct.read_container(audio[0].data, ac.KNOWN_CHUNKS)[0]
            a = ac.AudioParams.unpack(track.params)
            out["audio"] = {"model": track.model_id, "sample_rate": a.sample_rate, "channels": a.channels,
                            "samples": a.length, "bytes": len(audio[0].data),
                            "kbps": round(len(audio[0].data) * 8 / seconds / 1000, 3)}
    return out
