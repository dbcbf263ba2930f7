"""Video files in and out through PyAV (FFmpeg), one frame at a time.

Reading (`VideoReader`, `read_frames`, `probe`): .mp4 .mkv .webm .avi .mov and raw .y4m, any codec
this FFmpeg decodes. Frames come out as uint8 RGB arrays (H, W, 3), one at a time, so memory stays
bounded whatever the length. Opening a file demuxes it once without decoding (cheap) to count its
frames, check their timestamps and find truncation. What the reader does with awkward input:

- YUV -> RGB uses the matrix and range the file is tagged with; untagged video is taken as BT.709
  when wider than 1279 or taller than 576 pixels, else BT.601 (the rule mpv uses), limited range.
- More than 8 bits per sample (10-bit HDR phone video, 12-bit ProRes): converted to 8-bit RGB
  (rounded by swscale) with a VideoWarning; `VideoInfo.bit_depth` keeps the source depth.
- Variable frame rate (timestamp intervals that differ by more than 10%): every frame is returned,
  in order, none dropped or repeated, at the average rate (`VideoInfo.frame_rate`); the timing is
  not kept, and a VideoWarning says so. `VideoInfo.variable_frame_rate` is True.
- Rotation metadata (portrait phone video): applied, so frames come out upright and
  `VideoInfo.width/height` are the displayed size; `VideoInfo.rotation` is the rotation the file
  asked for (degrees counter-clockwise). Rotations that are not a multiple of 90 are refused.
- Truncated or corrupt files, files without a video stream: VideoError, one line.
- Audio (`VideoReader.audio`): the first audio stream, aligned to the frames by timestamps, as
  float32 blocks, mono or stereo (more channels are downmixed), 8-48 kHz.

Writing (`VideoWriter`, `write_video`), by extension:

- .y4m: raw YUV, yuv444p (default) or yuv420p; odd sizes kept exactly. Y4M has no RGB, so RGB
  frames come back within 2 codes from yuv444p (8-bit YUV rounding), and with half-resolution
  chroma from yuv420p.
- .mkv: FFV1 (lossless), RGB (default: frames come back bit-exact) or yuv444p.
- .mp4: H.264 (libx264, preset medium, CRF 12: visually lossless, not exact), yuv420p when width and
  height are even; odd sizes switch to yuv444p (High 4:4:4, kept exactly, fewer players) with a
  VideoWarning rather than padding. `pix_fmt="yuv444p"` asks for it always.
- Audio, when asked for: FLAC (lossless) in .mkv, AAC (FFmpeg's encoder, 128 kbps) in .mp4; .y4m
  holds video only.

YUV outputs use the matrix the reader assumes for untagged video of that size (above), limited
range, and tag it where the container can. Frame rate and frame count are preserved. Output goes to
a temporary file in the same folder, renamed when the writer closes; on any error it is deleted.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import publish, temp_beside

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".y4m")
WRITE_SUFFIXES = (".y4m", ".mkv", ".mp4")
VFR_TOLERANCE = 0.1  # relative deviation of a timestamp interval from the median that means VFR
MP4_CRF = 12
# Output pixel formats: the first is the default (mp4: the default for even sizes).
OUTPUT_FORMATS = {".y4m": ("yuv444p", "yuv420p"), ".mkv": ("rgb", "yuv444p"), ".mp4": ("yuv420p", "yuv444p")}
_MUXERS = {".y4m": ("yuv4mpegpipe", "rawvideo"), ".mkv": ("matroska", "ffv1"), ".mp4": ("mp4", "libx264")}
AUDIO_CODECS = {".mkv": "flac", ".mp4": "aac"}
AAC_BITRATE = 128_000
_FFV1_RGB = "bgr0"  # FFV1's 8-bit RGB layout
_RGB_FORMATS = {"rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "rgb0", "bgr0", "0rgb", "0bgr", "gbrp",
                "gbrap"}
# AVColorSpace -> swscale matrix; anything else (BT.470BG, SMPTE 170M, unspecified) is BT.601.
_MATRICES = {1: "ITU709", 4: "FCC", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_SPC = {"ITU709": 1, "ITU601": 6}  # tags written: BT.709, SMPTE 170M (the BT.601 matrix)
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2


class VideoError(ValueError):
    """A video file that cannot be read or written as asked (one-line message)."""


class VideoWarning(UserWarning):
    """A lossy or approximate step taken on the way (bit depth, frame timing, pixel format)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # of the frames returned (rotation applied)
    height: int
    frame_rate: Fraction  # frames per second (the average for variable frame rate)
    frames: int | None  # frame count: declared by the container, else counted packets
    pixel_format: str  # of the coded video, e.g. yuv420p, yuv420p10le
    bit_depth: int  # bits per sample of the coded video
    rotation: int  # degrees counter-clockwise the file asks for (0, 90, 180, 270); applied when reading
    has_audio: bool
    duration: float | None  # seconds of video (frames / rate when the container does not say)
    codec: str  # decoder name, e.g. h264
    variable_frame_rate: bool
    notes: tuple[str, ...] = ()  # what the reader does about this file (conversions), in words
    audio_rate: int = 0  # samples per second of the first audio stream (0: none)
    audio_channels: int = 0  # its channel count


