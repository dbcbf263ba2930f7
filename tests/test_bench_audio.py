"""`ncodec bench audio`: aligned Opus/MP3 round trips, metrics, result schema, resume, skipped codecs,
ncodec measured with a tiny model, report."""

import json
import sys
from functools import partial
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from bench_helpers import (
    check_bad_arguments,
    check_other_kind_is_kept,
    check_plots,
    check_rerun_computes_nothing,
    copy_result,
    load,
    report_without_matplotlib,
    run_bench,
    run_here,
    swept_result,
)
from conftest import imported_after
from ncodec.bench import BenchError, audio, audio_metrics
from ncodec.bench.audio_codecs import get_audio_codec
from ncodec.bench.audio_metrics import mel_distance, si_sdr

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "audio" / "speech_ljspeech_subset"
HAVE_SPEECH = SPEECH.is_dir() and any(SPEECH.glob("*.wav"))
HAVE_SPEECH_METRICS = find_spec("pesq") is not None and find_spec("pystoi") is not None
OPUS = [6, 12, 24, 48]
MP3 = [16, 32, 64, 128]
FILES = ["a.wav", "b.flac"]  # a: 1.5 s of speech (or a tone) at 22.05 kHz mono; b: 1 s stereo at 44.1 kHz
bench = partial(run_bench, "audio")


def sweep_args(dataset: Path, out: Path, *extra, opus: list[int] = OPUS) -> list:
    return ["--dataset", dataset, "--codecs", "opus,mp3", "--bitrates", "opus=" + ",".join(map(str, opus)),
            "--bitrates", "mp3=" + ",".join(map(str, MP3)), "--out", out, *extra]


