"""Train a channel context for a trained hyperprior image model (resumable, time-bounded).

The transforms, gains and hyperprior stay exactly as in the --init model; only the context nets
learn. Their loss is the rate of the latent alone: with the analysis and synthesis transforms
fixed, the context changes which means the latent is rounded around, not how well it can be
reconstructed. Because g_a is fixed too, its latents are computed once, for a pool of random
training crops held in memory (float16), and every step draws from the pool: a step costs the
hyper networks and the small context nets at 1/16 resolution, not the transforms.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from ncodec.entropy.gaussian import SCALE_MIN, gaussian_likelihood

from .image_model import ImageHyperprior, ImageModelConfig, warm_start
from .media import image_files, load_rgb
from .train_image import CropSampler
from .training import (
    CHECKPOINT,
    Part,
    checkpoint_info,
    load_checkpoint,
    note,
    record,
    record_loss,
    save_checkpoint,
)


def _gains(model: ImageHyperprior, quality: torch.Tensor) -> torch.Tensor:
    """exp of the log-gains interpolated at fractional qualities 0..levels-1 [B] -> [B, M, 1, 1]."""
    lo = quality.floor().long().clamp(max=model.cfg.levels - 2)
    w = (quality - lo)[:, None]
    return ((1 - w) * model.log_gain[lo] + w * model.log_gain[lo + 1]).exp()[..., None, None]


def scaled_latent(model: ImageHyperprior, y: torch.Tensor, quality: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_a's outputs y [B, M, h, w] scaled to fractional qualities [B], h_s's output for them)."""
    ys = y * _gains(model, quality)
    return ys, model.h_s(torch.round(model.h_a(ys)))


def latent_bits(model: ImageHyperprior, ys: torch.Tensor, hyper: torch.Tensor, noise: bool,
                context: bool = True) -> torch.Tensor:
    """Bits [B] of scaled latents ys given h_s's output (noise: uniform noise in place of
    rounding; context=False: h_s's prior alone)."""
    mean, scale = model.latent_params(ys, hyper) if context else hyper.chunk(2, 1)
    centred = ys - mean
    q = centred + torch.empty_like(centred).uniform_(-0.5, 0.5) if noise else torch.round(centred)
    return -torch.log2(gaussian_likelihood(q, scale.clamp_min(SCALE_MIN))).sum((1, 2, 3))


@torch.no_grad()
def _latent_pool(model: ImageHyperprior, data: list[str], count: int, batch: int, crop: int,
                 seed: int) -> torch.Tensor:
    sampler = CropSampler(data, crop, np.random.default_rng(seed))
    pool = [model.g_a(sampler.batch(min(batch, count - i))).half() for i in range(0, count, batch)]
    return torch.cat(pool)


@torch.no_grad()
def _validation_latents(model: ImageHyperprior, folder: str | None) -> list[torch.Tensor]:
    """g_a's latents of the folder's images (cropped to multiples of 64)."""
    out = []
    for path in image_files(folder) if folder else []:
        im = load_rgb(path)
        h, w = im.shape[0] // 64 * 64, im.shape[1] // 64 * 64
        if h and w:
            x = torch.from_numpy(np.ascontiguousarray(im[:h, :w])).permute(2, 0, 1)[None].float() / 255
            out.append(model.g_a(x))
    return out


@torch.no_grad()
def validate(model: ImageHyperprior, latents: list[torch.Tensor]) -> list[float]:
    """Per quality level: the rounded latents' bits with the context over those without it."""
    ratios = []
    for level in range(model.cfg.levels):
        with_ctx = without = 0.0
        for y in latents:
            ys, hyper = scaled_latent(model, y, torch.tensor([float(level)]))
            with_ctx += float(latent_bits(model, ys, hyper, False))
            without += float(latent_bits(model, ys, hyper, False, context=False))
        ratios.append(round(with_ctx / without, 4))
    return ratios


def train_context(
    init: str, data: list[str], run_dir: str, minutes: float, steps: int = 10**9, slices: int = 8,
    hidden: int = 64, pool: int = 2400, batch: int = 16, crop: int = 256, lr: float = 1e-3,
    seed: int = 0, val: str | None = None, val_every: int = 2000,
) -> Path:
    """Train the context nets until `minutes` or `steps`; resumes from run_dir's checkpoint (with
    the checkpoint's layout). Returns the checkpoint path (the whole model, as
    `train_image.checkpoint_model` reads it)."""
    from .image_weights import load_float_model, resolve_hyperprior
    from .zoo import describe

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    resumed = checkpoint_info(run / CHECKPOINT)[1] if (run / CHECKPOINT).exists() else None
    init_path = resolve_hyperprior(init)
    source = load_float_model(init_path)
    if source.cfg.context_slices:
        raise ValueError(f"{init} already has a channel context")
    cfg = ImageModelConfig(**{**source.cfg.as_dict(), "context_slices": slices, "context_hidden": hidden})
    if resumed and resumed["cfg"] != cfg.as_dict():
        raise ValueError(f"{run} trains a context for {resumed['cfg']}, this run asks for {cfg.as_dict()}")
    torch.manual_seed(seed)
    model = ImageHyperprior(cfg)
    warm_start(model, source)
    model.eval().requires_grad_(False)
    model.context.requires_grad_(True)
    opt = torch.optim.Adam(model.context.parameters(), lr=lr)
    parts = {"model": Part(model, opt, "adam")}
    step = load_checkpoint(run, parts)
    info = describe(init_path)
    meta = {"cfg": cfg.as_dict(), "data": data, "seed": seed, "pool": pool, "crop": crop, "batch": batch,
            "lr": lr, "init": {"id": info.model_id, "sha256": info.sha256, "training": info.training}}
    training = step < steps and minutes > 0
    if training:
        note(f"step {step}: encoding a pool of {pool} crops of {crop}x{crop}")
        latents = _latent_pool(model, data, pool, batch, crop, seed)
    val_latents = _validation_latents(model, val)
    torch.manual_seed(seed + step)
    log = (run / "log.jsonl").open("a")
    start = last_save = time.monotonic()
    note(f"step {step}: training the channel context ({slices} slices) for {minutes} min")
    while training and step < steps and time.monotonic() - start < minutes * 60:
        y = latents[torch.randint(len(latents), (batch,))].float()
        if torch.rand(()) < 0.5:
            y = y.flip(3)
        ys, hyper = scaled_latent(model, y, torch.rand(batch) * (cfg.levels - 1))
        loss = latent_bits(model, ys, hyper, True).mean() / (crop * crop)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            record_loss(log, {"step": step, "loss": round(loss.item(), 4),
                              "elapsed_s": round(time.monotonic() - start)})
        if val_latents and step % val_every == 0:
            record(log, {"step": step, "val_rate_ratio": validate(model, val_latents)})
        if time.monotonic() - last_save > 300:
            save_checkpoint(run, parts, step, meta)
            last_save = time.monotonic()
    save_checkpoint(run, parts, step, meta)
    if val_latents:
        record(log, {"step": step, "val_rate_ratio": validate(model, val_latents)})
    note(f"stopped at step {step}; checkpoint in {run}")
    return run / CHECKPOINT
