"""Resumable, time-bounded training of the variable-rate image model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .image_model import ImageHyperprior, ImageModelConfig, warm_start
from .media import image_files, load_rgb
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

PARTS = ("g_a", "h_a", "g_s", "h_s", "context", "z_density", "gains")
QUANTIZATIONS = ("noise", "round")  # how the rate term sees the latents in training


def trainable_parameters(model: ImageHyperprior, parts: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Mark the parameters of `parts` (names in PARTS; "gains" is both log-gain tables) as
    trainable and every other one as frozen; returns the trainable ones."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"parts to train must be among {', '.join(PARTS)}, got {', '.join(parts) or 'none'}")
    model.requires_grad_(False)
    chosen = [model.log_gain, model.log_inv_gain] if "gains" in parts else []
    chosen += [p for name in parts if name != "gains" for p in getattr(model, name).parameters()]
    for p in chosen:
        p.requires_grad_(True)
    return chosen


class CropSampler:
    """Random crops with flips from images held in memory as uint8."""

    def __init__(self, folders: list[str], crop: int, rng: np.random.Generator):
        paths = [p for f in folders for p in image_files(f)]
        if not paths:
            raise FileNotFoundError(f"no images under {folders}")
        self.images = [im for im in map(load_rgb, paths) if min(im.shape[:2]) >= crop]
        self.crop = crop
        self.rng = rng
        note(f"training on {len(self.images)} images from {len(folders)} folder(s)")

    def batch(self, size: int) -> torch.Tensor:
        out = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(size):
            im = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(im.shape[0] - self.crop + 1)
            x = self.rng.integers(im.shape[1] - self.crop + 1)
            patch = im[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def _validation_set(folder: str | None, size: int = 256, count: int = 6) -> torch.Tensor | None:
    """Centre crops of the first `count` images, all of one size (a multiple of 64)."""
    if not folder:
        return None
    images = [load_rgb(p) for p in image_files(folder)[:count]]
    size = min([size, *(min(im.shape[:2]) for im in images)]) // 64 * 64
    if not images or size == 0:
        raise ValueError(f"validation folder {folder} has no image of at least 64x64")
    crops = []
    for im in images:
        y, x = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
        crops.append(im[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def validate(model: ImageHyperprior, images: torch.Tensor) -> dict[str, list[float]]:
    """Estimated bpp and PSNR at every quality level (rounded latents, no noise)."""
    model.eval()
    bpp, psnr = [], []
    for level in range(model.cfg.levels):
        out = model(images, torch.full((len(images),), level), noise=False)
        mse = (out["x_hat"].clamp(0, 1) - images).pow(2).mean((1, 2, 3))
        bpp.append(round(float(out["bpp"].mean()), 4))
        psnr.append(round(float((-10 * torch.log10(mse)).mean()), 3))
    model.train()
    return {"bpp": bpp, "psnr": psnr}


def train(
    data: list[str],
    run_dir: str,
    minutes: float,
    steps: int = 10**9,
    batch: int = 8,
    crop: int = 128,
    lr: float = 1e-4,
    seed: int = 0,
    val: str | None = None,
    val_every: int = 500,
    init: str | None = None,
    cfg: ImageModelConfig | None = None,
    precision: str = "auto",
    parts: tuple[str, ...] = PARTS,
    quantization: str = "noise",
) -> Path:
    """Train until `minutes` or `steps` is reached; resumes from run_dir/checkpoint.safetensors
    (with the checkpoint's model config; `cfg` applies to a new run, by default the `init`
    model's layout, else ImageModelConfig()).

    precision: "fp32", "bf16" (autocast of the transforms; latents and rates stay fp32) or
    "auto" (bf16 where the device computes it natively, e.g. AMX/AVX512-BF16 CPUs, else fp32).
    parts: the networks that learn (see PARTS), the rest stays frozen; e.g. ("g_s",) fine-tunes
    the decoder for the latents the encoder already writes, so rates stay exactly as they were.
    quantization: how the rate term sees the latents: "noise" (additive uniform noise) or
    "round" (the rounded symbols coding writes, straight-through gradients); "round" with the
    encoder frozen fine-tunes the decoder and entropy model for exactly the coded rate.
    A resumed run keeps the parts and quantization it started with.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    resumed = checkpoint_info(run / CHECKPOINT)[1] if (run / CHECKPOINT).exists() else None
    if resumed:  # a resumed run keeps the layout and the parts it started with
        cfg = ImageModelConfig(**resumed["cfg"])
        parts = tuple(resumed.get("parts", PARTS))
        quantization = resumed.get("quantization", "noise")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {', '.join(QUANTIZATIONS)}")
    if init:
        from .image_weights import image_config, load_float_model, resolve_hyperprior
        from .zoo import describe

        source = describe(resolve_hyperprior(init))
        cfg = cfg or image_config(source)
    cfg = cfg or ImageModelConfig()
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ImageHyperprior(cfg).to(device, memory_format=torch.channels_last)
    amp = resolve_precision(precision, device) == "bf16"
    params = trainable_parameters(model, parts)
    opt = torch.optim.Adam(params, lr=lr)
    saved = {"model": Part(model, opt, "adam")}
    step = load_checkpoint(run, saved)
    init_info = resumed.get("init") if resumed else None
    if step == 0 and init:
        warm_start(model, load_float_model(source.path).to(device))
        init_info = {"id": source.model_id, "sha256": source.sha256, "training": source.training}
        note(f"initialised from {source.path}")
    rng = np.random.default_rng(seed + step)
    sampler = CropSampler(data, crop, rng)
    val_images = _validation_set(val)
    lambdas = torch.tensor(cfg.lambdas, device=device)
    log = (run / "log.jsonl").open("a")
    meta = {"cfg": cfg.as_dict(), "data": data, "seed": seed, "init": init_info, "parts": list(parts),
            "quantization": quantization}
    start = time.monotonic()
    last_save = start
    note(f"step {step}: training {', '.join(parts)} ({quantization} rate) on {device} "
         f"({'bf16 autocast' if amp else 'fp32'}) for {minutes} min")
    while step < steps and time.monotonic() - start < minutes * 60:
        x = sampler.batch(batch).to(device, memory_format=torch.channels_last)
        level = torch.randint(0, cfg.levels, (batch,), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = model(x, level, noise=quantization == "noise")
        mse = (out["x_hat"] - x).pow(2).mean((1, 2, 3))
        loss = (out["bpp"] + lambdas[level] * 255**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            psnr = float((-10 * torch.log10(mse.detach())).mean())
            rec = {"step": step, "loss": round(loss.item(), 4),
                   "bpp": round(out["bpp"].mean().item(), 4), "psnr": round(psnr, 2),
                   "elapsed_s": round(time.monotonic() - start)}
            record_loss(log, rec)
        if val_images is not None and step % val_every == 0:
            record(log, {"step": step, "val": validate(model, val_images.to(device))})
        if time.monotonic() - last_save > 300:
            save_checkpoint(run, saved, step, meta)
            last_save = time.monotonic()
    save_checkpoint(run, saved, step, meta)
    note(f"stopped at step {step}; checkpoint in {run}")
    return run / CHECKPOINT


def checkpoint_model(ckpt: Path) -> tuple[ImageHyperprior, dict]:
    """The float model of an image training checkpoint and its provenance (steps and meta)."""
    from safetensors.torch import load_file

    step, meta = checkpoint_info(ckpt)
    model = ImageHyperprior(ImageModelConfig(**meta["cfg"]))
    model.load_state_dict(module_state(load_file(str(ckpt)), "model"))
    return model, {"steps": step, **meta}
