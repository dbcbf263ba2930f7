"""Fit the RVQ-latent image model (ncodec.image_rvq) on the latents of a trained hyperprior model.

The transforms come from the hyperprior model file unchanged; the latent is g_a's output scaled
to what g_s reads at the top quality. The codebooks are trained by the RVQ's own EMA k-means
on latent vectors of random training crops, then the per-stage categorical priors are set to
the smoothed code frequencies on fresh crops.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .image_rvq import RVQImageConfig, RVQImageModel, export
from .train_image import CropSampler
from .training import hardware, note


@torch.no_grad()
def fit_rvq_image(init: str, data: list[str], out: str, model_id: str, batches: int = 200,
                  prior_batches: int = 50, batch: int = 16, crop: int = 256, stages: int = 32,
                  codebook_size: int = 256, seed: int = 0) -> Path:
    """Fit codebooks on `batches` batches and priors on `prior_batches` more; write the model file."""
    from .image_weights import load_float_model, resolve_hyperprior
    from .zoo import describe

    torch.manual_seed(seed)
    start = time.monotonic()
    init_path = resolve_hyperprior(init)
    source = load_float_model(init_path).eval()
    c = source.cfg
    cfg = RVQImageConfig(c.n, c.m, c.res_units, c.levels, stages, codebook_size)
    model = RVQImageModel(cfg).eval()
    model.g_a.load_state_dict(source.g_a.state_dict())
    model.g_s.load_state_dict(source.g_s.state_dict())
    top = c.levels - 1  # g_s reads y * gain * inverse gain: fold the top level's product into g_a
    scale = (source.log_gain[top] + source.log_inv_gain[top]).exp()
    last = model.g_a[-1]
    last.weight.mul_(scale.view(-1, 1, 1, 1))
    last.bias.mul_(scale)
    sampler = CropSampler(data, crop, np.random.default_rng(seed))
    model.rvq.train()
    for i in range(batches):
        model.rvq(model.vectors(sampler.batch(batch)))
        if (i + 1) % 20 == 0:
            note(f"codebooks: batch {i + 1}/{batches}")
    model.rvq.eval()
    codes = torch.cat([model.rvq.encode(model.vectors(sampler.batch(batch))) for _ in range(prior_batches)])
    model.prior.fit_counts(codes)
    source_info = describe(init_path)
    training = {
        "init": {"id": source_info.model_id, "sha256": source_info.sha256, "training": source_info.training},
        "data": data, "seed": seed, "batches": batches, "prior_batches": prior_batches, "batch": batch,
        "crop": crop, "hardware": hardware(), "minutes": round((time.monotonic() - start) / 60, 1),
    }
    return export(model, Path(out), model_id, training)
