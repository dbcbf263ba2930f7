"""The audio rate-distortion sweep behind `ncodec bench audio`.

Each audio file is one job (every pending codec and bitrate on it) run by a worker process or a
Ray task; a dataset's result file is rewritten after every file, and a rerun into the same file
computes only the (file, codec, setting) rows it lacks. Codecs: ncodec.bench.audio_codecs;
metrics: ncodec.bench.audio_metrics; schema: ncodec.bench.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from . import BenchError
from .audio_codecs import (
    BYTES_COUNTED,
    SETTINGS,
    AudioCodec,
    Encoded,
    check_audio_codec,
    check_bitrates,
    get_audio_codec,
    missing_encoder,
    ncodec_model,
)
from .audio_metrics import mel_distance, pesq_score, si_sdr, speech_metrics_missing, stoi_score
from .codecs import Setting
from .executors import run_jobs
from .machine import AUDIO_PACKAGES, ffmpeg_version, machine_info
from .results import SCHEMA, Progress, load_previous
from .sweep import (
    RowKey,
    Todo,
    bd_rates,
    check_models,
    check_unchanged,
    counted,
    dataset_files,
    drop_unavailable,
    fill,
    mean,
    note_resume,
    per_setting,
    plan_sweep,
    round_trip,
    todo,
)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
WARM_UP_SECONDS = 0.5
SPEECH_WORD = "speech"  # a dataset is speech when its folder name contains this (unless --speech says)
QUALITY = ("mel", "si_sdr", "pesq", "stoi")
BD_METRICS = {False: ("mel",), True: ("mel", "pesq")}  # by whether the dataset is speech (STOI saturates)
DEFINITIONS = {
    "kbps": "8 * bytes / seconds / 1000, bytes of the encoded file as a decoder needs it (bytes_counted)",
    "payload_kbps": "the same for the codec's packets alone, without container framing",
    "mel": "ncodec.audio_losses.mel_loss at 24 kHz, mean over channels; lower is better",
    "si_sdr": "SI-SDR in dB at the file's rate, mean over channels",
    "pesq": "PESQ MOS-LQO of the mono mix: wideband at 16 kHz, narrowband at 8 kHz below 16 kHz",
    "stoi": "STOI of the mono mix at the file's rate",
    "rtf": "enc_rtf / dec_rtf: seconds of audio per second of wall-clock compute on one thread "
           "(higher is faster; above 1 is faster than real time); in the summary, total audio "
           "seconds over total compute seconds",
    "length_diff": "decoded samples minus original samples, before trimming/zero-padding to the original",
}


@dataclass(frozen=True)
class AudioJob:
    """The work on one audio file: its path, or its bytes (Ray tasks, which may run on machines
    without the dataset)."""

    name: str  # path relative to the dataset folder
    path: str
    todo: Todo
    model: str | None  # ncodec audio model id
    speech: bool  # compute PESQ and STOI
    max_seconds: float | None  # only the first seconds of the file
    data: bytes | None = None


def audio_files(folder: Path) -> list[Path]:
    """The .wav/.flac/.ogg/.mp3 files under `folder` (recursive), sorted; anything else ignored."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def load_audio(source: str | bytes, name: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(float32 [channels, n], rate) of a file (path or bytes); more than 2 channels are mixed to mono."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as f:
            frames = -1 if max_seconds is None else max(round(max_seconds * f.samplerate), 1)
            x, rate = f.read(frames, dtype="float32", always_2d=True).T, f.samplerate
    except (RuntimeError, TypeError, ValueError) as err:  # LibsndfileError is a RuntimeError
        raise BenchError(f"cannot read {name} as audio ({err})") from None
    if x.shape[1] == 0:
        raise BenchError(f"{name} holds no samples")
    if x.shape[0] > 2:
        x = x.mean(0, keepdims=True)
    return np.ascontiguousarray(x), rate


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """y [channels, m] cut or zero-padded at the end to n samples."""
    return y[:, :n] if y.shape[1] >= n else np.pad(y, ((0, 0), (0, n - y.shape[1])))


def _at_rate(codec: AudioCodec, rate: int) -> tuple[Callable[[np.ndarray, Setting], Encoded],
                                                     Callable[[Encoded], np.ndarray]]:
    """The codec's encode and decode of audio at `rate`, as round_trip calls them."""
    return (lambda x, kbps: codec.encode(x, rate, kbps)), (lambda encoded: codec.decode(encoded.data, rate))