def default_matrix(width: int, height: int) -> str:
    """The YUV matrix assumed for untagged video and written by VideoWriter: BT.709 for HD."""
    return "ITU709" if width >= 1280 or height > 576 else "ITU601"


def sws_interpolation() -> int:
    """swscale flags of every conversion here: bicubic chroma, accurate rounding, bit-exact."""
    from av.video.reformatter import Interpolation as I  # noqa: E741

    return int(I.BICUBIC | I.ACCURATE_RND | I.BITEXACT | I.FULL_CHR_H_INT | I.FULL_CHR_H_INP)


class _ToRGB:
    """Decoded frames -> uint8 RGB arrays, with the file's matrix and range (one cached swscale on
    one thread: FFmpeg 8's threaded swscale has given wrong 10-bit frames now and then)."""

    def __init__(self, rotation: int):
        from av.video.reformatter import VideoReformatter

        self.turns = rotation // 90 % 4
        self.reformatter, self.interpolation = VideoReformatter(), sws_interpolation()

    def __call__(self, frame) -> np.ndarray:
        options = {}
        if frame.format.name not in _RGB_FORMATS:
            full = frame.color_range == _AVCOL_RANGE_JPEG or frame.format.name.startswith("yuvj")
            options = {"src_colorspace": _MATRICES.get(frame.colorspace)
                       or default_matrix(frame.width, frame.height),
                       "src_color_range": "JPEG" if full else "MPEG", "dst_color_range": "JPEG"}
        rgb = self.reformatter.reformat(frame, format="rgb24", interpolation=self.interpolation,
                                        threads=1, **options).to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, self.turns)) if self.turns else rgb


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except FileNotFoundError:
        raise
    except av.FFmpegError as err:
        raise VideoError(f"{path.name}: not a readable video file, or truncated or corrupt "
                         f"({_reason(err)})") from None


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())


