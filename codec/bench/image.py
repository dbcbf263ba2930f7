"""The image rate-distortion sweep behind `ncodec bench image`.

Each image is one job (every pending codec and setting on it) run by a worker process or a Ray
task; the result file is rewritten after every image, and a rerun into the same file computes only
the (image, codec, setting) rows it lacks. Schema: see ncodec.bench.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TextIO

import numpy as np

from . import BenchError
from .codecs import Setting, check_codec, default_settings, get_codec, is_ncodec, ncodec_options
from .executors import run_jobs
from .machine import machine_info
from .metrics import ms_ssim, psnr
from .results import SCHEMA, Progress, load_previous
from .sweep import (
    RowKey,
    Todo,
    bd_rates,
    check_models,
    counted,
    dataset_files,
    fill,
    mean,
    note_resume,
    per_setting,
    plan_sweep,
    round_trip,
    todo,
)

WARM_UP_SIDE = 64
BD_METRICS = ("psnr", "ms_ssim")


@dataclass(frozen=True)
class ImageJob:
    """The work on one image: its file, or the file's bytes (Ray tasks, which may run on machines
    without the dataset)."""

    name: str  # path relative to the dataset folder
    path: str
    todo: Todo
    model: str | None  # ncodec model id
    data: bytes | None = None


def _load_rgb(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise BenchError(f"cannot read {name} as an image ({err})") from None


def run_image(job: ImageJob) -> list[dict]:
    """Rows of every pending codec and setting on one image; runs in a worker with one torch thread.

    The first use of a (codec, setting) in a process is preceded by an untimed encode and decode of
    a 64x64 crop, so model loading and one-time set-up stay out of the timings."""
    import torch

    torch.set_num_threads(1)
    rgb = _load_rgb(Path(job.path).read_bytes() if job.data is None else job.data, job.name)
    h, w = rgb.shape[:2]
    warm_up = rgb[:WARM_UP_SIDE, :WARM_UP_SIDE]
    rows = []
    for name, settings in job.todo:
        codec = get_codec(name, job.model)
        for setting in settings:
            what = f"{job.name}: {name} at setting {setting}"
            data, out, enc_s, dec_s = round_trip(codec.encode, codec.decode, rgb, setting, warm_up,
                                                 ("image", name, setting), what)
            if out.shape != rgb.shape or out.dtype != np.uint8:
                raise BenchError(f"{what} decoded {out.dtype} {out.shape}, expected uint8 {rgb.shape}")
            rows.append({"image": job.name, "codec": name, "setting": setting, "width": w, "height": h,
                         "bytes": len(data), "bpp": 8 * len(data) / (w * h), "psnr": psnr(rgb, out),
                         "ms_ssim": ms_ssim(rgb, out), "enc_s": enc_s, "dec_s": dec_s})
    return rows


def row_key(row: dict) -> RowKey:
    return row["image"], row["codec"], float(row["setting"])


def _point(setting: Setting, rows: list[dict]) -> dict:
    return {"setting": setting, "images": len(rows), **{key: mean(rows, key) for key in ("bpp", "psnr")},
            "ms_ssim": mean(rows, "ms_ssim"), "ms_ssim_images": counted(rows, "ms_ssim"),
            **{key: mean(rows, key) for key in ("enc_s", "dec_s")}}


def summarise(rows: list[dict], images: list[str], codecs: dict[str, list[Setting]]) -> dict:
    """Per codec and setting, means over the `images` that have a row (see the schema)."""
    return per_setting(rows, images, codecs, row_key, _point)


def _models(codecs: list[str], model: str | None) -> list[dict]:
    """Id and hash of each ncodec model the codecs name."""
    from ncodec.zoo import find

    infos = (find(ncodec_options(c)[0] or model, "image") for c in codecs if is_ncodec(c))
    return list({info.sha256: {"id": info.model_id, "sha256": info.sha256} for info in infos}.values())


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
    sweep = plan_sweep(codecs, anchor, settings or {}, check_codec, default_settings)
    if find_spec("pytorch_msssim") is None:
        raise BenchError("pytorch-msssim is not installed; pip install 'ncodec[bench]'")
    root, files = dataset_files(dataset, image_files, limit, "images")
    models = _models(codecs, model)

    out = Path(out_dir) / f"image_{root.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = load_previous(out, "image") or {}
    rows: list[dict] = previous.get("rows", [])
    old_models = previous.get("machine", {}).get("models", [])
    check_models(out, rows, old_models, models)
    done = {row_key(r) for r in rows}

    images = [p.relative_to(root).as_posix() for p in files]
    jobs = [ImageJob(name, str(path), pending, model, path.read_bytes() if executor == "ray" else None)
            for path, name in zip(files, images, strict=True) if (pending := todo(name, sweep, done))]
    note_resume(out, len(images) * sum(map(len, sweep.values())),
                sum(len(s) for job in jobs for _, s in job.todo), "bench image", log)

    doc = {"schema": SCHEMA, "kind": "image", "dataset": {"name": root.name, "path": str(root)},
           "images": images, "anchor": anchor, "codecs": sweep,
           "machine": machine_info(models or old_models)}

    def analyse(rows: list[dict]) -> dict:
        summary = summarise(rows, images, sweep)
        return {"summary": summary, "bd_rate": bd_rates(summary, anchor, BD_METRICS)}

    fill(out, doc, rows, row_key, analyse, Progress(len(jobs), log, "bench image", "images"),
         lambda: run_jobs(run_image, jobs, workers, executor, ray_address))
    return out
