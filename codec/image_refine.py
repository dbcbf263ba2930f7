"""Encoder-side latent refinement: better rate-distortion from the same decoder.

The analysis transform only approximates the latent that minimises rate + lambda * distortion
for a given image. Refinement starts from its output and runs a few Adam steps on y itself,
through the float copy of the synthesis transform (bfloat16 where the hardware computes it
natively): distortion of the straight-through-rounded reconstruction plus the Gaussian rate of
the continuous residual (the rate of the rounded symbols gives straight-through gradients that
raise the rate). Of the latents visited, the one whose rounded symbols score best on rate +
lambda * distortion is kept, so refinement never does worse than the analysis transform by that
measure. The hyper latent z and hence every CDF stay fixed, so the decoder and the bitstream are
unchanged: only which symbols the encoder writes differs.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch
from ncodec.entropy.gaussian import SCALE_MIN, gaussian_likelihood

from .image_model import ImageHyperprior
from .image_weights import load_float_model
from .training import resolve_precision

REFINE_LR_FLOOR = 0.006  # the smallest first step size (the low-lambda end of refine_lr)


@cache
def float_model(path: Path) -> ImageHyperprior:
    """The float model of a model file (eval mode, no gradients), loaded once per path."""
    model = load_float_model(path).eval().to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def quality_lambda(quality: float, lambdas: tuple[float, ...]) -> float:
    """The training lambda of a (fractional) quality 1..len(lambdas) on a model's ladder `lambdas`,
    interpolated in log space."""
    lo = min(int(quality) - 1, len(lambdas) - 2)
    t = quality - 1 - lo
    return math.exp((1 - t) * math.log(lambdas[lo]) + t * math.log(lambdas[lo + 1]))


def refine_lr(lam: float) -> float:
    """The first learning rate of refinement for training lambda `lam`: lam, at least REFINE_LR_FLOOR.

    Measured on three 384x256 Kodak crops with 20 steps (the coded cost, bpp + lam * 255^2 * MSE,
    against no refinement): with image-hyperprior-v5 the best first steps were 0.0065 for lambda
    0.0035 (-1.5%), 0.0125 for 0.013 (-3.0%), 0.048-0.096 for 0.048 (-6.6%) and 0.09-0.37 for
    0.18 (-14.2%); with v6, 0.005-0.01 for 0.0005 (-2.4%; 0.0005 gave -0.4%) and 0.006 for 0.00116
    (-1.4%; 0.0012 gave -0.8%). Much larger steps lose the low-lambda refinements altogether.
    """
    return max(REFINE_LR_FLOOR, lam)


def refine_latent(
    model_path: Path, x: torch.Tensor, y: torch.Tensor, hyper: torch.Tensor,
    inv_gain: torch.Tensor, quality: float, steps: int, lr: float | None = None, context: bool = True,
) -> torch.Tensor:
    """Refined y for padded pixels x [1,3,H,W] in [0,1], given h_s's fixed output `hyper`.

    Adam with a cosine-decayed learning rate (from `lr` to 0 over `steps`; default `refine_lr`
    of the quality's lambda): large early steps move many symbols, the small late ones settle the
    rounding. The (mean, scale) of each step's latent come from the model's `latent_params`
    (with a channel context they follow the decoded slices; context=False takes `hyper`'s as they
    are, as a video inter frame coded without the context does). y: [1, M, H/16, W/16] float;
    hyper: [1, 2M, H/16, W/16] float; inv_gain [1, M, 1, 1]. Returns a tensor like y.
    """
    model = float_model(Path(model_path))
    g_s = model.g_s
    lam = quality_lambda(quality, model.cfg.lambdas)
    lr = refine_lr(lam) if lr is None else lr
    mse_weight = lam * 255**2
    pixels = x.shape[2] * x.shape[3]
    y = y.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    bf16 = resolve_precision("auto", x.device.type) == "bf16"
    best, best_y = math.inf, y.detach().clone()
    with torch.enable_grad():
        for step in range(steps + 1):  # the last pass only scores the last update
            mean, scale = model.latent_params(y, hyper) if context else hyper.chunk(2, 1)
            scale = scale.clamp_min(SCALE_MIN)
            centred = y - mean
            rounded = centred + (torch.round(centred) - centred).detach()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                y_hat = ((rounded + mean) * inv_gain).contiguous(memory_format=torch.channels_last)
                x_hat = g_s(y_hat).float()
            distortion = mse_weight * (x_hat - x).pow(2).mean()
            with torch.no_grad():  # the objective of what would be coded: rounded symbols
                coded = float(-torch.log2(gaussian_likelihood(rounded, scale)).sum() / pixels + distortion)
            if coded < best:
                best, best_y = coded, y.detach().clone()
            if step == steps:
                break
            bits = -torch.log2(gaussian_likelihood(centred, scale)).sum() / pixels
            opt.zero_grad(set_to_none=True)
            (bits + distortion).backward()
            opt.step()
            schedule.step()
    return best_y