def _declared_end(container, stream) -> float | None:
    """Seconds the header says the video stream (else the whole file) lasts."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska/WebM per-track tag, H:MM:SS.fraction
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    return container.duration / 1e6 if container.duration else None


class VideoReader:
    """A video file: `info` at once, then `frames(start, count)` streams RGB frames.

        with VideoReader("clip.mp4") as video:
            print(video.info.width, video.info.frame_rate)
            for rgb in video.frames(start=2.0, count=50):
                ...

    `threads`: decoder threads (0: FFmpeg chooses).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        self.path, self.threads = Path(path), threads
        self.info = self._probe()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        pass  # each frames() call opens and closes the file itself

    def _probe(self) -> VideoInfo:
        import av

        name = self.path.name
        with _open(self.path) as container:
            if not container.streams.video:
                raise VideoError(f"{name}: no video stream")
            stream = container.streams.video[0]
            has_audio = bool(container.streams.audio)
            audio = container.streams.audio[0].codec_context if has_audio else None
            self._audio_format = (audio.sample_rate, audio.channels) if audio else (0, 0)
            tb = stream.time_base
            pts, ends, last, count = [], [0.0], None, 0
            try:
                for packet in container.demux():
                    if packet.size == 0:
                        continue
                    if packet.pts is not None and packet.time_base:
                        t = float(packet.pts * packet.time_base)
                        ends[0] = min(ends[0], t)  # a negative start (B-frame delay) lengthens the span
                        ends.append(t + float((packet.duration or 0) * packet.time_base))
                    if packet.stream.index == stream.index:
                        count += 1
                        last = packet
                        if packet.pts is not None:
                            pts.append(packet.pts)
            except av.FFmpegError as err:
                raise VideoError(f"{name}: truncated or corrupt ({_reason(err)})") from None
            if count == 0:
                raise VideoError(f"{name}: truncated or corrupt: the video stream has no frames")
            declared_end = _declared_end(container, stream)
            declared_frames = stream.frames or None
            if declared_frames and count < declared_frames:
                raise VideoError(f"{name}: truncated: {count} of {declared_frames} frames present")
            if (container.format.name == "yuv4mpegpipe" and last.pos is not None
                    and last.pos + last.size != self.path.stat().st_size):
                raise VideoError(f"{name}: truncated: the file ends inside a frame")
            pts.sort()
            rate, vfr, intervals = self._rate(stream, pts, tb)
            span = max(ends[1:], default=0.0) - ends[0]  # seconds the packets cover
            if declared_end and len(ends) > 1 and span + 1.5 / float(rate) + 0.05 < declared_end:
                raise VideoError(f"{name}: truncated: the header says {declared_end:.2f} s, "
                                 f"the data ends at {span:.2f} s")
            self._first_pts = pts[0] if pts else None
            self._origin = float(pts[0] * tb) if pts else 0.0  # seconds of the first frame
            self._seekable = len(pts) == count
            codec = stream.codec_context.name
        with _open(self.path) as container:
            try:
                first = next(container.decode(video=0), None)
            except av.FFmpegError as err:
                raise VideoError(f"{name}: corrupt video data ({_reason(err)})") from None
            if first is None:
                raise VideoError(f"{name}: truncated or corrupt: no video frame could be decoded")
        return self._info(first, rate, vfr, intervals, declared_frames or count, has_audio, codec,
                          declared_end if declared_end else len(pts) / float(rate))

    @staticmethod
    def _rate(stream, pts: list[int], tb: Fraction) -> tuple[Fraction, bool, tuple[float, float]]:
        """(frame rate, variable?, (shortest, longest) timestamp interval in seconds)."""
        diffs = np.diff(np.array(pts, dtype=np.float64)) * float(tb) if len(pts) > 1 else np.array([])
        diffs = diffs[diffs >= 0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if len(diffs) < 2:
            return Fraction(rate or 25), False, (0.0, 0.0)
        median = float(np.median(diffs))
        tolerance = max(VFR_TOLERANCE * median, 1.5 * float(tb))
        vfr = median <= 0 or bool(np.any(np.abs(diffs - median) > tolerance))
        if vfr or not rate:  # the average: frames over the time they span (the last one lasting the median)
            span = Fraction(pts[-1] - pts[0]) * tb + Fraction(median).limit_denominator(1_000_000)
            rate = (len(pts) / span).limit_denominator(1001)
        return Fraction(rate), vfr, (float(diffs.min()), float(diffs.max()))

    def _info(self, first, rate: Fraction, vfr: bool, intervals: tuple[float, float], frames: int,
              has_audio: bool, codec: str, duration: float) -> VideoInfo:
        name, notes = self.path.name, []
        fmt = first.format
        depth = max(c.bits for c in fmt.components) if fmt.components else 8
        if depth > 8:
            notes.append(f"{depth}-bit {fmt.name} video is converted to 8-bit RGB")
        rotation = int(round(first.rotation or 0)) % 360
        if rotation % 90:
            raise VideoError(f"{name}: rotated by {rotation} degrees; only multiples of 90 are supported")
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        if rotation:
            notes.append(f"rotation metadata ({rotation} degrees) is applied: frames are {width}x{height}")
        if vfr:
            lo, hi = (1000 * x for x in intervals)
            notes.append(f"variable frame rate (frame intervals {lo:.1f}-{hi:.1f} ms): every frame is "
                         f"returned in order at the average {float(rate):.3f} fps; timing is not kept")
        for note in notes:
            if not note.startswith("rotation"):
                warnings.warn(f"{name}: {note}", VideoWarning, stacklevel=3)
        self._rotation = rotation
        return VideoInfo(width, height, rate, frames, fmt.name, depth, rotation, has_audio, duration, codec,
                         vfr, tuple(notes), *self._audio_format)

    def frames(self, start: float = 0.0, count: int | None = None) -> Iterator[np.ndarray]:
        """RGB frames (H, W, 3) uint8 from `start` seconds after the first frame, at most `count`."""
        if start < 0 or (count is not None and count < 0):
            raise ValueError(f"start and count must not be negative (got {start}, {count})")
        if self.info.duration and start >= self.info.duration:
            raise VideoError(f"{self.path.name}: start {start:g} s is past the end "
                             f"({self.info.duration:.3f} s)")
        return self._frames(start, count)

    def _frames(self, start: float, count: int | None) -> Iterator[np.ndarray]:
        import av

        if count == 0:
            return
        to_rgb = _ToRGB(self._rotation)
        half = 0.5 / float(self.info.frame_rate)
        skip = round(start * self.info.frame_rate)  # frames to drop where timestamps are missing
        done = decoded = 0
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = self.threads
            tb = stream.time_base
            first = self._first_pts
            if start > 0 and self._seekable and first is not None:
                try:
                    container.seek(first + int(start / tb), stream=stream, backward=True)
                except av.FFmpegError:
                    container.seek(0, stream=stream, backward=True)
            try:
                for frame in container.decode(stream):
                    decoded += 1
                    if frame.pts is not None and first is not None:
                        if float((frame.pts - first) * tb) < start - half:
                            continue
                    elif decoded <= skip:
                        continue
                    yield to_rgb(frame)
                    done += 1
                    if count is not None and done >= count:
                        return
            except av.FFmpegError as err:
                raise VideoError(f"{self.path.name}: corrupt video data after {done} frames "
                                 f"({_reason(err)})") from None


    def audio(self, start: float, samples: int) -> Iterator[np.ndarray]:
        """The first audio stream beside the frames from `start` seconds on: float32 blocks
        [channels, n] at `audio_rate(self.info)` summing to exactly `samples` per channel.

        Sample 0 plays with the frame shown `start` seconds after the first frame (the streams'
        timestamps align them); where the audio starts late or ends early it is padded with
        silence. Mono stays mono, more channels are downmixed to stereo (FFmpeg's matrix).
        """
        if not self.info.has_audio:
            raise VideoError(f"{self.path.name}: no audio stream")
        return self._audio(start, samples)

    def _audio(self, start: float, samples: int) -> Iterator[np.ndarray]:
        import av

        rate = audio_rate(self.info)
        resampler = av.AudioResampler(format="fltp", layout=_layout(self.info.audio_channels), rate=rate)
        t0 = self._origin + start
        done, position = 0, None  # samples yielded; index (from t0) of the next decoded sample
        with _open(self.path) as container:
            stream = container.streams.audio[0]
            if start > 1:
                container.seek(int((t0 - 1) * 1_000_000), backward=True)
            try:
                for frame in itertools.chain(container.decode(stream), [None]):  # None: flush
                    for out in resampler.resample(frame):
                        if position is None:
                            begin = float(out.pts * out.time_base) if out.pts is not None else self._origin
                            position = round((begin - t0) * rate)
                        x = out.to_ndarray().astype(np.float32, copy=False)
                        if position > done:  # a gap before this block: silence
                            yield np.zeros((x.shape[0], min(position, samples) - done), np.float32)
                            done = min(position, samples)
                        x = x[:, done - position : samples - position]
                        position += out.samples
                        if x.shape[1]:
                            yield x
                            done += x.shape[1]
                        if done == samples:
                            return
            except av.FFmpegError as err:
                raise VideoError(f"{self.path.name}: corrupt audio data ({_reason(err)})") from None
        channels = 1 if self.info.audio_channels == 1 else 2
        yield np.zeros((channels, samples - done), np.float32)


def _layout(channels: int) -> str:
    """The channel layout audio is read and written in: mono stays mono, the rest is stereo."""
    return "mono" if channels == 1 else "stereo"


def audio_rate(info: VideoInfo) -> int:
    """The rate `VideoReader.audio` delivers: the stream's, limited to 8-48 kHz."""
    return min(max(info.audio_rate, 8000), 48000)


def probe(path: str | os.PathLike) -> VideoInfo:
    """What `VideoReader(path).info` says, without decoding more than one frame."""
    return VideoReader(path).info


def read_frames(path: str | os.PathLike, start: float = 0.0, frames: int | None = None,
                threads: int = 0) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of a video file, one at a time (see VideoReader)."""
    return VideoReader(path, threads).frames(start, frames)


def _frame_rate(rate: Fraction | int | str) -> Fraction:
    try:
        value = Fraction(rate)
    except (TypeError, ValueError):
        raise VideoError(f"frame rate must be a positive number or fraction, got {rate!r}") from None
    if value <= 0:
        raise VideoError(f"frame rate must be positive, got {rate!r}")
    return value


class VideoWriter:
    """Writes RGB frames (H, W, 3) uint8 to .y4m, .mkv or .mp4 (see the module docstring).

        with VideoWriter("out.mkv", Fraction(30000, 1001)) as out:
            for rgb in frames:
                out.write(rgb)

    The file appears when the writer closes without error; `pix_fmt` picks among OUTPUT_FORMATS.
    `audio` = (sample rate, channels) adds an audio stream (.mkv: FLAC, lossless; .mp4: AAC) that
    `write_audio` fills; interleave its blocks with the frames in play order.
    """

    def __init__(self, path: str | os.PathLike, frame_rate: Fraction | int | str,
                 pix_fmt: str | None = None, crf: int = MP4_CRF, threads: int = 0,
                 audio: tuple[int, int] | None = None):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in WRITE_SUFFIXES:
            raise VideoError(f"{self.path.name}: cannot write {self.suffix or 'files without an extension'}"
                             f" (video outputs: {' '.join(WRITE_SUFFIXES)})")
        if pix_fmt is not None and pix_fmt not in OUTPUT_FORMATS[self.suffix]:
            raise VideoError(f"{self.suffix} output takes pixel format "
                             f"{' or '.join(OUTPUT_FORMATS[self.suffix])}, not {pix_fmt!r}")
        if audio is not None and self.suffix not in AUDIO_CODECS:
            raise VideoError(f"{self.path.name}: {self.suffix} holds video only (audio needs "
                             f"{' or '.join(AUDIO_CODECS)})")
        self.frame_rate, self.pix_fmt, self.crf, self.threads = _frame_rate(frame_rate), pix_fmt, crf, threads
        self.audio, self.samples = audio, 0
        self.frames = 0
        self._container = self._stream = self._audio_stream = self._tmp = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, width: int, height: int) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        pix = self.pix_fmt or OUTPUT_FORMATS[self.suffix][0]
        if self.suffix == ".mp4" and pix == "yuv420p" and (width % 2 or height % 2):
            if self.pix_fmt:
                raise VideoError(f"{self.path.name}: yuv420p H.264 needs even sizes, got {width}x{height}; "
                                 "use yuv444p")
            pix = "yuv444p"
            warnings.warn(f"{self.path.name}: {width}x{height} is odd-sized, written as yuv444p H.264 "
                          "(High 4:4:4) to keep the size exactly", VideoWarning, stacklevel=3)
        muxer, codec = _MUXERS[self.suffix]
        self._tmp = temp_beside(self.path)
        options = {"crf": str(self.crf), "preset": "medium"} if codec == "libx264" else {}
        try:
            self._container = av.open(self._tmp, "w", format=muxer)
            stream = self._container.add_stream(codec, rate=self.frame_rate, options=options)
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"{self.path.name}: cannot start {codec} output ({_reason(err)})") from None
        if self.audio is not None:
            rate, channels = self.audio
            self._audio_stream = self._container.add_stream(AUDIO_CODECS[self.suffix], rate=rate,
                                                            layout=_layout(channels))
            if self.suffix == ".mp4":
                self._audio_stream.bit_rate = AAC_BITRATE
        stream.width, stream.height = width, height
        stream.pix_fmt = _FFV1_RGB if pix == "rgb" else pix
        stream.codec_context.thread_count = self.threads
        self._matrix = None if pix == "rgb" else default_matrix(width, height)
        if self._matrix:
            stream.codec_context.colorspace = _AVCOL_SPC[self._matrix]
            stream.codec_context.color_range = _AVCOL_RANGE_MPEG
        self._stream, self._size = stream, (width, height)
        self._reformatter, self._interpolation = VideoReformatter(), sws_interpolation()

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: uint8 array (H, W, 3), the same size as the first."""
        import av

        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise VideoError(f"frames must be uint8 arrays (H, W, 3), got {rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        if self._size is None:
            self._start(width, height)
        elif (width, height) != self._size:
            raise VideoError(f"frame {self.frames} is {width}x{height}, the video is "
                             f"{self._size[0]}x{self._size[1]}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self._matrix:
            frame = self._reformatter.reformat(frame, format=self._stream.pix_fmt,
                                               dst_colorspace=self._matrix, src_color_range="JPEG",
                                               dst_color_range="MPEG", interpolation=self._interpolation,
                                               threads=1)
        else:
            frame = self._reformatter.reformat(frame, format=self._stream.pix_fmt, threads=1)
        frame.pts = self.frames
        frame.time_base = 1 / self.frame_rate
        self._mux(frame)
        self.frames += 1

    def write_audio(self, block: np.ndarray) -> None:
        """Append int16 samples [channels, n] to the audio stream (after the first frame)."""
        import av

        if self._audio_stream is None:
            raise VideoError(f"{self.path.name}: no audio stream (give `audio`) or no frame written yet")
        block = np.ascontiguousarray(block, dtype=np.int16)
        if block.ndim != 2 or block.shape[0] != self.audio[1]:
            raise VideoError(f"audio blocks must be int16 [{self.audio[1]}, n], got {block.shape}")
        frame = av.AudioFrame.from_ndarray(block, format="s16p", layout=_layout(block.shape[0]))
        frame.sample_rate, frame.pts = self.audio[0], self.samples
        self._mux(frame, self._audio_stream)
        self.samples += block.shape[1]

    def _mux(self, frame, stream=None) -> None:
        import av

        try:
            for packet in (stream or self._stream).encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"{self.path.name}: writing failed ({_reason(err)})") from None

    def close(self) -> None:
        """Flush the encoder, close the file and move it into place."""
        if self._container is None:
            if self._tmp is None:  # nothing was written (a second close, or an abort, does nothing)
                self._tmp = ""
                raise VideoError(f"{self.path.name}: no frames to write")
            return
        self._mux(None)
        if self._audio_stream is not None:
            self._mux(None, self._audio_stream)
        try:
            self._container.close()
        except Exception:
            self.abort()
            raise
        self._container = None
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the output: close and delete the temporary file."""
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:  # noqa: S110 - the file is deleted anyway
                pass
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], frame_rate: Fraction | int | str,
                pix_fmt: str | None = None) -> int:
    """Write RGB frames to `path` (.y4m .mkv .mp4); returns the number of frames written."""
    with VideoWriter(path, frame_rate, pix_fmt) as out:
        for rgb in frames:
            out.write(rgb)
    return out.frames