def chord(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A few partials with a slow glide and some noise: float32 [channels, n]."""
    t = np.arange(round(rate * seconds)) / rate
    rng = np.random.default_rng(channels)
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 40 * c) * t * (1 + 0.2 * t))
                     + 0.15 * np.sin(2 * np.pi * 1100 * t) + 0.01 * rng.standard_normal(t.size)
                     for c in range(channels)]).astype(np.float32)


def speech_clip(seconds: float) -> tuple[np.ndarray, int]:
    x, rate = sf.read(sorted(SPEECH.glob("*.wav"))[0], dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T[:, : round(seconds * rate)]), rate


@pytest.fixture
def in_process(monkeypatch):
    """Run the bench jobs in this process (no worker start-up); records the jobs submitted."""
    submitted = []
    monkeypatch.setattr(audio, "run_jobs", run_here(submitted))
    return submitted


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("speech_clips")  # "speech" in the name: PESQ and STOI
    x, rate = speech_clip(1.5) if HAVE_SPEECH else (chord(22050, 1.5), 22050)
    sf.write(folder / "a.wav", x.T, rate)
    sf.write(folder / "b.flac", chord(44100, 1.0, 2).T, 44100)
    (folder / "LICENSE.txt").write_text("not audio")
    return folder


@pytest.fixture(scope="module")
def swept(dataset, tmp_path_factory) -> tuple[Path, str]:
    """One opus+mp3 sweep over the two files with two worker processes: (result file, stderr)."""
    out = tmp_path_factory.mktemp("results")
    return swept_result("audio", dataset, out, sweep_args(dataset, out, "--workers", 2))


def lag(x: np.ndarray, y: np.ndarray, reach: int = 200) -> int:
    """The shift of y against x (samples) with the largest correlation."""
    core = x[reach:-reach]
    return int(np.argmax(np.correlate(y, core, mode="valid"))) - reach


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("name, kbps, min_db", [("opus", 96, 25), ("mp3", 128, 20)])
def test_opus_and_mp3_decode_aligned_to_the_original(name, kbps, min_db, rate, channels):
    x = chord(rate, 1.1, channels)
    codec = get_audio_codec(name)
    y = codec.decode(codec.encode(x, rate, kbps).data, rate)
    assert y.shape[0] == channels and abs(y.shape[1] - x.shape[1]) <= 32  # LAME pads a few samples at 8 kHz
    y = audio.fit_length(y, x.shape[1])
    assert y.shape == x.shape and y.dtype == np.float32
    assert all(lag(x[c], y[c]) == 0 for c in range(channels))
    assert si_sdr(x, y) > min_db


def test_opus_is_in_ogg_and_mp3_has_no_id3_tag_but_its_delay_frame():
    x = chord(16000, 1.0)
    opus, mp3 = (get_audio_codec(name).encode(x, 16000, 32) for name in ("opus", "mp3"))
    assert opus.data.startswith(b"OggS") and b"OpusHead" in opus.data[:100]
    assert 0 < opus.payload_bytes < len(opus.data) - 50  # OpusHead, OpusTags, page headers
    assert not mp3.data.startswith(b"ID3") and b"Info" in mp3.data[:200]  # Xing/LAME info frame
    assert 0 < mp3.payload_bytes < len(mp3.data)


def test_identical_signals_score_perfectly_and_noise_lowers_the_scores():
    x = chord(22050, 1.0, 2)
    rng = np.random.default_rng(0)
    noisy = [x + a * rng.standard_normal(x.shape).astype(np.float32) for a in (0.003, 0.03)]
    assert mel_distance(x, x, 22050) == 0 and si_sdr(x, x) == pytest.approx(100)
    mels = [mel_distance(x, y, 22050) for y in noisy]
    sdrs = [si_sdr(x, y) for y in noisy]
    assert 0 < mels[0] < mels[1] and 100 > sdrs[0] > sdrs[1]
    snr = 10 * np.log10((x.astype(np.float64) ** 2).sum() / ((noisy[1] - x).astype(np.float64) ** 2).sum())
    assert sdrs[1] == pytest.approx(snr, abs=0.2)


def test_mel_distance_is_mel_loss_at_24_khz():
    from ncodec.audio_losses import mel_loss

    x, y = chord(24000, 0.5), chord(24000, 0.5) * 0.5
    expected = float(mel_loss(torch.from_numpy(y)[None], torch.from_numpy(x)[None], 24000))
    assert mel_distance(x, y, 24000) == pytest.approx(expected, rel=1e-5)


@pytest.mark.skipif(not (HAVE_SPEECH and HAVE_SPEECH_METRICS), reason="needs speech clips, pesq and pystoi")
def test_pesq_and_stoi_rank_clean_above_noisy_speech():
    x, rate = speech_clip(3.0)
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    clean, bad = audio.measure(x, x, rate, True), audio.measure(x, noisy, rate, True)
    assert clean["pesq_mode"] == "wb" and clean["pesq"] > 4.4 and clean["stoi"] > 0.99
    assert bad["pesq"] < clean["pesq"] - 1 and bad["stoi"] < clean["stoi"]
    x8 = audio_metrics._resample(x, rate, 8000)
    assert audio.measure(x8, x8, 8000, True)["pesq_mode"] == "nb"
    assert audio.measure(x, x, rate, False)["pesq"] is None


def test_result_has_the_documented_schema(swept, dataset):
    doc = load(swept[0])
    assert {"schema", "kind", "dataset", "files", "max_seconds", "anchor", "codecs", "skipped",
            "metrics_skipped", "bytes_counted", "definitions", "machine", "summary", "bd_rate",
            "rows"} <= doc.keys()
    assert doc["schema"] == 1 and doc["kind"] == "audio" and doc["anchor"] == "opus"
    assert doc["dataset"] == {"name": dataset.name, "path": str(dataset.resolve()), "speech": True,
                              "speech_from": "folder name"}
    assert doc["files"] == FILES and doc["max_seconds"] is None  # LICENSE.txt ignored
    assert doc["codecs"] == {"opus": OPUS, "mp3": MP3} and doc["skipped"] == {}
    assert "Ogg" in doc["bytes_counted"]["opus"] and "Xing" in doc["bytes_counted"]["mp3"]
    m = doc["machine"]
    for key in ("platform", "python", "cpu_model", "cpu_count", "torch", "numpy", "av", "soundfile", "pesq",
                "pystoi", "ffmpeg", "ncodec", "ncodec_commit", "ncodec_dirty", "models"):
        assert key in m
    assert m["python"] == ".".join(map(str, sys.version_info[:3])) and m["models"] == []


def test_every_file_codec_and_bitrate_has_one_measured_row(swept):
    doc = load(swept[0])
    keys = [(r["file"], r["codec"], r["setting"]) for r in doc["rows"]]
    expected = {(f, c, s) for f in doc["files"] for c, settings in doc["codecs"].items() for s in settings}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for r in doc["rows"]:
        assert (r["sample_rate"], r["channels"], r["seconds"]) == (
            (22050, 1, 1.5) if r["file"] == "a.wav" else (44100, 2, 1.0))
        assert r["kbps"] == pytest.approx(8 * r["bytes"] / r["seconds"] / 1000)
        assert r["payload_bytes"] < r["bytes"] and abs(r["length_diff"]) <= 2
        assert r["mel"] > 0 and -20 < r["si_sdr"] < 60  # Opus at 6 kbps keeps little of the waveform
        assert r["enc_rtf"] == pytest.approx(r["seconds"] / r["enc_s"]) and r["dec_rtf"] > 0
    if HAVE_SPEECH and HAVE_SPEECH_METRICS:
        speech_rows = [r for r in doc["rows"] if r["file"] == "a.wav"]
        assert all(r["pesq_mode"] == "wb" and 1 <= r["pesq"] <= 4.7 for r in speech_rows)
        assert all(0 < r["stoi"] <= 1 for r in speech_rows)


def test_quality_and_size_rise_with_the_opus_bitrate(swept):
    doc = load(swept[0])
    for name in doc["files"]:
        rows = sorted((r for r in doc["rows"] if r["file"] == name and r["codec"] == "opus"),
                      key=lambda r: r["setting"])
        assert np.all(np.diff([r["bytes"] for r in rows]) > 0)
        assert np.all(np.diff([r["mel"] for r in rows]) < 0)
        low, high = rows[0], rows[-1]  # VBR around the target, plus the Ogg pages
        assert low["payload_kbps"] < 1.5 * low["setting"] and 0.6 * high["setting"] < high["payload_kbps"]
    points = doc["summary"]["opus"]
    assert [p["setting"] for p in points] == OPUS and all(p["files"] == 2 for p in points)
    assert points[0]["seconds"] == pytest.approx(2.5)
    a = [r for r in doc["rows"] if r["codec"] == "opus" and r["setting"] == 6]
    assert points[0]["mel"] == pytest.approx(np.mean([r["mel"] for r in a]))
    assert points[0]["enc_rtf"] == pytest.approx(2.5 / sum(r["enc_s"] for r in a))


def test_bd_rate_of_mp3_against_opus_is_in_the_file(swept):
    bd = load(swept[0])["bd_rate"]
    assert set(bd) == {"mp3"} and set(bd["mp3"]) == {"mel", "pesq"}
    lo, hi = bd["mp3"]["mel"]["overlap"]
    assert lo < hi and bd["mp3"]["mel"]["value_pct"] > 0  # MP3 needs more bits than Opus


def test_progress_and_markdown(swept, dataset):
    result, err = swept
    assert f"bench audio {dataset.name}: 2/2 files" in err and "ETA" in err
    md = result.with_suffix(".md").read_text()
    assert "## BD-rate against opus" in md and "| mp3 | +" in md
    header = "| setting | kbps | payload kbps | mel distance | SI-SDR dB | PESQ | STOI | enc RTF | dec RTF |"
    assert md.count(header) == 2
    assert "2 files (2.5 s), speech (from the folder name)" in md
    assert md.count("\n| 32 |") == 1 and md.count("\n| 12 |") == 1


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plots_are_written(swept):
    check_plots(swept[0], ("mel", "si_sdr", "pesq", "stoi") if HAVE_SPEECH_METRICS else ("mel", "si_sdr"))


def test_without_matplotlib_the_report_says_how_to_get_plots(swept, tmp_path, monkeypatch):
    _, log = report_without_matplotlib(swept[0], tmp_path, monkeypatch)
    assert "bench audio: matplotlib is not installed" in log


def test_rerun_computes_nothing_already_in_the_file(swept, dataset, tmp_path, monkeypatch):
    result = copy_result(swept[0], tmp_path / "results")
    check_rerun_computes_nothing(audio, result, sweep_args(dataset, result.parent), 16, monkeypatch)


def test_an_interrupted_run_resumes_from_the_partial_file(swept, dataset, tmp_path, in_process):
    result = copy_result(swept[0], tmp_path / "results")
    doc = load(result)
    kept = [r for r in doc["rows"] if not (r["file"] == "b.flac" and r["codec"] == "mp3")]
    result.write_text(json.dumps({**doc, "rows": kept}))  # as if stopped before b.flac's mp3 rows
    code, err = bench(*sweep_args(dataset, result.parent, opus=[*OPUS, 16]))
    assert code == 0, err
    assert [(j.name, j.todo) for j in in_process] == [("a.wav", (("opus", (16,)),)),
                                                      ("b.flac", (("opus", (16,)), ("mp3", tuple(MP3))))]
    rows = load(result)["rows"]
    assert len(rows) == len(doc["rows"]) + 2 and all(r in rows for r in kept)


def test_a_rerun_with_other_max_seconds_is_refused(swept, dataset, tmp_path):
    result = copy_result(swept[0], tmp_path / "results")
    code, err = bench(*sweep_args(dataset, result.parent, "--max-seconds", 0.5))
    assert code == 1 and "was made with max_seconds None, this run has 0.5" in err


def test_max_seconds_cuts_every_file_and_no_speech_drops_pesq(dataset, tmp_path, in_process):
    code, err = bench("--dataset", dataset, "--codecs", "opus", "--bitrates", "opus=12",
                      "--max-seconds", 0.25, "--no-speech", "--out", tmp_path)
    assert code == 0, err
    doc = load(tmp_path / f"audio_{dataset.name}.json")
    assert doc["max_seconds"] == 0.25 and doc["dataset"]["speech"] is False
    assert doc["dataset"]["speech_from"] == "flag"
    assert doc["metrics_skipped"] == {"pesq": "not a speech dataset", "stoi": "not a speech dataset"}
    assert [r["seconds"] for r in doc["rows"]] == [pytest.approx(0.25, abs=1 / 22050)] * 2
    assert all(r["pesq"] is None and r["stoi"] is None for r in doc["rows"])


def test_missing_speech_metric_packages_are_named_once(dataset, tmp_path, in_process, monkeypatch):
    monkeypatch.setattr(audio_metrics, "find_spec", lambda name: None)
    code, err = bench("--dataset", dataset, "--codecs", "opus", "--bitrates", "opus=12", "--limit", 1,
                      "--out", tmp_path)
    assert code == 0, err
    assert "bench audio: no PESQ: pesq is not installed; pip install 'ncodec[audio-metrics]'" in err
    doc = load(tmp_path / f"audio_{dataset.name}.json")
    assert doc["metrics_skipped"]["stoi"] == "pystoi is not installed; pip install 'ncodec[audio-metrics]'"
    assert doc["rows"][0]["pesq"] is None and doc["rows"][0]["mel"] > 0


def no_audio_models(monkeypatch, tmp_path):
    import ncodec.zoo

    monkeypatch.setenv("NCODEC_MODEL_PATH", "")
    monkeypatch.setattr(ncodec.zoo, "ZOO_DIR", tmp_path / "empty-zoo")


@pytest.mark.parametrize("model, reason", [
    ([], "no audio model installed; train one with `ncodec train audio"),
    (["--model", "no-such-model"], "model 'no-such-model' is not installed"),
])
def test_ncodec_without_its_model_is_skipped_in_one_line(dataset, tmp_path, monkeypatch, in_process, model,
                                                          reason):
    no_audio_models(monkeypatch, tmp_path)
    code, err = bench("--dataset", dataset, "--codecs", "ncodec,opus", "--bitrates", "opus=12", "--limit", 1,
                      "--out", tmp_path / "out", *model)
    assert code == 0, err
    skip_lines = [line for line in err.splitlines() if line.startswith("bench audio: skipping ncodec")]
    assert len(skip_lines) == 1 and skip_lines[0].startswith("bench audio: skipping ncodec: " + reason)
    doc = load(tmp_path / "out" / f"audio_{dataset.name}.json")
    assert doc["codecs"] == {"opus": [12]} and doc["skipped"]["ncodec"].startswith(reason)
    assert {r["codec"] for r in doc["rows"]} == {"opus"} and doc["machine"]["models"] == []
    assert "- ncodec skipped: " + reason in (tmp_path / "out" / f"audio_{dataset.name}.md").read_text()


def test_only_skipped_codecs_is_an_error(dataset, tmp_path, monkeypatch):
    no_audio_models(monkeypatch, tmp_path)
    code, err = bench("--dataset", dataset, "--codecs", "ncodec", "--anchor", "ncodec",
                      "--out", tmp_path / "o")
    assert code == 1 and "none of the codecs can run here (ncodec)" in err


@pytest.fixture
def tiny_model_installed(tiny_audio_model, monkeypatch) -> dict:
    from ncodec.zoo import find

    model_id, folder = tiny_audio_model
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(folder))
    info = find(model_id, "audio")
    return {"id": info.model_id, "sha256": info.sha256}


def test_ncodec_is_measured_with_the_tiny_model(dataset, tmp_path, in_process, tiny_model_installed):
    code, err = bench("--dataset", dataset, "--codecs", "ncodec,opus", "--model", "tiny-audio",
                      "--bitrates", "ncodec=1.5,6,24", "--bitrates", "opus=6,12", "--out", tmp_path)
    assert code == 0, err
    doc = load(tmp_path / f"audio_{dataset.name}.json")
    assert doc["machine"]["models"] == [tiny_model_installed] and doc["skipped"] == {}
    assert doc["bytes_counted"]["ncodec"].startswith("the .ncz file")
    for name in FILES:
        rows = [r for r in doc["rows"] if r["file"] == name and r["codec"] == "ncodec"]
        assert [r["setting"] for r in rows] == [1.5, 6, 24]
        assert np.all(np.diff([r["bytes"] for r in rows]) > 0)
        assert all(r["length_diff"] == 0 and r["payload_bytes"] < r["bytes"] for r in rows)
        assert all(np.isfinite(r["mel"]) and r["mel"] > 0 and r["enc_rtf"] > 0 for r in rows)
    assert [p["setting"] for p in doc["summary"]["ncodec"]] == [1.5, 6, 24]
    assert set(doc["bd_rate"]) == {"ncodec"}


def test_ncodec_bitrates_must_be_the_models(dataset, tmp_path, tiny_model_installed):
    code, err = bench("--dataset", dataset, "--codecs", "ncodec,opus", "--model", "tiny-audio",
                      "--bitrates", "ncodec=5", "--out", tmp_path / "o")
    assert code == 1
    assert "ncodec bitrates must be among 1.5, 3, 6, 12, 24 kbps (model tiny-audio), got 5" in err


@pytest.mark.parametrize("args, message", [
    (["--codecs", "opus,aac"], "unknown audio codec 'aac'"),
    (["--codecs", "mp3"], "anchor 'opus' is not among the codecs"),
    (["--codecs", "opus", "--bitrates", "opus=4"], "opus bitrates must be 6..510 kbps, got 4"),
    (["--codecs", "opus", "--bitrates", "opus="], "--bitrates wants CODEC=VALUE"),
    (["--codecs", "opus", "--bitrates", "mp3=64"], "--bitrates for 'mp3'"),
])
def test_bad_arguments_exit_1_with_one_line(dataset, tmp_path, args, message):
    check_bad_arguments("audio", dataset, tmp_path, args, message)


def test_missing_or_empty_dataset_exits_1(tmp_path):
    code, err = bench("--dataset", tmp_path / "nope", "--codecs", "opus", "--out", tmp_path / "out")
    assert code == 1 and "dataset folder not found" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    code, err = bench("--dataset", tmp_path / "empty", "--codecs", "opus", "--out", tmp_path / "out")
    assert code == 1 and "no audio files (.wav .flac .ogg .mp3) in" in err


def test_an_image_result_file_is_not_overwritten(dataset, tmp_path):
    check_other_kind_is_kept(tmp_path / f"audio_{dataset.name}.json", "image", sweep_args(dataset, tmp_path),
                             "is not an audio benchmark result")


def test_unreadable_audio_is_a_clear_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not really")
    with pytest.raises(BenchError, match="cannot read bad.wav as audio"):
        audio.load_audio(str(tmp_path / "bad.wav"), "bad.wav")


def test_audio_bench_modules_import_nothing_heavy():
    heavy = {"compressai", "matplotlib", "ray", "pandas", "scipy", "torch", "av", "pesq", "pystoi"}
    assert not heavy & imported_after("ncodec.cli.main", "ncodec.bench.audio", "ncodec.bench.report")
