"""Regenerate the golden test vectors for the installed default image, audio and video models and
the shipped RVQ-latent image model.

    python bitstream_spec/make_vectors.py [image|audio|rvq|video|NAME ...]   (default: all)

(NAME: one video vector, e.g. a new one, leaving the others as they are.)

Writes vectors/<name>.ncz and vectors/<name>.sha256: the SHA-256 of the decoded image's mode,
size and raw bytes (`decoded_digest`), of the decoded audio's rate, shape and int16 samples
(`audio_digest`), or of the decoded video's shape and frames (`video_digest`). Vectors are
frozen once a model ships: a changed decoder that alters any digest is a bitstream break, not a
test to update.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent / "vectors"
RVQ_MODEL = "image-rvq-v1"


def decoded_digest(image: Image.Image) -> str:
    h = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def audio_digest(pcm: np.ndarray, sample_rate: int) -> str:
    """Digest of decoded audio: float32 [channels, n] holding int16 / 32768 values, and its rate."""
    h = hashlib.sha256(f"{sample_rate} {pcm.shape[0]}x{pcm.shape[1]}\n".encode())
    h.update(np.round(pcm * 32768).astype("<i2").tobytes())
    return h.hexdigest()


def video_digest(frames: np.ndarray) -> str:
    """Digest of decoded video: uint8 [frames, height, width, 3]."""
    h = hashlib.sha256("x".join(map(str, frames.shape)).encode() + b"\n")
    h.update(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
    return h.hexdigest()


def video_sources() -> dict[str, tuple[list[np.ndarray], float, int]]:
    """Short deterministic clips (frames, quality, GOP): a gradient whose left part slides while the
    rest stands still (inter frames that skip some blocks), a still one (frames that skip all), one
    that moves everywhere (frames that skip none), a smooth one that grows brighter by 3 levels a
    frame (frames that change the brightness offset) and a pattern panned by 1.25 pixels down and
    2.5 left a frame (frames that change the global motion) and a small square moving inside one
    32x32 block of a still frame (fine skip maps), a textured patch moving over a smooth still
    frame (moved blocks) and two strips of the gradient that move apart over it, then stop (blocks
    moved whole and in quarters, held in frames without a move map), a pattern appearing in part of
    a smooth frame (blocks coded with z of their own, the last z elsewhere), the gradient fading
    out, halved each frame (frames that change the tone) and a dark gradient (an intra frame with a
    tone)."""
    y, x = np.mgrid[0:72, 0:137]
    still = np.stack([x * 255 // 136, y * 255 // 71, (x * y) % 256], -1).astype(np.uint8)
    moving = []
    for t in range(6):
        frame = still.copy()
        frame[:, :60] = np.roll(still[:, :60], 4 * t, axis=1)
        moving.append(frame)
    panning = [np.roll(still, (3 * t, 5 * t), axis=(0, 1)) for t in range(3)]
    smooth = np.stack([60 + x // 2, 80 + y, 100 + (x + y) // 4], -1).astype(np.uint8)
    brighter = [smooth + np.uint8(3 * t) for t in range(4)]

    def pattern(dy: float, dx: float) -> np.ndarray:
        u, v = x + dx, y + dy
        waves = [np.sin(u / 6) * np.cos(v / 9), np.sin((u + v) / 11), np.cos(u / 13 - v / 7)]
        return np.stack([128 + 60 * w + 30 * waves[0] for w in waves], -1).round().astype(np.uint8)

    glide = [pattern(-1.25 * t, 2.5 * t) for t in range(4)]
    spot = []
    for t in range(4):  # a small square moving inside one 32x32 block of a still frame
        frame = smooth.copy()
        frame[38 + 2 * t: 50 + 2 * t, 70 + 3 * t: 80 + 3 * t] = (230, 40, 60)
        spot.append(frame)
    def patch(t: int) -> np.ndarray:  # a textured patch over a smooth still frame, moved t steps
        frame = smooth.copy()
        frame[20 + 2 * t: 44 + 2 * t, 40 + 3 * t: 64 + 3 * t] = pattern(0, 0)[10:34, 20:44]
        return frame

    appearing = smooth.copy()  # a pattern appearing in part of a smooth frame
    appearing[8:56, 72:128] = pattern(3, 5)[8:56, 72:128]

    def parting(t: int) -> np.ndarray:  # two strips of `still` over the smooth frame, moved t steps apart
        frame = smooth.copy()
        frame[20 + t: 36 + t, 40 + 4 * t: 72 + 4 * t] = still[10:26, 20:52]
        frame[36:52, 40 - 3 * t: 72 - 3 * t] = still[26:42, 20:52]
        return frame

    return {"video_137x72_q3_gop4": (moving, 3.0, 4), "video_still_137x72_q5": ([still] * 4, 5.0, 32),
            "video_pan_137x72_q7": (panning, 7.0, 32),
            "video_brighter_137x72_q5": (brighter, 5.0, 32), "video_glide_137x72_q5": (glide, 5.0, 32),
            "video_spot_137x72_q7": (spot, 7.0, 32),
            "video_patch_137x72_q6": ([patch(t) for t in range(4)], 6.0, 32),
            "video_hold_137x72_q6": ([parting(min(t, 2)) for t in range(6)], 6.0, 32),
            "video_appear_137x72_q4": ([smooth, *[appearing] * 2], 4.0, 32),
            "video_fade_137x72_q5": ([(still * 0.5**t).astype(np.uint8) for t in range(4)], 5.0, 32),
            "video_dark_137x72_q4": ([(still * 0.05).astype(np.uint8)] * 2, 4.0, 32)}


# Vectors kept as an earlier writer wrote them, for the chunks it wrote that the writer no longer
# does: video_patch's MFRM chunks (blocks moved, not held; session 22), which HFRM chunks replaced.
# Rewriting them would write the newer chunks: they are left out of the vectors written here.
FROZEN = {"video_patch_137x72_q6"}


def sources() -> dict[str, tuple[Image.Image, float]]:
    """Small deterministic inputs covering modes, odd sizes and the quality range."""
    y, x = np.mgrid[0:45, 0:67]
    rgb = np.stack([(x * 255 // 66), (y * 255 // 44), ((x + y) * 3 % 256)], -1).astype(np.uint8)
    rgba = np.concatenate([rgb, (x * y % 256)[..., None].astype(np.uint8)], -1)
    return {
        "rgb_67x45_q1": (Image.fromarray(rgb), 1.0),
        "rgb_67x45_q8": (Image.fromarray(rgb), 8.0),
        "gray_67x45_q4": (Image.fromarray(rgb).convert("L"), 4.0),
        "rgba_67x45_q5.5": (Image.fromarray(rgba), 5.5),
        "rgb_1x1_q3": (Image.new("RGB", (1, 1), (200, 30, 90)), 3.0),
    }


def audio_sources() -> dict[str, tuple[np.ndarray, int, float]]:
    """Short deterministic signals: rates that resample, stereo, the bitrate range."""
    def tones(rate: int, seconds: float, channels: int) -> np.ndarray:
        t = np.arange(round(rate * seconds)) / rate
        sweep = np.sin(2 * np.pi * (200 + 900 * t) * t) * np.exp(-2 * t)
        shifted = [(0.5 + 0.2 * c) * np.roll(sweep, 37 * c) for c in range(channels)]
        return np.stack(shifted).astype(np.float32)

    return {
        "audio_mono_16k_6kbps": (tones(16000, 0.6, 1), 16000, 6.0),
        "audio_stereo_44k_1.5kbps": (tones(44100, 0.4, 2), 44100, 1.5),
        "audio_mono_24k_24kbps": (tones(24000, 0.3, 1), 24000, 24.0),
    }


def write(name: str, data: bytes, digest: str) -> None:
    (HERE / f"{name}.ncz").write_bytes(data)
    (HERE / f"{name}.sha256").write_text(digest + "\n")
    print(f"{name}: {len(data)} bytes")


def main() -> None:
    kinds = sys.argv[1:] or ["image", "audio", "rvq", "video"]
    HERE.mkdir(exist_ok=True)
    if "image" in kinds:
        from ncodec.image_codec import decode_image, encode_image

        for name, (image, quality) in sources().items():
            data = encode_image(image, quality, refine=0)  # (as written before refinement was default)
            write(name, data, decoded_digest(decode_image(data)))
    if "rvq" in kinds:
        from ncodec.image_codec import decode_image, encode_image

        for name in ("rgba_67x45_q5.5", "rgb_67x45_q1"):
            image, quality = sources()[name]
            data = encode_image(image, quality, RVQ_MODEL)
            write(f"rvq_{name}", data, decoded_digest(decode_image(data)))
    if "audio" in kinds:
        from ncodec.audio_codec import decode_audio, encode_audio

        for name, (samples, rate, kbps) in audio_sources().items():
            data = encode_audio(samples, rate, kbps)
            write(name, data, audio_digest(*decode_audio(data)))
    if "video" in kinds or set(kinds) & set(video_sources()):
        from ncodec.video_codec import decode_video, encode_video

        for name, (frames, quality, gop) in video_sources().items():
            if name in FROZEN or ("video" not in kinds and name not in kinds):
                continue
            data = encode_video(frames, 25, quality, gop, refine=0)  # (as written before refinement)
            write(name, data, video_digest(decode_video(data).to_array()))


if __name__ == "__main__":
    main()
