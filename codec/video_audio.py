"""The audio track of a video: coded by the audio codec into the video's container, played back in
step with the frames.

The `AUDI` chunk of a video file holds a complete audio .ncz file (SPEC.md 7.5) whose sample 0 plays
with frame 0 and whose length is the frames' duration at its sample rate (`track_length`). Frames
[a, b) play with samples [track_length(a), track_length(b)).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from .video_io import VideoError, VideoReader, audio_rate

DEFAULT_BITRATE = 6.0  # kbps of the audio track


def track_length(frames: int, frame_rate: Fraction, sample_rate: int) -> int:
    """Samples that play during the first `frames` frames: round(frames / frame_rate * sample_rate)."""
    return round(Fraction(frames) / Fraction(frame_rate) * sample_rate)


def encode_track(reader: VideoReader, start: float, frames: int, frame_rate: Fraction,
                 bitrate_kbps: float = DEFAULT_BITRATE, model_id: str | None = None) -> bytes:
    """The audio .ncz of `reader`'s audio beside `frames` frames from `start` seconds (streamed)."""
    from .audio_codec import AudioEncoder

    rate = audio_rate(reader.info)
    length = track_length(frames, frame_rate, rate)
    channels = 1 if reader.info.audio_channels == 1 else 2
    buf = io.BytesIO()
    enc = AudioEncoder(buf, rate, channels, length, bitrate_kbps, model_id)
    for block in reader.audio(start, length):
        enc.write(block)
    enc.close()
    return buf.getvalue()


def interleave(frames: Iterator[np.ndarray], audio: Iterator[np.ndarray] | None, first: int,
               frame_rate: Fraction, sample_rate: int) -> Iterator[tuple[str, np.ndarray]]:
    """("video", rgb) and ("audio", int16 [channels, n]) items in play order, starting at frame
    `first`: each frame is followed by the samples that play until the next one, so a muxer never
    has to hold more than a frame's worth of either stream."""
    pending, done = None, track_length(first, frame_rate, sample_rate)
    t = first
    for rgb in frames:
        yield "video", rgb
        t += 1
        until = track_length(t, frame_rate, sample_rate)
        while audio is not None and done < until:
            if pending is None:
                pending = next(audio, None)
                if pending is None:
                    raise VideoError("the audio track ends before the frames do")
            take = pending[:, : until - done]
            pending = pending[:, take.shape[1]:] if take.shape[1] < pending.shape[1] else None
            done += take.shape[1]
            yield "audio", take


def check_audio_track(track, frames: int, frame_rate: Fraction) -> None:
    """Refuse an audio track (an AudioDecoder) whose length is not the frames' duration."""
    p = track.params
    want = track_length(frames, frame_rate, p.sample_rate)
    if p.length != want:
        raise VideoError(f"audio track holds {p.length} samples at {p.sample_rate} Hz; {frames} frames "
                         f"at {frame_rate} fps need {want}")
