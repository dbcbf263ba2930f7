"""Human- and machine-readable description of a .ncz file."""

from __future__ import annotations

from . import container as ct


def describe_file(data: bytes) -> dict:
    from . import audio_codec as ac
    from .image_codec import KNOWN_CHUNKS, PARAMS, QUALITY_STEPS, ImageParams

    header, chunks = ct.read_container(data, (*KNOWN_CHUNKS, *ac.KNOWN_CHUNKS))
    out = {
        "format": f"{header.major}.{header.minor}",
        "modality": header.modality.name.lower(),
        "model": header.model_id,
        "weights_sha256": header.weights_hash.hex(),
        "bytes": len(data),
        "chunks": [{"type": c.type.decode(), "bytes": len(c.data)} for c in chunks],
    }
    if header.modality == ct.Modality.IMAGE and len(header.params) >= PARAMS.size:
        p = ImageParams.unpack(header.params, levels=1 << 16)
        out.update(width=p.width, height=p.height, mode=p.mode, bit_depth=8,
                   quality=1 + p.quality_fx / QUALITY_STEPS,
                   bpp=round(len(data) * 8 / (p.width * p.height), 4))
    if header.modality == ct.Modality.AUDIO and len(header.params) >= ac.PARAMS.size:
        a = ac.AudioParams.unpack(header.params)
        seconds = a.length / a.sample_rate
        out.update(sample_rate=a.sample_rate, channels=a.channels, bit_depth=a.bit_depth, samples=a.length,
                   duration_s=round(seconds, 3), rvq_stages=a.stages, chunk_frames=a.chunk_frames,
                   kbps=round(len(data) * 8 / seconds / 1000, 3))
    return out
