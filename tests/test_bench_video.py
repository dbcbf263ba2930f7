"""`ncodec bench video`: anchors through PyAV on tiny clips, result schema, rows, resume, report,
PSNR-YUV, skipped codecs, errors."""

import math
from fractions import Fraction
from functools import partial
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import (
    check_bad_arguments,
    check_other_kind_is_kept,
    check_plots,
    check_rerun_computes_nothing,
    copy_result,
    load,
    run_bench,
    run_here,
    swept_result,
)
from conftest import imported_after
from ncodec.bench import BenchError, video, video_codecs
from ncodec.bench.metrics import psnr_yuv, rgb_to_yuv
from ncodec.video_io import write_video

X264 = [18, 28, 38, 48]
X265 = [20, 30, 40, 50]
SVTAV1 = [20, 35, 50, 63]
CLIPS = {"ramp.mkv": (33, 17, 6, Fraction(25)), "sub/waves.y4m": (48, 32, 5, Fraction(30000, 1001))}
bench = partial(run_bench, "video")


def frames(width: int, height: int, n: int) -> list[np.ndarray]:
    y, x = np.mgrid[:height, :width].astype(np.float64)
    return [np.stack([128 + 110 * np.sin(x / 5 + i / 2), 128 + 110 * np.cos(y / 4 - i / 3),
                      128 + 90 * np.sin((x * y) / 60 + i)], -1).round().astype(np.uint8) for i in range(n)]


def sweep_args(dataset, out: Path, *extra, x264: list[int] = X264) -> list:
    crfs = {"x264": x264, "x265": X265, "svtav1": SVTAV1}
    settings = [arg for codec, values in crfs.items()
                for arg in ("--settings", f"{codec}={','.join(map(str, values))}")]
    return ["--dataset", dataset, "--codecs", "x264,x265,svtav1,ncodec", *settings, "--out", out, *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "sub").mkdir()
    for name, (w, h, n, rate) in CLIPS.items():
        write_video(folder / name, frames(w, h, n), rate)
    (folder / "README.txt").write_text("not a video")
    return folder


@pytest.fixture(scope="module", autouse=True)
def no_video_model(tmp_path_factory):
    """These sweeps run where no model is installed (the shipped ones hidden): the anchors alone.
    ncodec's rows are tested with a tiny model in test_video_codec.py."""
    import ncodec.zoo

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ncodec.zoo, "ZOO_DIR", tmp_path_factory.mktemp("no_models"))
        mp.delenv("NCODEC_MODEL_PATH", raising=False)
        yield


@pytest.fixture(scope="module")
def swept(dataset, tmp_path_factory) -> tuple[Path, str]:
    """One sweep of the three anchors over both clips with two worker processes: (result, stderr)."""
    out = tmp_path_factory.mktemp("results")
    return swept_result("video", dataset, out, sweep_args(dataset, out, "--workers", 2))


def test_result_has_the_documented_schema(swept, dataset):
    doc = load(swept[0])
    assert {"schema", "kind", "dataset", "clips", "frames", "threads", "anchor", "codecs", "skipped",
            "described", "definitions", "machine", "summary", "bd_rate", "rows"} <= doc.keys()
    assert (doc["schema"], doc["kind"], doc["anchor"]) == (1, "video", "x264")
    assert (doc["frames"], doc["threads"]) == (None, 1)
    assert doc["dataset"] == {"name": dataset.name, "path": str(dataset.resolve()),
                              "inputs": [str(dataset.resolve())]}
    assert doc["clips"] == ["ramp.mkv", "sub/waves.y4m"]
    assert doc["codecs"] == {"x264": X264, "x265": X265, "svtav1": SVTAV1}
    assert set(doc["described"]) == {"x264", "x265", "svtav1"}
    m = doc["machine"]
    for key in ("platform", "python", "cpu_model", "cpu_count", "numpy", "av", "ffmpeg", "ncodec",
                "ncodec_commit", "models"):
        assert key in m
    assert m["encoders"] == {"libx264": True, "libx265": True, "libsvtav1": True} and m["models"] == []