def measure(x: np.ndarray, y: np.ndarray, rate: int, speech: bool) -> dict:
    """Quality of y against x (same shape): mel, si_sdr, and for speech pesq, pesq_mode, stoi
    (None when the metric's package is missing or the dataset is not speech)."""
    out = {"mel": mel_distance(x, y, rate), "si_sdr": si_sdr(x, y), "pesq": None, "pesq_mode": None,
           "stoi": None}
    if speech:
        missing = speech_metrics_missing()
        if "pesq" not in missing:
            out["pesq"], out["pesq_mode"] = pesq_score(x, y, rate)
        if "stoi" not in missing:
            out["stoi"] = stoi_score(x, y, rate)
    return out


def run_audio_file(job: AudioJob) -> list[dict]:
    """Rows of every pending codec and bitrate on one file; runs in a worker with one torch thread.

    The first use of a (codec, setting) in a process is preceded by an untimed encode and decode of
    the first half second, so model loading and one-time set-up stay out of the timings."""
    import torch

    torch.set_num_threads(1)
    x, rate = load_audio(job.path if job.data is None else job.data, job.name, job.max_seconds)
    n = x.shape[1]
    seconds = n / rate
    warm_up = x[:, :max(round(WARM_UP_SECONDS * rate), 1)]
    rows = []
    for name, settings in job.todo:
        encode, decode = _at_rate(get_audio_codec(name, job.model), rate)
        for setting in settings:
            what = f"{job.name}: {name} at {setting} kbps"
            encoded, y, enc_s, dec_s = round_trip(encode, decode, x, setting, warm_up,
                                                  ("audio", name, setting), what)
            if y.ndim != 2 or y.shape[0] != x.shape[0]:
                raise BenchError(f"{what} decoded shape {y.shape}, expected {x.shape[0]} channels")
            size = len(encoded.data)
            rows.append({"file": job.name, "codec": name, "setting": setting, "sample_rate": rate,
                         "channels": x.shape[0], "seconds": seconds, "bytes": size,
                         "payload_bytes": encoded.payload_bytes, "kbps": 8 * size / seconds / 1000,
                         "payload_kbps": 8 * encoded.payload_bytes / seconds / 1000,
                         **measure(x, fit_length(y.astype(np.float32), n), rate, job.speech),
                         "length_diff": y.shape[1] - n, "enc_s": enc_s, "dec_s": dec_s,
                         "enc_rtf": seconds / enc_s, "dec_rtf": seconds / dec_s})
    return rows


def row_key(row: dict) -> RowKey:
    return row["file"], row["codec"], float(row["setting"])


def _point(setting: Setting, rows: list[dict]) -> dict:
    point = {"setting": setting, "files": len(rows), "seconds": float(sum(r["seconds"] for r in rows)),
             "kbps": mean(rows, "kbps"), "payload_kbps": mean(rows, "payload_kbps")}
    for metric in QUALITY:
        point[metric] = mean(rows, metric)
        if metric in ("pesq", "stoi"):
            point[f"{metric}_files"] = counted(rows, metric)
    point["enc_rtf"] = point["seconds"] / sum(r["enc_s"] for r in rows)
    point["dec_rtf"] = point["seconds"] / sum(r["dec_s"] for r in rows)
    return point


def summarise(rows: list[dict], files: list[str], codecs: dict[str, list[Setting]]) -> dict:
    """Per codec and setting, means over the `files` that have a row (see the schema)."""
    return per_setting(rows, files, codecs, row_key, _point)


@dataclass(frozen=True)
class Plan:
    """What a run will do, decided once for all datasets."""

    sweep: dict[str, list[Setting]]  # codecs that can run here, with their bitrates
    skipped: dict[str, str]  # codec -> why it cannot run here
    models: list[dict]  # [{id, sha256}] of the ncodec model, when ncodec runs
    model_id: str | None


def plan(codecs: list[str], anchor: str, bitrates: dict[str, list[Setting]], model: str | None,
         log: TextIO) -> Plan:
    sweep = plan_sweep(codecs, anchor, bitrates, check_audio_codec, SETTINGS.__getitem__, check_bitrates,
                       "--bitrates")
    models: list[dict] = []

    def unavailable(name: str) -> str | None:
        if name != "ncodec":
            return missing_encoder(name)
        try:
            info, offered = ncodec_model(model)
        except BenchError as err:
            return str(err)
        models.append(info)
        bad = [s for s in sweep[name] if not any(abs(s - k) < 1e-9 for k in offered)]
        if bad:
            raise BenchError(f"ncodec bitrates must be among {', '.join(f'{k:g}' for k in offered)} "
                             f"kbps (model {info['id']}), got {bad[0]:g}")
        return None

    skipped = drop_unavailable(sweep, unavailable, anchor, "bench audio", log)
    return Plan(sweep, skipped, models, models[0]["id"] if models else None)


