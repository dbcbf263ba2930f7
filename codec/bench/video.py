"""The video rate-distortion sweep behind `ncodec bench video`.

Every (clip, codec, setting) is one job, run by a worker process: the clip is decoded frame by
frame (ncodec.video_io), each RGB frame is encoded in memory, the packets are decoded as they come
and each decoded frame is compared with its source, so memory stays bounded whatever the clip's
length. The result file is rewritten after every job, and a rerun into the same file computes only
the rows it lacks. Codecs: ncodec.bench.video_codecs.

SCHEMA of DIR/video_<dataset>.json (version 1):

    schema, kind  1, "video"
    dataset       {"name", "path": the folder the clip names are relative to, "inputs": [paths given]}
    clips         clip names (paths relative to dataset.path) of the last sweep
    frames        the --frames limit (first N frames of each clip), null for whole clips
    threads       encoder/decoder threads per job
    anchor        codec the BD-rates are measured against
    codecs        {codec: [CRFs swept]} of the codecs that ran (ncodec: qualities)
    skipped       {codec: why it could not run here}
    described     {codec: encoder, preset, pixel format, what the bytes are}
    definitions   {field: its definition} (the metrics below)
    machine       as for images (ncodec.bench; models: the ncodec video model) with av, the FFmpeg version
                  and the encoders present
    summary       {codec: [{setting, clips, frames, bpp, psnr_rgb, psnr_yuv, psnr_y, psnr_u, psnr_v,
                   enc_fps, dec_fps}]}: means over the clips; fps over all their frames
    bd_rate       {codec: {"psnr_rgb": BD, "psnr_yuv": BD}} against the anchor (ncodec.bench.metrics)
    rows          [{clip, codec, setting, width, height, frames, frame_rate ("30000/1001"), bytes, bpp,
                   psnr_rgb, psnr_yuv, psnr_y, psnr_u, psnr_v, enc_s, dec_s, enc_fps, dec_fps}]
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import numpy as np

from . import BenchError
from .codecs import Setting
from .executors import run_jobs
from .machine import ffmpeg_version, machine_info
from .metrics import psnr, psnr_yuv
from .results import SCHEMA, Progress, load_previous
from .sweep import (
    RowKey,
    bd_rates,
    check_models,
    check_unchanged,
    drop_unavailable,
    fill,
    mean,
    note_resume,
    per_setting,
    plan_sweep,
)
from .video_codecs import (
    DESCRIPTIONS,
    ENCODERS,
    SETTINGS,
    check_settings,
    check_video_codec,
    ncodec_model,
    session,
    unavailable,
)

VIDEO_PACKAGES = ("torch", "numpy", "av")
QUALITY = ("psnr_rgb", "psnr_yuv", "psnr_y", "psnr_u", "psnr_v")
BD_METRICS = ("psnr_rgb", "psnr_yuv")
WARM_UP = (64, 64, 2)  # width, height, frames of the untimed first run of a codec in a process
DEFINITIONS = {
    "bpp": "8 * bytes / (width * height * frames), bytes of the codec's stream (described)",
    "psnr_rgb": "PSNR of each frame over its RGB samples, peak 255 (MSE floored at 1e-10); the mean over "
                "the frames",
    "psnr_yuv": "(6 PSNR-Y + PSNR-U + PSNR-V) / 8 per frame, the planes being Y'CbCr from the RGB frames by "
                "BT.709 full range in float (no rounding or subsampling), peak 255; the mean over the frames",
    "psnr_y/u/v": "the per-plane PSNRs behind psnr_yuv, means over the frames",
    "enc_fps/dec_fps": "frames per second of wall-clock time in the encoder (from RGB frames, colour "
                       "conversion included) and in the decoder (to RGB frames), `threads` threads; in the "
                       "summary, total frames over total seconds",
}
_warmed: set[str] = set()  # codecs already run once in this process


@dataclass(frozen=True)
class VideoJob:
    clip: str  # name relative to the dataset folder
    path: str
    codec: str
    setting: Setting
    frames: int | None  # only the first frames
    threads: int
    model: str | None = None  # ncodec video model id
    gop: int | None = None  # the intra period of every codec (None: each codec's default)


MAX_GOP = 65535  # as ncodec's video codec allows (video_codec.MAX_GOP; not imported: it loads torch)


def video_files(folder: Path) -> list[Path]:
    """Video files under `folder` (recursive), sorted; anything else ignored."""
    from ncodec.video_io import VIDEO_SUFFIXES

    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _quiet() -> None:
    import av.logging

    av.logging.set_level(av.logging.ERROR)


def _warm_up(codec: str, threads: int, model: str | None) -> None:
    """An untimed encode and decode of a small grey clip, so library set-up (and model loading) stays
    out of timings."""
    if codec in _warmed:
        return
    width, height, frames = WARM_UP
    warm = session(codec, width, height, Fraction(25), SETTINGS[codec][0], threads, model)
    grey = np.full((height, width, 3), 128, np.uint8)
    for rgb in [grey] * frames + [None]:
        for _ in warm.feed(rgb, time.perf_counter):
            pass
    _warmed.add(codec)


def run_video_job(job: VideoJob) -> dict:
    """The row of one clip through one codec at one setting (in a worker process)."""
    from ncodec.video_io import VideoError, VideoReader, VideoWarning

    _quiet()
    warnings.simplefilter("ignore", VideoWarning)  # the main process has reported them
    try:
        reader = VideoReader(job.path, threads=job.threads)
    except (VideoError, OSError) as err:
        raise BenchError(f"cannot read {job.clip} ({err})") from None
    info = reader.info
    label = f"{job.clip}: {job.codec} at {'quality' if job.codec == 'ncodec' else 'CRF'} {job.setting:g}"
    try:
        _warm_up(job.codec, job.threads, job.model)
        coder = session(job.codec, info.width, info.height, info.frame_rate, job.setting, job.threads,
                        job.model, job.gop)
        pending: list[np.ndarray] = []
        scores: list[dict] = []

        def compare(decoded) -> None:
            for out in decoded:
                if not pending:
                    raise BenchError(f"{label}: the decoder returned more frames than were encoded")
                src = pending.pop(0)
                scores.append({"psnr_rgb": psnr(src, out), **psnr_yuv(src, out)})

        for rgb in reader.frames(count=job.frames):
            pending.append(rgb)
            compare(coder.feed(rgb, time.perf_counter))
        compare(coder.feed(None, time.perf_counter))
    except (BenchError, VideoError) as err:
        raise BenchError(str(err) if str(err).startswith(label) else f"{label}: {err}") from None
    except Exception as err:
        raise BenchError(f"{label}: {type(err).__name__}: {err}") from None
    coded = coder.result
    n = len(scores)
    if n == 0 or pending:
        raise BenchError(f"{label}: {len(pending) + n} frames in, {n} decoded")
    return {"clip": job.clip, "codec": job.codec, "setting": job.setting, "width": info.width,
            "height": info.height, "frames": n, "frame_rate": str(info.frame_rate), "bytes": coded.bytes,
            "bpp": 8 * coded.bytes / (info.width * info.height * n),
            **{key: float(np.mean([s[key] for s in scores])) for key in QUALITY},
            "enc_s": coded.enc_s, "dec_s": coded.dec_s, "enc_fps": n / coded.enc_s,
            "dec_fps": n / coded.dec_s}


def row_key(row: dict) -> RowKey:
    return row["clip"], row["codec"], float(row["setting"])


def _point(setting: Setting, rows: list[dict]) -> dict:
    frames = sum(r["frames"] for r in rows)
    return {"setting": setting, "clips": len(rows), "frames": frames,
            **{key: mean(rows, key) for key in ("bpp", *QUALITY)},
            "enc_fps": frames / sum(r["enc_s"] for r in rows),
            "dec_fps": frames / sum(r["dec_s"] for r in rows)}


def summarise(rows: list[dict], clips: list[str], codecs: dict[str, list[Setting]]) -> dict:
    """Per codec and setting, means over the `clips` that have a row (see the schema)."""
    return per_setting(rows, clips, codecs, row_key, _point)


def gather(inputs: list[str | Path], limit: int | None = None) -> tuple[Path, list[Path]]:
    """(the folder clip names are relative to, the clips) of --dataset: folders (searched
    recursively for video files) and files, in the order given."""
    if not inputs:
        raise BenchError("no dataset given")
    files: list[Path] = []
    for entry in dict.fromkeys(map(str, inputs)):
        path = Path(entry).resolve()
        if path.is_dir():
            found = video_files(path)
            if not found:
                raise BenchError(f"no video files in {entry}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BenchError(f"dataset not found: {entry}")
    files = list(dict.fromkeys(files))[:limit]
    folders = [Path(entry).resolve() for entry in map(str, inputs) if Path(entry).is_dir()]
    if len(folders) == 1 and len(inputs) == 1:
        return folders[0], files
    return Path(os.path.commonpath([f.parent for f in files])), files


def check_clips(files: list[Path], clips: list[str], log: TextIO) -> None:
    """BenchError (one line) for the first clip that cannot be read, before any job starts; what
    the reader does about awkward clips (variable frame rate, 10-bit) goes to `log`."""
    from ncodec.video_io import VideoError, VideoReader, VideoWarning

    for path, clip in zip(files, clips, strict=True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VideoWarning)
            try:
                VideoReader(path)
            except (VideoError, OSError) as err:
                raise BenchError(f"cannot read {clip} ({err})") from None
        for w in caught:
            print(f"bench video: {w.message}", file=log)


@dataclass(frozen=True)
class Plan:
    sweep: dict[str, list[Setting]]  # codecs that can run here, with their settings
    skipped: dict[str, str]  # codec -> why it cannot run here
    models: list[dict]  # [{id, sha256}] of the ncodec video model, when ncodec runs
    model_id: str | None = None


def plan(codecs: list[str], anchor: str, settings: dict[str, list[Setting]], log: TextIO,
         model: str | None = None) -> Plan:
    sweep = plan_sweep(codecs, anchor, settings, check_video_codec, SETTINGS.__getitem__, check_settings)
    models: list[dict] = []

    def why_not(name: str) -> str | None:
        if name != "ncodec":
            return unavailable(name)
        try:
            info, levels = ncodec_model(model)
        except BenchError as err:
            return str(err)
        models.append(info)
        bad = [s for s in sweep[name] if s > levels]
        if bad:
            raise BenchError(f"ncodec quality must be 1..{levels} (model {info['id']}), got {bad[0]:g}")
        return None

    skipped = drop_unavailable(sweep, why_not, anchor, "bench video", log)
    return Plan(sweep, skipped, models, models[0]["id"] if models else None)


def encoders_present() -> dict[str, bool]:
    """{encoder library: whether this PyAV's FFmpeg has it}."""
    import av

    return {lib: lib in av.codecs_available for lib in ENCODERS.values()}


def bench_video(dataset: list[str | Path], codecs: list[str], anchor: str = "x264",
                out_dir: str | Path = "bench-results", workers: int = 1, frames: int | None = None,
                threads: int = 1, settings: dict[str, list[Setting]] | None = None,
                limit: int | None = None, name: str | None = None, log: TextIO | None = None,
                model: str | None = None, executor: str = "process", ray_address: str | None = None,
                gop: int | None = None) -> Path:
    """Sweep `codecs` over the clips of `dataset` (folders and files) into DIR/video_<name>.json
    (returned), resuming from what that file holds. `frames`: only the first N frames of each clip;
    `threads`: encoder/decoder threads per job; `settings` replaces the default CRFs (ncodec:
    qualities) of some codecs; `name`: the dataset name (default: the folder the clips are in, or
    the one file's stem); `model`: the ncodec video model id (default: as `ncodec encode` picks);
    `gop`: one intra period for every codec (ncodec's GOP, the anchors' keyframe interval; default:
    each codec's own);
    `executor`: "process" (a local pool of `workers`) or "ray" (tasks on the cluster at `ray_address`)."""
    log = log or sys.stderr
    if frames is not None and frames < 1:
        raise BenchError(f"--frames must be at least 1, got {frames}")
    if gop is not None and not 1 <= gop <= MAX_GOP:
        raise BenchError(f"--gop must be within 1..{MAX_GOP}, got {gop}")
    root, files = gather(dataset, limit)
    p = plan(list(dict.fromkeys(codecs)), anchor, settings or {}, log, model)
    name = name or (files[0].stem if len(dataset) == 1 and Path(dataset[0]).is_file() else root.name)
    out = Path(out_dir) / f"video_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = load_previous(out, "video") or {}
    rows: list[dict] = previous.get("rows", [])
    if rows:
        check_models(out, rows, previous.get("machine", {}).get("models", []), p.models)
        check_unchanged(out, {"frames": (previous.get("frames"), frames),
                              "threads": (previous.get("threads"), threads),
                              "gop": (previous.get("gop"), gop)})
    done = {row_key(r) for r in rows}
    clips = [f.relative_to(root).as_posix() for f in files]
    check_clips(files, clips, log)
    jobs = [VideoJob(clip, str(path), codec, s, frames, threads, p.model_id, gop)
            for codec, values in p.sweep.items() for path, clip in zip(files, clips, strict=True)
            for s in values if (clip, codec, float(s)) not in done]
    note_resume(out, len(clips) * sum(map(len, p.sweep.values())), len(jobs), "bench video", log)
    doc = {"schema": SCHEMA, "kind": "video",
           "dataset": {"name": name, "path": str(root), "inputs": [str(Path(d).resolve()) for d in dataset]},
           "clips": clips, "frames": frames, "threads": threads, "gop": gop, "anchor": anchor,
           "codecs": p.sweep,
           "skipped": p.skipped, "described": {c: DESCRIPTIONS[c] for c in p.sweep},
           "definitions": DEFINITIONS,
           "machine": machine_info(p.models or previous.get("machine", {}).get("models", []), VIDEO_PACKAGES,
                                   {"ffmpeg": ffmpeg_version(), "encoders": encoders_present()})}

    def analyse(rows: list[dict]) -> dict:
        summary = summarise(rows, clips, p.sweep)
        return {"summary": summary, "bd_rate": bd_rates(summary, anchor, BD_METRICS)}

    fill(out, doc, rows, row_key, analyse, Progress(len(jobs), log, "bench video", "encodes"),
         lambda: ([row] for row in run_jobs(run_video_job, jobs, workers, executor, ray_address)))
    return out