def test_ncodec_is_listed_as_unavailable_with_its_reason(swept):
    doc, err = load(swept[0]), swept[1]
    reason = ("no video model installed; train one with `ncodec train video --init-image MODEL --export "
              "FILE` and add its folder to NCODEC_MODEL_PATH")
    assert doc["skipped"] == {"ncodec": reason}
    assert f"bench video: skipping ncodec: {reason}\n" in err
    assert f"- ncodec skipped: {reason}" in swept[0].with_suffix(".md").read_text()


def test_every_clip_codec_and_crf_has_one_row(swept):
    doc = load(swept[0])
    keys = [(r["clip"], r["codec"], r["setting"]) for r in doc["rows"]]
    expected = {(c, k, s) for c in doc["clips"] for k, settings in doc["codecs"].items() for s in settings}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for r in doc["rows"]:
        w, h, n, rate = CLIPS[r["clip"]]
        assert (r["width"], r["height"], r["frames"], r["frame_rate"]) == (w, h, n, str(rate))
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (w * h * n))
        assert r["psnr_yuv"] == pytest.approx((6 * r["psnr_y"] + r["psnr_u"] + r["psnr_v"]) / 8)
        assert 12 < r["psnr_rgb"] < 60 and r["enc_fps"] > 0 and r["dec_fps"] > 0
        assert r["enc_fps"] == pytest.approx(n / r["enc_s"])


@pytest.mark.parametrize("codec", ["x264", "x265", "svtav1"])
def test_rate_and_quality_fall_as_crf_rises(swept, codec):
    doc = load(swept[0])
    for clip in doc["clips"]:
        rows = sorted((r for r in doc["rows"] if r["clip"] == clip and r["codec"] == codec),
                      key=lambda r: r["setting"])
        assert np.all(np.diff([r["bytes"] for r in rows]) < 0), (clip, [r["bytes"] for r in rows])
        assert np.all(np.diff([r["psnr_rgb"] for r in rows]) < 0)
    points = doc["summary"][codec]
    assert [p["setting"] for p in points] == doc["codecs"][codec]
    assert all(p["clips"] == 2 and p["frames"] == 11 for p in points)


def test_bd_rates_against_x264_are_in_the_file_and_the_summary(swept):
    doc = load(swept[0])
    assert set(doc["bd_rate"]) == {"x265", "svtav1"}
    for bd in doc["bd_rate"].values():
        for metric in ("psnr_rgb", "psnr_yuv"):
            if bd[metric] is not None:
                lo, hi = bd[metric]["overlap_db"]
                assert lo < hi and math.isfinite(bd[metric]["value_pct"])
    assert any(bd["psnr_rgb"] is not None for bd in doc["bd_rate"].values())
    md = swept[0].with_suffix(".md").read_text()
    assert "## BD-rate against x264" in md and "| CRF | bpp | PSNR-RGB | PSNR-YUV |" in md
    assert "bench video: 24/24 encodes" in swept[1]


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plots_are_written(swept):
    check_plots(swept[0], ("psnr_rgb", "psnr_yuv"))


def test_rerun_computes_nothing_already_in_the_file(swept, dataset, tmp_path, monkeypatch):
    result = copy_result(swept[0], tmp_path / "results")
    check_rerun_computes_nothing(video, result, sweep_args(dataset, result.parent), 24, monkeypatch)


def test_rerun_with_a_new_crf_computes_only_that_crf(swept, dataset, tmp_path, monkeypatch):
    result = copy_result(swept[0], tmp_path / "results")
    before = load(result)["rows"]
    submitted = []
    monkeypatch.setattr(video, "run_jobs", run_here(submitted))
    code, err = bench(*sweep_args(dataset, result.parent, x264=[*X264, 51]))
    assert code == 0, err
    assert sorted((j.clip, j.codec, j.setting) for j in submitted) == [
        ("ramp.mkv", "x264", 51), ("sub/waves.y4m", "x264", 51)]
    rows = load(result)["rows"]
    assert len(rows) == len(before) + 2 and all(r in rows for r in before)