def bench_audio(datasets: list[str | Path], codecs: list[str], anchor: str = "opus",
                out_dir: str | Path = "bench-results", workers: int = 1, limit: int | None = None,
                max_seconds: float | None = None, speech: bool | None = None,
                bitrates: dict[str, list[Setting]] | None = None, model: str | None = None,
                executor: str = "process", ray_address: str | None = None,
                log: TextIO | None = None) -> list[Path]:
    """Sweep `codecs` over the audio files of each dataset into DIR/audio_<dataset>.json (the paths
    are returned), resuming from what those files hold. `speech` True/False makes every dataset
    speech or not; None: speech when the folder name contains "speech". `bitrates` replaces the
    default sweep of some codecs; `model` is the ncodec audio model id; notes go to `log`."""
    log = log or sys.stderr
    if max_seconds is not None and not max_seconds > 0:
        raise BenchError(f"--max-seconds must be positive, got {max_seconds:g}")
    roots = [dataset_files(dataset, audio_files, limit, "audio files (.wav .flac .ogg .mp3)")
             for dataset in dict.fromkeys(map(str, datasets))]
    names = [root.name for root, _ in roots]
    if len(set(names)) < len(names):
        raise BenchError("two datasets have the same folder name (their result files would collide)")
    p = plan(list(dict.fromkeys(codecs)), anchor, bitrates or {}, model, log)
    missing = speech_metrics_missing()
    is_speech = {root: SPEECH_WORD in root.name.lower() if speech is None else speech for root, _ in roots}
    if missing and any(is_speech.values()):
        for metric, reason in missing.items():
            print(f"bench audio: no {metric.upper()}: {reason}", file=log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    speech_from = "folder name" if speech is None else "flag"
    return [_bench_dataset(root, files, p, anchor, out, workers, max_seconds, is_speech[root], speech_from,
                           missing, executor, ray_address, log) for root, files in roots]


def _bench_dataset(root: Path, files: list[Path], p: Plan, anchor: str, out_dir: Path, workers: int,
                   max_seconds: float | None, speech: bool, speech_from: str, missing: dict[str, str],
                   executor: str, ray_address: str | None, log: TextIO) -> Path:
    out = out_dir / f"audio_{root.name}.json"
    previous = load_previous(out, "audio") or {}
    rows: list[dict] = previous.get("rows", [])
    if rows:
        check_models(out, rows, previous.get("machine", {}).get("models", []), p.models)
        check_unchanged(out, {"max_seconds": (previous.get("max_seconds"), max_seconds),
                              "speech": (previous.get("dataset", {}).get("speech"), speech)})
    done = {row_key(r) for r in rows}
    names = [f.relative_to(root).as_posix() for f in files]
    jobs = [AudioJob(name, str(path), pending, p.model_id, speech, max_seconds,
                     path.read_bytes() if executor == "ray" else None)
            for path, name in zip(files, names, strict=True) if (pending := todo(name, p.sweep, done))]
    note_resume(out, len(names) * sum(map(len, p.sweep.values())),
                sum(len(s) for job in jobs for _, s in job.todo), "bench audio", log)
    not_measured = {m: "not a speech dataset" for m in ("pesq", "stoi")} if not speech else missing
    doc = {"schema": SCHEMA, "kind": "audio",
           "dataset": {"name": root.name, "path": str(root), "speech": speech, "speech_from": speech_from},
           "files": names, "max_seconds": max_seconds, "anchor": anchor, "codecs": p.sweep,
           "skipped": p.skipped, "metrics_skipped": not_measured,
           "bytes_counted": {name: BYTES_COUNTED[name] for name in p.sweep}, "definitions": DEFINITIONS,
           "machine": machine_info(p.models or previous.get("machine", {}).get("models", []),
                                   AUDIO_PACKAGES, {"ffmpeg": ffmpeg_version()})}

    def analyse(rows: list[dict]) -> dict:
        summary = summarise(rows, names, p.sweep)
        return {"summary": summary, "bd_rate": bd_rates(summary, anchor, BD_METRICS[speech], "kbps")}

    fill(out, doc, rows, row_key, analyse, Progress(len(jobs), log, f"bench audio {root.name}", "files"),
         lambda: run_jobs(run_audio_file, jobs, workers, executor, ray_address))
    return out
