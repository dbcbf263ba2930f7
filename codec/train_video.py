"""Resumable, time-bounded training of the video model's temporal prior (and optionally more).

Data: video files (anything ncodec.video_io reads) are decoded once with PyAV into short windows
of consecutive frames at random positions, downscaled by 2 while their short side is at least
twice the crop, randomly cropped, and cached in the run folder as one uint8 array
(run/cache/windows.npy, [windows, frames, crop, crop, 3], memory-mapped: training never decodes
video again and never holds the set in memory). A held-out clip (--val, else the last file of
the data when there are several) gives validation bpp and PSNR.

Model: initialised from an image model file (--init-image). By default only the temporal prior P
learns (the image transforms, gains and hyperprior stay exactly as shipped): its loss is the rate
of the inter frames, which is all P changes. Why frozen by default: intra frames then code exactly
as the image codec does (the video model file carries the image model's tensors byte for byte),
P converges in minutes, and a few video clips cannot pull the image transforms away from what
the image training set taught them. `finetune_lr` > 0 also trains the transforms at that rate,
with the full loss rate + lambda * 255^2 * MSE at sampled quality levels (as train_image does).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from .image_weights import hyperprior_path
from .training import (
    CHECKPOINT,
    Part,
    checkpoint_info,
    load_checkpoint,
    module_state,
    note,
    record,
    record_loss,
    resolve_precision,
    save_checkpoint,
)
from .video_model import VideoModel, VideoModelConfig

CACHE_VERSION = 1
INIT_FILE = "image_init.safetensors"


def video_files(folders: list[str]) -> list[Path]:
    """Video files under the folders (recursive) or given directly, sorted per folder."""
    from .video_io import VIDEO_SUFFIXES

    out: list[Path] = []
    for f in map(Path, folders):
        if f.is_file():
            out.append(f)
        elif f.is_dir():
            out += sorted(p for p in f.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        else:
            raise FileNotFoundError(f"no such file or folder: {f}")
    return out


def _downscale(rgb: np.ndarray, crop: int) -> np.ndarray:
    """Halve (2x2 mean) while the short side is at least twice the crop."""
    while min(rgb.shape[:2]) >= 2 * crop:
        h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
        rgb = rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3)).round().astype(np.uint8)
    return rgb


def _fingerprint(files: list[Path], **settings) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_cache(files: list[Path], folder: Path, crop: int, frames: int, per_clip: int,
                seed: int) -> np.ndarray:
    """The windows array of `files` (built once, then reused while the inputs are unchanged)."""
    from .video_io import VideoError, VideoReader, VideoWarning

    folder.mkdir(parents=True, exist_ok=True)
    key = _fingerprint(files, crop=crop, frames=frames, per_clip=per_clip, seed=seed, v=CACHE_VERSION)
    array, manifest = folder / "windows.npy", folder / "windows.json"
    if array.exists() and manifest.exists() and json.loads(manifest.read_text()).get("key") == key:
        return np.load(array, mmap_mode="r")
    rng = np.random.default_rng(seed)
    plans = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VideoWarning)
                info = VideoReader(path).info
        except VideoError as err:
            note(f"skipping {path.name}: {err}")
            continue
        n = info.frames or 0
        if n < frames:
            note(f"skipping {path.name}: {n} frames, fewer than {frames}")
            continue
        starts = np.sort(rng.integers(0, n - frames + 1, per_clip))
        plans.append((path, starts))
    if not plans:
        raise FileNotFoundError(f"no usable video (at least {frames} frames, short side >= {crop})")
    total = sum(len(s) for _, s in plans)
    tmp = folder / "windows.tmp.npy"
    out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (total, frames, crop, crop, 3))
    row = 0
    for path, starts in plans:
        recent: list[np.ndarray] = []
        pending = list(starts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoWarning)
            reader = VideoReader(path)
            try:
                for t, rgb in enumerate(reader.frames()):
                    recent = (recent + [_downscale(rgb, crop)])[-frames:]
                    while pending and pending[0] + frames - 1 == t:
                        h, w = recent[0].shape[:2]
                        if min(h, w) < crop:
                            raise FileNotFoundError(f"{path.name}: frames {w}x{h} are smaller than the crop "
                                                    f"{crop}")
                        y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
                        out[row] = np.stack([f[y : y + crop, x : x + crop] for f in recent])
                        row += 1
                        pending.pop(0)
                    if not pending:
                        break
            except VideoError as err:
                note(f"{path.name}: stopped early ({err})")
        note(f"cached {len(starts) - len(pending)} windows of {path.name}")
    out.flush()
    del out
    if row < total:  # clips that ended early: keep the rows written
        kept = np.load(tmp, mmap_mode="r")[:row]
        np.save(array, kept)
        tmp.unlink()
    else:
        tmp.replace(array)
    manifest.write_text(json.dumps({"key": key, "files": [str(f) for f in files], "crop": crop,
                                    "frames": frames, "windows": row}, indent=1))
    return np.load(array, mmap_mode="r")


class WindowSampler:
    """Random batches of windows [B, T, 3, crop, crop] in [0, 1], with random flips in space and time."""

    def __init__(self, windows: np.ndarray, rng: np.random.Generator):
        if len(windows) == 0:
            raise FileNotFoundError("no training windows")
        self.windows, self.rng = windows, rng

    def batch(self, size: int) -> torch.Tensor:
        rows = np.sort(self.rng.choice(len(self.windows), size, replace=size > len(self.windows)))
        x = np.array(self.windows[rows])  # [B, T, H, W, 3]
        for i in range(size):
            if self.rng.random() < 0.5:
                x[i] = x[i, :, :, ::-1]
            if self.rng.random() < 0.5:
                x[i] = x[i, ::-1]
        return torch.from_numpy(x).permute(0, 1, 4, 2, 3).float().div_(255)


def validation_clip(path: Path, frames: int = 8, size: int = 256) -> torch.Tensor:
    """The first `frames` frames of a clip, centre-cropped to a multiple of 64 (at most `size`)."""
    from .video_io import VideoReader

    clip = list(VideoReader(path).frames(count=frames))
    h, w = clip[0].shape[:2]
    side_h, side_w = min(h, size) // 64 * 64, min(w, size) // 64 * 64
    if not side_h or not side_w:
        raise ValueError(f"validation clip {path} is smaller than 64x64")
    y, x = (h - side_h) // 2, (w - side_w) // 2
    arr = np.stack([f[y : y + side_h, x : x + side_w] for f in clip])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)[None]


@torch.no_grad()
def validate(model: VideoModel, clip: torch.Tensor) -> dict[str, list[float]]:
    """Per quality level, with rounded latents: bpp with every frame intra, bpp as the codec codes
    the clip (first frame intra, the rest inter), and PSNR."""
    model.eval()
    out: dict[str, list[float]] = {"bpp_intra": [], "bpp_video": [], "psnr": []}
    for level in range(model.cfg.levels):
        lv = torch.full((1,), level, device=clip.device)
        video = model(clip, lv, noise=False)
        intra = model(clip.transpose(0, 1), lv.expand(clip.shape[1]), noise=False, reconstruct=False)
        mse = (video["x_hat"].clamp(0, 1) - clip).pow(2).mean((2, 3, 4))
        out["bpp_intra"].append(round(float(intra["bpp"].mean()), 4))
        out["bpp_video"].append(round(float(video["bpp"].mean()), 4))
        out["psnr"].append(round(float((-10 * torch.log10(mse)).mean()), 3))
    model.train()
    return out


@dataclass(frozen=True)
class VideoTrainConfig:
    batch: int = 8
    crop: int = 256
    frames: int = 4  # per training window: 1 intra + 3 inter
    windows_per_clip: int = 200
    lr: float = 1e-4
    finetune_lr: float = 0.0  # > 0: the image transforms train too, at this rate
    prior_channels: int = 64
    prior_bases: tuple[str, ...] = ("hyperprior",)  # VideoModelConfig.prior_bases of a new run
    val_frames: int = 8
    val_every: int = 500
    log_every: int = 50
    precision: str = "auto"  # resolve_precision's: bf16 autocasts the transforms (may change on resume)


def train(data: list[str], run_dir: str, minutes: float, init_image: str | None = None, steps: int = 10**9,
          tc: VideoTrainConfig = VideoTrainConfig(), seed: int = 0, val: str | None = None,
          init_prior: list[str] | None = None) -> Path:
    """Train until `minutes` or `steps`; resumes from run_dir/checkpoint.safetensors.

    init_image (an image model file or id, or a video model whose image part to take) is needed
    for a new run; a resumed run ignores it.
    init_prior (video model files or ids) start a new run's temporal priors from theirs (same
    width; each from one on the same base where they hold one), e.g. when the image transforms
    change or to train two priors that were trained apart together.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from .zoo import describe, file_sha256

    init_copy = run / INIT_FILE
    if not init_copy.exists():
        if not init_image:
            raise ValueError("a new run needs --init-image (an image model file or id)")
        _copy_image_model(init_image, init_copy)
        note(f"initialised from {init_image}")
    from .image_weights import load_float_model

    image_info = describe(init_copy)
    cfg = VideoModelConfig.from_dict({**image_info.config, "prior_channels": tc.prior_channels,
                                      "prior_bases": tc.prior_bases})
    model = VideoModel(cfg)
    model.image.load_state_dict(load_float_model(init_copy).state_dict())
    model = model.to(device)
    amp = resolve_precision(tc.precision, device) == "bf16"
    finetune = tc.finetune_lr > 0
    groups = [{"params": model.priors.parameters(), "lr": tc.lr}]
    if finetune:
        groups.append({"params": model.image.parameters(), "lr": tc.finetune_lr})
    else:
        model.image.requires_grad_(False)
    opt = torch.optim.Adam(groups)
    parts = {"model": Part(model, opt, "adam")}
    meta = checkpoint_info(run / CHECKPOINT)[1] if (run / CHECKPOINT).exists() else {}
    if meta and meta.get("cfg") != cfg.as_dict():
        raise ValueError(f"{run} holds a model with config {meta.get('cfg')}, "
                         f"this run asks for {cfg.as_dict()}")
    step = load_checkpoint(run, parts)
    prior_info = meta.get("init_prior")
    if step == 0 and init_prior:
        prior_info = _warm_start_priors(model, init_prior)
    files = video_files(data)
    val_path = Path(val) if val else (files.pop() if len(files) > 1 else None)
    if val_path is not None and len(files) > 1:  # held out: never a training clip
        files = [f for f in files if f.resolve() != val_path.resolve()]
    settings = {
        "cfg": cfg.as_dict(), "data": [str(f) for f in files], "val": str(val_path) if val_path else None,
        "seed": seed, "image_model": {"id": image_info.model_id, "sha256": file_sha256(init_copy)},
        "finetune_lr": tc.finetune_lr, "lr": tc.lr, "crop": tc.crop, "frames": tc.frames,
        "windows": tc.windows_per_clip, "init_prior": prior_info}
    _check_resume(run, meta, settings)
    meta = {**settings, **{k: meta[k] for k in ("data", "val") if k in meta}}  # (the paths as first written)
    windows = build_cache(files, run / "cache", tc.crop, tc.frames, tc.windows_per_clip, seed)
    rng = np.random.default_rng(seed + step)
    sampler = WindowSampler(windows, rng)
    val_clip = validation_clip(val_path, tc.val_frames).to(device) if val_path else None
    lambdas = torch.tensor(cfg.lambdas, device=device)
    log = (run / "log.jsonl").open("a")
    start = last_save = time.monotonic()
    note(f"step {step}: training the temporal prior{' and the transforms' if finetune else ''} on {device} "
         f"({'bf16 autocast' if amp else 'fp32'}) with {len(windows)} windows for {minutes} min")
    while step < steps and time.monotonic() - start < minutes * 60:
        x = sampler.batch(tc.batch).to(device)
        level = torch.randint(0, cfg.levels, (tc.batch,), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = model(x, level, train_transforms=finetune, reconstruct=finetune)
        if finetune:
            loss = (out["bpp"] + lambdas[level, None] * 255**2 * out["mse"]).mean()
        else:
            loss = out["bpp"][:, 1:].mean()  # the intra frame's rate does not depend on P
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % tc.log_every == 0:
            bpp = out["bpp"].detach()
            rec = {"step": step, "loss": round(loss.item(), 4),
                   "bpp_intra": round(float(bpp[:, 0].mean()), 4),
                   "bpp_inter": round(float(bpp[:, 1:].mean()), 4),
                   "elapsed_s": round(time.monotonic() - start)}
            if "prior" in out:  # inter frames coded with each prior
                wins = torch.bincount(out["prior"].flatten(), minlength=len(model.priors))
                rec["prior_wins"] = wins.tolist()
            if "mse" in out:
                rec["psnr"] = round(float((-10 * torch.log10(out["mse"].detach())).mean()), 2)
            record_loss(log, rec)
        if val_clip is not None and step % tc.val_every == 0:
            record(log, {"step": step, "val": validate(model, val_clip)})
        if time.monotonic() - last_save > 300:
            save_checkpoint(run, parts, step, meta)
            last_save = time.monotonic()
    save_checkpoint(run, parts, step, meta)
    note(f"stopped at step {step}; checkpoint in {run}")
    return run / CHECKPOINT


RESUME_SETTINGS = ("data", "val", "seed", "lr", "finetune_lr", "crop", "frames", "windows")  # kept on resume


def _files(value: list[str] | str | None) -> list[Path] | Path | None:
    """Data (a list) or validation paths resolved from here, for comparing runs' records."""
    if isinstance(value, list):
        return [Path(p).resolve() for p in value]
    return None if value is None else Path(value).resolve()


def _check_resume(run: Path, recorded: dict, settings: dict) -> None:
    """Refuse to resume a run with other data or settings than its checkpoint records (the
    exported model's provenance is the checkpoint's record: it must stay true). Data and validation
    paths count as the same where they name the same files from here (relative or not); of a
    changed file list the message names the entries that differ."""
    changed = []
    for k in RESUME_SETTINGS:
        if k not in recorded:
            continue
        was, now = recorded[k], settings[k]
        same = (was, now) if k not in ("data", "val") else (_files(was), _files(now))
        if same[0] == same[1]:
            continue
        if k == "data" and set(same[0]) != set(same[1]):
            kept = set(same[0]) & set(same[1])
            was = [p for p, f in zip(was, same[0], strict=True) if f not in kept]
            now = [p for p, f in zip(now, same[1], strict=True) if f not in kept]
        changed.append(f"{k} {was!r} (now {now!r})")
    if changed:
        raise ValueError(f"{run} was trained with {'; '.join(changed)}: resume it with the same settings, "
                         f"or start a new run from its export (--init-prior)")


def _copy_image_model(init_image: str, dest: Path) -> None:
    """Copy the image model a new run starts from; a video model (file or id) gives its image part."""
    from .video_weights import write_image_part
    from .zoo import locate

    info = locate(init_image, "image")
    if info.modality == "video":
        write_image_part(info.path, dest)
    else:
        shutil.copyfile(hyperprior_path(info, init_image), dest)


def _warm_start_priors(model: VideoModel, init_prior: list[str]) -> list[dict]:
    """Load the temporal priors of video model files into `model`'s: each of `model`'s from the
    first source prior on its base, else the first source prior's scale part (its mean
    corrections add to another base). Returns what the run records of the files."""
    from .video_weights import load_float_model
    from .zoo import locate

    sources, records = [], []
    for name in init_prior:
        info = locate(name, "video")
        for prior in load_float_model(info.path).priors:
            if prior.net[0].out_channels != model.priors[0].net[0].out_channels:
                raise ValueError(f"{name!r} has a temporal prior of width {prior.net[0].out_channels}, "
                                 f"this run asks for {model.priors[0].net[0].out_channels}")
            sources.append((info.model_id, prior))
        records.append({"id": info.model_id, "sha256": info.sha256})
    for target, base in zip(model.priors, model.cfg.prior_bases, strict=True):
        same = [(i, p) for i, p in sources if p.from_previous == target.from_previous]
        model_id, source = (same or sources)[0]
        target.load_state_dict(source.state_dict())
        if not same:
            with torch.no_grad():
                for p in (target.net[-1].weight, target.net[-1].bias):
                    p[: p.shape[0] // 2].zero_()
        note(f"temporal prior on the {base} base initialised from {model_id}"
             + ("" if same else " (scale part: it adds to another mean)"))
    return records


def load_checkpoint_model(checkpoint: str | Path) -> tuple[VideoModel, dict, dict[str, torch.Tensor] | None]:
    """(model, training provenance, image tensors to store verbatim or None) of a checkpoint."""
    path = Path(checkpoint)
    step, meta = checkpoint_info(path)
    model = VideoModel(VideoModelConfig.from_dict(meta["cfg"]))
    model.load_state_dict(module_state(load_file(str(path)), "model"))
    provenance = (*RESUME_SETTINGS, "image_model", "init_prior", "hardware")  # (older runs lack some)
    training = {"steps": step, **{k: meta.get(k) for k in provenance}}
    image_tensors = None
    if not meta["finetune_lr"]:
        from .zoo import file_sha256

        init = path.parent / INIT_FILE
        if not init.exists() or file_sha256(init) != meta["image_model"]["sha256"]:
            raise FileNotFoundError(f"{init} is missing or changed: cannot export the frozen image part")
        image_tensors = load_file(str(init))
    return model, training, image_tensors
