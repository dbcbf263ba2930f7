"""ncodec.video_io: streaming RGB frames out of video files and into .y4m/.mkv/.mp4, with the
awkward cases (odd sizes, NTSC rates, 10-bit, variable frame rate, rotation, truncation) handled
and stated."""

import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import psnr
from ncodec.video_io import (
    VideoError,
    VideoReader,
    VideoWarning,
    VideoWriter,
    probe,
    read_frames,
    write_video,
)

W, H, N = 33, 17, 10  # odd on both sides
NTSC = Fraction(30000, 1001)


def clip(n: int = N, width: int = W, height: int = H) -> list[np.ndarray]:
    """Smooth moving colour ramps: every frame different, frame i recognisable by its values."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    return [np.stack([128 + 110 * np.sin(x / 7 + i / 3), 128 + 110 * np.cos(y / 5 - i / 4),
                      128 + 100 * np.sin((x + y) / 9 + i)], -1).round().astype(np.uint8) for i in range(n)]


def encode_with_pyav(path, frames, rate=25, codec="ffv1", pix_fmt="bgr0", times=None, time_base=None,
                     rotation=None, audio=False, options=None):
    """A test file made with PyAV directly (not with the writer under test)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if time_base:
            stream.time_base = stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if audio:
            sound = out.add_stream("aac", rate=48000)
        for i, rgb in enumerate(frames):
            # one swscale thread: FFmpeg 8's threaded rgb24 -> 10-bit conversion is now and then wrong
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt, threads=1)
            frame.pts = times[i] if times else i
            if time_base:
                frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio:
            samples = np.zeros((1, 48000 * len(frames) // 25), np.float32)
            a = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            a.sample_rate, a.pts = 48000, 0
            out.mux(sound.encode(a))
            out.mux(sound.encode())


def write_quietly(path, frames, rate, pix_fmt=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_video(path, frames, rate, pix_fmt)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("rate", [Fraction(25), NTSC], ids=["25", "30000/1001"])
@pytest.mark.parametrize("suffix, pix_fmt, max_error", [
    (".mkv", None, 0),  # FFV1 RGB: bit-exact
    (".mkv", "yuv444p", 2),
    (".y4m", None, 2),  # yuv444p: 8-bit YUV rounding only
])
def test_lossless_and_raw_writers_round_trip(tmp_path, rate, suffix, pix_fmt, max_error):
    frames = clip()
    path = tmp_path / f"clip{suffix}"
    assert write_quietly(path, frames, rate, pix_fmt) == []
    info = probe(path)
    assert (info.width, info.height, info.frame_rate, info.frames) == (W, H, rate, N)
    assert not info.variable_frame_rate and not info.has_audio and info.rotation == 0
    assert info.duration == pytest.approx(N / float(rate), abs=1e-3)
    back = list(read_frames(path))
    assert len(back) == N and all(b.shape == (H, W, 3) and b.dtype == np.uint8 for b in back)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(frames, back, strict=True)) <= max_error
    if max_error == 0:
        assert all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))


def test_y4m_yuv420p_keeps_an_odd_size(tmp_path):
    path = tmp_path / "clip.y4m"
    write_video(path, clip(), 25, "yuv420p")
    assert path.read_bytes().startswith(b"YUV4MPEG2 W33 H17 F25:1")
    info = probe(path)
    assert (info.width, info.height, info.frames, info.pixel_format) == (W, H, N, "yuv420p")
    back = list(read_frames(path))
    assert all(psnr(a, b) > 40 for a, b in zip(clip(), back, strict=True))


