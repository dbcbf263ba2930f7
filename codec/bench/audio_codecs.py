"""Audio codecs under test: ncodec (the RVQ audio model), Opus (libopus) and MP3 (LAME) through PyAV.

Every codec turns float32 samples [channels, n] at the file's rate into bytes, and the bytes back
into float32 [channels, m] at the same rate, aligned with the input: output sample i is input
sample i. Encoder delays are removed with the container's own fields, as a player does, never by
searching for the best lag. m may differ from n by a few samples (the harness trims or zero-pads
to n and records the difference). Each codec runs in-process on one thread.

- ncodec: `ncodec.encode_audio` / `ncodec.decode_audio`; setting: kbps, one of the model's
  bitrates (stereo splits the RVQ stages equally between mid and side). Bytes: the whole .ncz file;
  payload: its RVQC code chunks.
- opus: libopus with its defaults (VBR, application "audio", 20 ms frames) in an Ogg file in
  memory. Files at 8/12/16/24/48 kHz go in at their own rate, other rates are resampled to
  48 kHz first; the decoder gives 48 kHz, resampled back to the file's rate (libswresample,
  delay-compensated: ncodec.resample). The pre-skip of the OpusHead and the granule position of
  the last page trim the start and the end. Setting: target kbps, all channels together
  (libopus takes 6 and up). Bytes: the Ogg file (OpusHead, OpusTags and page headers included);
  payload: the Opus packets.
- mp3: LAME CBR in a bare MP3 stream (no ID3 tag) that starts with the Xing/LAME info frame,
  whose encoder delay and padding trim the decoded start and end. Rates LAME does not take are
  resampled to 48 kHz. Setting: kbps, all channels together; LAME moves a bitrate outside the
  range of the rate's MPEG version to the nearest it allows (at least 32 kbps at 32-48 kHz, at
  most 64 kbps at 8-12 kHz, 160 kbps at 16-24 kHz), so some settings can give the same file.
  Bytes: the stream with its info frame; payload: the audio frames.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from . import BenchError
from .codecs import Setting

SETTINGS: dict[str, list[Setting]] = {
    "ncodec": [1.5, 3, 6, 12, 24],
    "opus": [6, 8, 12, 16, 24, 32, 48],
    "mp3": [16, 24, 32, 48, 64, 96, 128],
}
BITRATE_RANGE = {"opus": (6, 510), "mp3": (8, 320)}  # kbps the encoders accept
ENCODERS = {"opus": "libopus", "mp3": "libmp3lame"}
BYTES_COUNTED = {
    "ncodec": "the .ncz file (payload: its RVQC code chunks)",
    "opus": "the Ogg file: OpusHead, OpusTags and page headers included (payload: the Opus packets)",
    "mp3": "the MP3 stream with its Xing/LAME info frame, no ID3 tag (payload: the audio frames)",
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
FALLBACK_RATE = 48000
LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class Encoded:
    data: bytes  # everything a decoder needs: what `bytes` and `kbps` count
    payload_bytes: int  # the codec's own packets, without container framing


@dataclass(frozen=True)
class AudioCodec:
    encode: Callable[[np.ndarray, int, Setting], Encoded]  # float32 [channels, n], rate, setting
    decode: Callable[[bytes, int], np.ndarray]  # bytes, rate -> float32 [channels, m] at rate


def check_audio_codec(name: str) -> None:
    if name not in SETTINGS:
        raise BenchError(f"unknown audio codec {name!r} (known: {', '.join(SETTINGS)})")


def missing_encoder(name: str) -> str | None:
    """Why PyAV cannot run codec `name` here (None when it can, or for ncodec)."""
    if name not in ENCODERS:
        return None
    import av

    try:
        av.codec.Codec(ENCODERS[name], "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return f"the FFmpeg inside PyAV {av.__version__} has no {ENCODERS[name]} encoder"
    return None


def check_bitrates(name: str, settings: list[Setting]) -> None:
    if name in BITRATE_RANGE:
        lo, hi = BITRATE_RANGE[name]
        bad = [s for s in settings if not lo <= s <= hi]
        if bad:
            raise BenchError(f"{name} bitrates must be {lo}..{hi} kbps, got {bad[0]:g}")


def _to_rate(x: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    from ncodec.resample import resample

    return x if rate == out_rate else resample(x, rate, out_rate)


def _pyav(encoder: str, container: str, sample_format: str, rates: tuple[int, ...],
          container_options: dict[str, str] | None = None) -> AudioCodec:
    import av

    def encode(x: np.ndarray, rate: int, kbps: Setting) -> Encoded:
        coded_rate = rate if rate in rates else FALLBACK_RATE
        x = np.ascontiguousarray(_to_rate(x, rate, coded_rate), dtype=np.float32)
        buf, payload = io.BytesIO(), 0
        with av.open(buf, "w", format=container, options=container_options or {}) as out:
            stream = out.add_stream(encoder, rate=coded_rate, layout=LAYOUTS[x.shape[0]])
            stream.bit_rate = round(float(kbps) * 1000)
            stream.format = sample_format
            frame = av.AudioFrame.from_ndarray(x, format="fltp", layout=LAYOUTS[x.shape[0]])
            frame.sample_rate, frame.pts = coded_rate, 0
            for frame_or_flush in (frame, None):  # PyAV cuts the frame to the encoder's frame size
                for packet in stream.encode(frame_or_flush):
                    payload += packet.size
                    out.mux(packet)
        return Encoded(buf.getvalue(), payload)

    def decode(data: bytes, rate: int) -> np.ndarray:
        parts, decoded_rate = [], rate
        with av.open(io.BytesIO(data)) as source:
            for frame in source.decode(source.streams.audio[0]):
                a = frame.to_ndarray()
                if not frame.format.is_planar:
                    a = a.reshape(-1, len(frame.layout.channels)).T
                if a.dtype.kind in "iu":
                    a = a / float(np.iinfo(a.dtype).max + 1)
                parts.append(a.astype(np.float32))
                decoded_rate = frame.sample_rate
        if not parts:
            raise BenchError(f"{encoder} output decoded to no samples")
        return _to_rate(np.concatenate(parts, 1), decoded_rate, rate)

    return AudioCodec(encode, decode)


def _ncodec(model: str | None) -> AudioCodec:
    import ncodec
    from ncodec import container as ct
    from ncodec.audio_codec import CHUNK_CODES, KNOWN_CHUNKS

    def encode(x: np.ndarray, rate: int, kbps: Setting) -> Encoded:
        data = ncodec.encode_audio(x, float(kbps), rate, model)
        _, chunks = ct.read_container(data, KNOWN_CHUNKS)
        return Encoded(data, sum(len(c.data) for c in chunks if c.type == CHUNK_CODES))

    def decode(data: bytes, rate: int) -> np.ndarray:
        samples, decoded_rate = ncodec.decode_audio(data)
        if decoded_rate != rate:
            raise BenchError(f"ncodec decoded {decoded_rate} Hz, the file is {rate} Hz")
        return samples

    return AudioCodec(encode, decode)


@cache
def get_audio_codec(name: str, model: str | None = None) -> AudioCodec:
    """The codec called `name`; `model` is the ncodec audio model id (None: the default)."""
    if name == "ncodec":
        return _ncodec(model)
    if name == "opus":
        return _pyav("libopus", "ogg", "flt", OPUS_RATES)
    if name == "mp3":
        return _pyav("libmp3lame", "mp3", "fltp", MP3_RATES, {"id3v2_version": "0"})
    raise BenchError(f"unknown audio codec {name!r}")


def ncodec_model(model: str | None) -> tuple[dict, list[Setting]]:
    """({id, sha256}, bitrates) of the audio model ncodec would use, as `ncodec encode` picks it;
    BenchError (one line: why) when it is not installed."""
    from ncodec.audio_codec import AudioError, _model_info
    from ncodec.audio_model import AudioModelConfig, bitrates
    from ncodec.zoo import ModelNotFound

    try:
        info = _model_info(model)
    except (AudioError, ModelNotFound) as err:
        raise BenchError(str(err)) from None
    offered = bitrates(AudioModelConfig.from_dict(info.config))
    rates = [int(k) if float(k).is_integer() else k for k in offered]
    return {"id": info.model_id, "sha256": info.sha256}, rates
