"""The image rate-distortion sweep behind `ncodec bench image`.

Each image is one job (every pending codec and setting on it) run by a worker process or a Ray
task; the result file is rewritten after every image, and a rerun into the same file computes only
the (image, codec, setting) rows it lacks. Schema: see ncodec.bench.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TextIO

import numpy as np

from . import BenchError
from .codecs import Codec, Setting, check_codec, default_settings, get_codec
from .executors import run_jobs
from .machine import machine_info
from .metrics import bd_rate, ms_ssim, psnr
from .results import SCHEMA, Progress, load_previous, write_json

WARM_UP_SIDE = 64
RowKey = tuple[str, str, float]  # image, codec, setting
_warmed: set[tuple[str, Setting]] = set()  # (codec, setting) already run once in this process


@dataclass(frozen=True)
class ImageJob:
    """The work on one image: its file, or the file's bytes (Ray tasks, which may run on machines
    without the dataset)."""

    name: str  # path relative to the dataset folder
    path: str
    todo: tuple[tuple[str, tuple[Setting, ...]], ...]  # (codec, settings) still to run
    model: str | None  # ncodec model id
    data: bytes | None = None


def _load_rgb(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise BenchError(f"cannot read {name} as an image ({err})") from None


def _timed(codec: Codec, rgb: np.ndarray, setting: Setting) -> tuple[bytes, np.ndarray, float, float]:
    t0 = time.perf_counter()
    data = codec.encode(rgb, setting)
    t1 = time.perf_counter()
    out = codec.decode(data)
    return data, out, t1 - t0, time.perf_counter() - t1


def run_image(job: ImageJob) -> list[dict]:
    """Rows of every pending codec and setting on one image; runs in a worker with one torch thread.

    The first use of a (codec, setting) in a process is preceded by an untimed encode and decode of
    a 64x64 crop, so model loading and one-time set-up stay out of the timings."""
    import torch

    torch.set_num_threads(1)
    rgb = _load_rgb(Path(job.path).read_bytes() if job.data is None else job.data, job.name)
    h, w = rgb.shape[:2]
    rows = []
    for name, settings in job.todo:
        codec = get_codec(name, job.model)
        for setting in settings:
            try:
                if (name, setting) not in _warmed:
                    _timed(codec, rgb[:WARM_UP_SIDE, :WARM_UP_SIDE], setting)
                    _warmed.add((name, setting))
                data, out, enc_s, dec_s = _timed(codec, rgb, setting)
            except BenchError:
                raise
            except Exception as err:
                raise BenchError(f"{job.name}: {name} at setting {setting}: "
                                 f"{type(err).__name__}: {err}") from None
            if out.shape != rgb.shape or out.dtype != np.uint8:
                raise BenchError(f"{job.name}: {name} at setting {setting} decoded {out.dtype} "
                                 f"{out.shape}, expected uint8 {rgb.shape}")
            rows.append({"image": job.name, "codec": name, "setting": setting, "width": w, "height": h,
                         "bytes": len(data), "bpp": 8 * len(data) / (w * h), "psnr": psnr(rgb, out),
                         "ms_ssim": ms_ssim(rgb, out), "enc_s": enc_s, "dec_s": dec_s})
    return rows


def row_key(row: dict) -> RowKey:
    return row["image"], row["codec"], float(row["setting"])


def summarise(rows: list[dict], images: list[str], codecs: dict[str, list[Setting]]) -> dict:
    """Per codec and setting, means over the `images` that have a row (see the schema)."""
    index = {row_key(r): r for r in rows}
    summary: dict[str, list[dict]] = {}
    for name, settings in codecs.items():
        summary[name] = []
        for setting in settings:
            sel = [index[k] for image in images if (k := (image, name, float(setting))) in index]
            if not sel:
                continue
            ms = [r["ms_ssim"] for r in sel if r["ms_ssim"] is not None]
            summary[name].append({
                "setting": setting, "images": len(sel),
                **{key: float(np.mean([r[key] for r in sel])) for key in ("bpp", "psnr")},
                "ms_ssim": float(np.mean(ms)) if ms else None, "ms_ssim_images": len(ms),
                **{key: float(np.mean([r[key] for r in sel])) for key in ("enc_s", "dec_s")}})
    return summary


def bd_rates(summary: dict[str, list[dict]], anchor: str) -> dict:
    return {name: {metric: bd_rate(summary[anchor], points, metric) for metric in ("psnr", "ms_ssim")}
            for name, points in summary.items() if name != anchor}


def _check_arguments(codecs: list[str], anchor: str, settings: dict[str, list[Setting]]) -> None:
    if not codecs:
        raise BenchError("no codecs given")
    for name in codecs:
        check_codec(name)
    if anchor not in codecs:
        raise BenchError(f"anchor {anchor!r} is not among the codecs ({', '.join(codecs)}); "
                         "add it to --codecs or pick another --anchor")
    for name in settings:
        if name not in codecs:
            raise BenchError(f"--settings for {name!r}, which is not among the codecs")
    if find_spec("pytorch_msssim") is None:
        raise BenchError("pytorch-msssim is not installed; pip install 'ncodec[bench]'")


def _models(codecs: list[str], model: str | None) -> list[dict]:
    if "ncodec" not in codecs:
        return []
    from ncodec.zoo import find

    info = find(model, "image")
    return [{"id": info.model_id, "sha256": info.sha256}]


def bench_image(dataset: str | Path, codecs: list[str], anchor: str = "webp",
                out_dir: str | Path = "bench-results", workers: int = 1, limit: int | None = None,
                executor: str = "process", settings: dict[str, list[Setting]] | None = None,
                model: str | None = None, ray_address: str | None = None,
                log: TextIO | None = None) -> Path:
    """Sweep `codecs` over the images of `dataset` into DIR/image_<dataset>.json (returned),
    resuming from what that file holds. `settings` replaces the default sweep of some codecs;
    `model` is the ncodec model id; progress and resume notes go to `log` (default stderr)."""
    from ncodec.media import image_files

    log = log or sys.stderr
    codecs = list(dict.fromkeys(codecs))
    settings = settings or {}
    _check_arguments(codecs, anchor, settings)
    root = Path(dataset).resolve()
    if not root.is_dir():
        raise BenchError(f"dataset folder not found: {dataset}")
    files = image_files(root)[:limit]
    if not files:
        raise BenchError(f"no images in {dataset}")
    sweep = {name: list(dict.fromkeys(settings.get(name) or default_settings(name))) for name in codecs}
    models = _models(codecs, model)
    model_id = models[0]["id"] if models else None

    out = Path(out_dir) / f"image_{root.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = load_previous(out, "image") or {}
    rows: list[dict] = previous.get("rows", [])
    old_models = previous.get("machine", {}).get("models", [])
    if models and old_models != models and any(r["codec"] == "ncodec" for r in rows):
        raise BenchError(f"{out} holds ncodec rows of model {old_models}, this run uses {models}; "
                         "pick another --out")
    done = {row_key(r) for r in rows}

    images = [p.relative_to(root).as_posix() for p in files]
    jobs = []
    for path, name in zip(files, images, strict=True):
        todo = tuple((codec, tuple(s for s in sweep[codec] if (name, codec, float(s)) not in done))
                     for codec in codecs)
        todo = tuple((codec, pending) for codec, pending in todo if pending)
        if todo:
            jobs.append(ImageJob(name, str(path), todo, model_id,
                                 path.read_bytes() if executor == "ray" else None))
    wanted = len(images) * sum(map(len, sweep.values()))
    pending = sum(len(s) for job in jobs for _, s in job.todo)
    if pending < wanted:
        print(f"bench image: resuming {out}: {wanted - pending} of {wanted} rows already there, "
              f"skipping them", file=log)

    doc = {"schema": SCHEMA, "kind": "image", "dataset": {"name": root.name, "path": str(root)},
           "images": images, "anchor": anchor, "codecs": sweep,
           "machine": machine_info(models or old_models)}

    def save() -> None:
        rows.sort(key=row_key)
        summary = summarise(rows, images, sweep)
        doc.update(summary=summary, bd_rate=bd_rates(summary, anchor), rows=rows)
        write_json(out, doc)

    if jobs:
        progress = Progress(len(jobs), log, "bench image", "images")
        for done_jobs, new_rows in enumerate(run_jobs(run_image, jobs, workers, executor, ray_address), 1):
            rows.extend(new_rows)
            save()
            progress.update(done_jobs)
    else:
        save()
    return out