@pytest.mark.parametrize("rate", [Fraction(25), NTSC], ids=["25", "30000/1001"])
def test_mp4_is_h264_within_a_psnr_bound_and_odd_sizes_switch_to_444(tmp_path, rate):
    path = tmp_path / "clip.mp4"
    notes = write_quietly(path, clip(), rate)
    assert notes == ["clip.mp4: 33x17 is odd-sized, written as yuv444p H.264 (High 4:4:4) to keep the "
                     "size exactly"]
    info = probe(path)
    assert (info.codec, info.pixel_format, info.width, info.height) == ("h264", "yuv444p", W, H)
    assert (info.frame_rate, info.frames) == (rate, N)
    back = list(read_frames(path))
    assert len(back) == N and all(psnr(a, b) > 36 for a, b in zip(clip(), back, strict=True))


def test_mp4_of_an_even_size_is_yuv420p(tmp_path):
    path = tmp_path / "even.mp4"
    assert write_quietly(path, clip(4, 34, 18), 24) == []
    info = probe(path)
    assert (info.pixel_format, info.width, info.height, info.frames) == ("yuv420p", 34, 18, 4)
    with pytest.raises(VideoError, match="yuv420p H.264 needs even sizes, got 33x17"):
        write_video(tmp_path / "odd.mp4", clip(2), 24, "yuv420p")
    assert not (tmp_path / "odd.mp4").exists()


def test_start_and_frames_select_a_range(tmp_path):
    path = tmp_path / "clip.mkv"
    frames = clip(20)
    write_video(path, frames, 25)
    assert [f[0, 0].tolist() for f in read_frames(path, start=0.4, frames=3)] == \
        [f[0, 0].tolist() for f in frames[10:13]]
    assert len(list(read_frames(path, start=0.7))) == 3  # frames 17, 18, 19
    assert len(list(read_frames(path, frames=0))) == 0
    with VideoReader(path) as video:  # a reader can be iterated more than once
        assert np.array_equal(next(video.frames(start=0.12)), frames[3])
        assert np.array_equal(next(video.frames()), frames[0])
    with pytest.raises(VideoError, match=r"start 0\.8 s is past the end \(0\.800 s\)"):
        read_frames(path, start=0.8)


def test_start_in_a_y4m_file_and_at_an_ntsc_rate(tmp_path):
    path = tmp_path / "clip.y4m"
    frames = clip(12)
    write_video(path, frames, NTSC)
    got = list(read_frames(path, start=5 * 1001 / 30000, frames=2))
    assert [psnr(a, b) > 45 for a, b in zip(frames[5:7], got, strict=True)] == [True, True]
    assert psnr(frames[4], got[0]) < 30  # not the frame before


def test_writer_leaves_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "out.mkv"
    with pytest.raises(VideoError, match="frame 2 is 34x17, the video is 33x17"):
        with VideoWriter(path, 25) as out:
            for rgb in [*clip(2), np.zeros((17, 34, 3), np.uint8)]:
                out.write(rgb)
    with pytest.raises(RuntimeError), VideoWriter(path, 25) as out:
        out.write(clip(1)[0])
        raise RuntimeError("interrupted")
    with pytest.raises(VideoError, match="no frames to write"):
        write_video(path, [], 25)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, rate, pix_fmt, message", [
    ("out.gif", 25, None, r"cannot write \.gif \(video outputs: \.y4m \.mkv \.mp4\)"),
    ("out.mkv", 0, None, "frame rate must be positive"),
    ("out.mkv", "fast", None, "frame rate must be a positive number or fraction"),
    ("out.y4m", 25, "rgb", r"\.y4m output takes pixel format yuv444p or yuv420p, not 'rgb'"),
])
def test_writer_refuses_bad_arguments(tmp_path, name, rate, pix_fmt, message):
    with pytest.raises(VideoError, match=message):
        VideoWriter(tmp_path / name, rate, pix_fmt)


def test_writer_refuses_frames_that_are_not_uint8_rgb(tmp_path):
    with pytest.raises(VideoError, match=r"uint8 arrays \(H, W, 3\), got float64 \(4, 4, 3\)"):
        write_video(tmp_path / "x.mkv", [np.zeros((4, 4, 3))], 25)
    with pytest.raises(VideoError, match=r"got uint8 \(4, 4\)"):
        write_video(tmp_path / "x.mkv", [np.zeros((4, 4), np.uint8)], 25)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix, keep", [(".mkv", 0.5), (".webm", 0.5), (".y4m", 0.6), (".mp4", 0.6)])