@pytest.mark.skipif(find_spec("ray") is None, reason="ray is not installed")
def test_ray_executor_gives_the_rows_of_the_process_pool(swept, dataset, tmp_path):
    code, err = bench("--dataset", dataset, "--codecs", "x264", "--settings", "x264=28", "--executor", "ray",
                      "--out", tmp_path)
    assert code == 0, err
    rows = load(tmp_path / f"video_{dataset.name}.json")["rows"]
    assert sorted(r["clip"] for r in rows) == sorted(CLIPS)
    pooled = {r["clip"]: r for r in load(swept[0])["rows"] if (r["codec"], r["setting"]) == ("x264", 28)}
    for r in rows:
        assert (r["bytes"], r["psnr_rgb"]) == (pooled[r["clip"]]["bytes"], pooled[r["clip"]]["psnr_rgb"])


def test_frames_limits_each_clip_and_a_resume_must_keep_it(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(video, "run_jobs", run_here([]))
    args = ["--dataset", dataset / "ramp.mkv", "--codecs", "x264", "--settings", "x264=30", "--out", tmp_path]
    code, err = bench(*args, "--frames", 3)
    assert code == 0, err
    doc = load(tmp_path / "video_ramp.json")
    assert doc["frames"] == 3 and doc["clips"] == ["ramp.mkv"]
    assert [r["frames"] for r in doc["rows"]] == [3]
    code, err = bench(*args)
    assert code == 1 and "was made with frames 3, this run has None; pick another --out" in err


def test_files_and_folders_together_name_clips_from_their_common_folder(dataset, tmp_path, monkeypatch):
    submitted = []
    monkeypatch.setattr(video, "run_jobs", run_here(submitted))
    code, err = bench("--dataset", dataset / "sub", dataset / "ramp.mkv", "--codecs", "x264",
                      "--settings", "x264=30", "--frames", 2, "--name", "mixed", "--out", tmp_path)
    assert code == 0, err
    assert load(tmp_path / "video_mixed.json")["clips"] == ["sub/waves.y4m", "ramp.mkv"]


def test_a_missing_encoder_is_skipped_with_a_message(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(video_codecs.ENCODERS, "svtav1", "libnot-an-encoder")
    monkeypatch.setattr(video, "run_jobs", run_here([]))
    code, err = bench("--dataset", dataset / "ramp.mkv", "--codecs", "x264,svtav1", "--settings", "x264=30",
                      "--frames", 2, "--out", tmp_path)
    assert code == 0, err
    assert "bench video: skipping svtav1: the FFmpeg inside PyAV" in err
    assert "has no libnot-an-encoder encoder" in err
    doc = load(tmp_path / "video_ramp.json")
    assert set(doc["codecs"]) == {"x264"} and "svtav1" in doc["skipped"]


@pytest.mark.parametrize("args, message", [
    (["--codecs", "x264,vp9"], "unknown video codec 'vp9'"),
    (["--codecs", "x265"], "anchor 'x264' is not among the codecs"),
    (["--codecs", "x264", "--settings", "x264=60"], "x264 CRF must be 0..51, got 60"),
    (["--codecs", "x264", "--settings", "svtav1=30"], "--settings for 'svtav1'"),
    (["--codecs", "ncodec", "--anchor", "ncodec"], "none of the codecs can run here (ncodec)"),
])
def test_bad_arguments_exit_1_with_one_line(dataset, tmp_path, args, message):
    check_bad_arguments("video", dataset, tmp_path, args, message)


def test_missing_empty_or_broken_datasets_exit_1(dataset, tmp_path):
    code, err = bench("--dataset", tmp_path / "nope", "--codecs", "x264", "--out", tmp_path / "out")
    assert code == 1 and "dataset not found" in err
    (tmp_path / "empty").mkdir()
    code, err = bench("--dataset", tmp_path / "empty", "--codecs", "x264", "--out", tmp_path / "out")
    assert code == 1 and "no video files in" in err
    data = (dataset / "sub" / "waves.y4m").read_bytes()
    (tmp_path / "cut.y4m").write_bytes(data[: len(data) // 2 + 7])
    code, err = bench("--dataset", tmp_path / "cut.y4m", "--codecs", "x264", "--out", tmp_path / "out")
    assert code == 1 and err == "ncodec: error: cannot read cut.y4m (cut.y4m: truncated: the file ends " \
                                "inside a frame)\n"


def test_a_result_file_of_another_kind_is_not_overwritten(dataset, tmp_path):
    check_other_kind_is_kept(tmp_path / "video_ramp.json", "image",
                             ["--dataset", dataset / "ramp.mkv", "--codecs", "x264", "--out", tmp_path],
                             "is not a video benchmark result")


def test_psnr_yuv_follows_its_definition():
    grey = np.full((4, 6, 3), 100, np.uint8)
    y, u, v = rgb_to_yuv(grey)
    assert np.allclose(y, 100) and np.allclose(u, 128) and np.allclose(v, 128)
    red = rgb_to_yuv(np.array([[[255, 0, 0]]], np.uint8))[:, 0, 0]
    assert red == pytest.approx([0.2126 * 255, 128 - 0.2126 * 255 / 1.8556, 128 + 0.7874 * 255 / 1.5748])
    brighter = grey + np.uint8(5)  # a pure luma change: chroma identical (MSE floored)
    scores = psnr_yuv(grey, brighter)
    assert scores["psnr_y"] == pytest.approx(10 * math.log10(255**2 / 25))
    assert scores["psnr_u"] == scores["psnr_v"] == pytest.approx(10 * math.log10(255**2 / 1e-10))
    assert scores["psnr_yuv"] == pytest.approx((6 * scores["psnr_y"] + 2 * scores["psnr_u"]) / 8)


def test_odd_tiny_clips_are_padded_for_the_encoders_and_cropped_back():
    for codec in ("x264", "x265", "svtav1"):
        session = video_codecs.AnchorSession(codec, 33, 17, Fraction(25), 20)
        assert (session.coded_width, session.coded_height) == ((34, 18) if codec == "x264" else (64, 64))
        out = [f for rgb in [*frames(33, 17, 3), None] for f in session.feed(rgb, lambda: 0.0)]
        assert [f.shape for f in out] == [(17, 33, 3)] * 3 and session.result.frames == 3


def test_bench_video_modules_import_nothing_heavy():
    heavy = {"compressai", "matplotlib", "ray", "torch", "pandas", "scipy", "av"}
    assert not heavy & imported_after("ncodec.cli.main", "ncodec.bench.video", "ncodec.bench.video_codecs",
                                      "ncodec.video_io")


def test_unknown_codec_error_is_a_bench_error():
    with pytest.raises(BenchError, match="unknown video codec 'h266'"):
        video_codecs.check_video_codec("h266")


@pytest.mark.parametrize("codec", ["x264", "x265", "svtav1"])
def test_gop_sets_the_anchors_keyframe_interval(codec):
    """With gop=3, 7 frames hold 3 key frames (0, 3, 6); by default, 1."""
    def key_frames(gop: int | None) -> int:
        session = video_codecs.AnchorSession(codec, 64, 64, Fraction(25), 30, gop=gop)
        keys: list[bool] = []
        decode = session._decode

        def spy(packets, clock):
            keys.extend(p.is_keyframe for p in packets)
            return decode(packets, clock)

        session._decode = spy
        out = [f for rgb in [*frames(64, 64, 7), None] for f in session.feed(rgb, lambda: 0.0)]
        assert len(out) == 7
        return sum(keys)

    assert key_frames(3) == 3 and key_frames(None) == 1


def test_gop_is_recorded_and_a_resume_must_keep_it(dataset, tmp_path, monkeypatch):
    from ncodec.video_codec import MAX_GOP

    monkeypatch.setattr(video, "run_jobs", run_here([]))
    args = ["--dataset", dataset / "ramp.mkv", "--codecs", "x264", "--settings", "x264=30", "--frames", 6]
    code, err = bench(*args, "--gop", 2, "--out", tmp_path)
    assert code == 0, err
    doc = load(tmp_path / "video_ramp.json")
    assert doc["gop"] == 2 and "an intra frame every 2 frames" in (tmp_path / "video_ramp.md").read_text()
    code, err = bench(*args, "--out", tmp_path)
    assert code == 1 and "was made with gop 2, this run has None; pick another --out" in err
    code, err = bench(*args, "--gop", MAX_GOP + 1, "--out", tmp_path / "other")
    assert code == 1 and f"--gop must be within 1..{MAX_GOP}" in err and video.MAX_GOP == MAX_GOP