def test_a_truncated_file_is_a_one_line_error(tmp_path, suffix, keep):
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".webm":
        encode_with_pyav(whole, clip(20, 32, 18), codec="libvpx-vp9", pix_fmt="yuv420p")
    else:
        write_quietly(whole, clip(20), 25)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoError, match=r"^cut\.\w+: (not a readable video file, or )?truncated") as err:
        probe(cut)
    assert "\n" not in str(err.value)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01junk" * 100)
    with pytest.raises(VideoError, match="junk.mp4: not a readable video file"):
        probe(tmp_path / "junk.mp4")
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "missing.mp4")


def test_a_file_without_video_is_refused(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(VideoError, match="^sound.m4a: no video stream$"):
        probe(path)


def test_audio_is_reported(tmp_path):
    path = tmp_path / "with_sound.mkv"
    encode_with_pyav(path, clip(), audio=True)
    info = probe(path)
    assert info.has_audio and info.frames == N
    assert len(list(read_frames(path))) == N


def with_pcm(path, frames, samples: np.ndarray, sample_rate: int, audio_start: float, layout: str):
    """FFV1 frames at 25 fps and int16 PCM `samples` [channels, n] from `audio_start` seconds."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        sound = out.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        block = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="s16p", layout=layout)
        block.sample_rate, block.pts = sample_rate, round(audio_start * sample_rate)
        out.mux(sound.encode(block))
        out.mux(sound.encode())
    return path


def test_audio_is_aligned_to_the_frames_padded_and_downmixed(tmp_path):
    pcm = np.random.default_rng(3).integers(-20000, 20000, (1, 4000)).astype(np.int16)
    path = with_pcm(tmp_path / "late.mkv", clip(), pcm, 16000, 0.05, "mono")  # audio 0.05 .. 0.3 s
    reader = VideoReader(path)
    assert (reader.info.audio_rate, reader.info.audio_channels) == (16000, 1)
    x = np.concatenate(list(reader.audio(0.0, 6000)), 1)
    assert x.shape == (1, 6000) and x.dtype == np.float32
    assert not x[:, :800].any() and not x[:, 4800:].any()  # silence before and after
    assert np.array_equal(x[:, 800:4800], pcm / 32768)
    y = np.concatenate(list(reader.audio(0.1, 100)), 1)  # 0.1 s = sample 800 of the stream
    assert np.array_equal(y, pcm[:, 800:900] / 32768)
    write_video(tmp_path / "silent.mkv", clip(), 25)
    with pytest.raises(VideoError, match="no audio stream"):
        VideoReader(tmp_path / "silent.mkv").audio(0, 1)
    quad = np.stack([pcm[0], pcm[0] // 2, -pcm[0], np.zeros_like(pcm[0])])
    path = with_pcm(tmp_path / "quad.mkv", clip(), quad, 96000, 0.0, "quad")
    reader = VideoReader(path)
    assert reader.info.audio_channels == 4
    x = np.concatenate(list(reader.audio(0.0, 100)), 1)
    assert x.shape == (2, 100)  # stereo, resampled to at most 48 kHz: 100 samples at 48 kHz


def test_writer_adds_an_audio_stream_to_mkv_and_mp4_only(tmp_path):
    pcm = np.random.default_rng(4).integers(-9000, 9000, (2, 1600)).astype(np.int16)
    for suffix in (".mkv", ".mp4"):
        with VideoWriter(tmp_path / f"a{suffix}", 25, audio=(8000, 2)) as out:
            for i, rgb in enumerate(clip(4, 32, 16)):
                out.write(rgb)
                out.write_audio(pcm[:, 320 * i : 320 * (i + 1)])
            with pytest.raises(VideoError, match=r"int16 \[2, n\]"):
                out.write_audio(pcm[:1])
        info = probe(tmp_path / f"a{suffix}")
        assert info.frames == 4 and (info.audio_rate, info.audio_channels) == (8000, 2)
    back = np.concatenate(list(VideoReader(tmp_path / "a.mkv").audio(0, 1280)), 1)
    assert np.array_equal(back, pcm[:, :1280] / 32768)  # FLAC: lossless
    with pytest.raises(VideoError, match="holds video only"):
        VideoWriter(tmp_path / "a.y4m", 25, audio=(8000, 1))


def test_ten_bit_video_is_converted_to_8_bit_with_a_warning(tmp_path):
    path = tmp_path / "deep.mkv"
    encode_with_pyav(path, clip(), pix_fmt="yuv444p10le")
    with pytest.warns(VideoWarning, match="10-bit yuv444p10le video is converted to 8-bit RGB"):
        with VideoReader(path) as video:
            info = video.info
            back = list(video.frames())
    assert (info.bit_depth, info.pixel_format) == (10, "yuv444p10le")
    assert info.notes == ("10-bit yuv444p10le video is converted to 8-bit RGB",)
    assert all(b.dtype == np.uint8 and psnr(a, b) > 45 for a, b in zip(clip(), back, strict=True))


def test_variable_frame_rate_is_detected_and_every_frame_returned(tmp_path):
    path = tmp_path / "phone.mkv"
    times = [0, 33, 66, 100, 200, 233, 266, 400, 433, 466]  # ms: two gaps, as when a phone drops frames
    encode_with_pyav(path, clip(), rate=30, times=times, time_base=Fraction(1, 1000))
    with pytest.warns(VideoWarning, match=r"variable frame rate \(frame intervals 33\.0-134\.0 ms\): every "
                                          r"frame is returned in order at the average 20\.040 fps"):
        with VideoReader(path) as video:
            assert len(list(video.frames())) == N
    info = video.info
    assert info.variable_frame_rate and info.frames == N
    assert info.frame_rate == Fraction(N * 1000, 466 + 33)  # N frames over the span they cover


def test_constant_ntsc_timestamps_in_milliseconds_are_not_variable(tmp_path):
    path = tmp_path / "ntsc.mkv"  # Matroska stores 33/34 ms steps for 30000/1001 fps
    write_video(path, clip(), NTSC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = probe(path)
    assert not info.variable_frame_rate and info.frame_rate == NTSC


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    frames = clip(3, 34, 18)
    lossless = {"qp": "0"}
    encode_with_pyav(tmp_path / "flat.mp4", frames, codec="libx264", pix_fmt="yuv444p", options=lossless)
    encode_with_pyav(tmp_path / "turned.mp4", frames, codec="libx264", pix_fmt="yuv444p", options=lossless,
                     rotation=rotation)
    info = probe(tmp_path / "turned.mp4")
    assert info.rotation == rotation % 360
    assert (info.width, info.height) == ((34, 18) if rotation == 180 else (18, 34))
    flat, turned = list(read_frames(tmp_path / "flat.mp4")), list(read_frames(tmp_path / "turned.mp4"))
    assert all(np.array_equal(np.rot90(a, rotation // 90), b) for a, b in zip(flat, turned, strict=True))
    if rotation == 90:  # counter-clockwise: the top-right corner comes to the top left
        assert np.array_equal(turned[0][0, 0], flat[0][0, -1])


def test_common_containers_are_read(tmp_path):
    frames = clip(6, 32, 18)
    for name, codec in [("a.webm", "libvpx-vp9"), ("a.avi", "mpeg4"), ("a.mov", "libx264")]:
        encode_with_pyav(tmp_path / name, frames, rate=NTSC, codec=codec, pix_fmt="yuv420p")
        info = probe(tmp_path / name)
        assert (info.width, info.height, info.frames, info.frame_rate) == (32, 18, 6, NTSC), name
        assert len(list(read_frames(tmp_path / name))) == 6
