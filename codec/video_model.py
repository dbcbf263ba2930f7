"""Learned video model: the image hyperprior plus a temporal prior (training and float inference).

Every frame goes through the image model's transforms unchanged: x_t -> g_a -> y_t * gain[q] ->
h_a -> z_t, and h_s(z_hat_t) gives the hyperprior's (mean, scale) for y_t * gain[q]. An intra
frame is coded exactly as an image (with the image model's channel context, if it has one). An
inter frame replaces the hyperprior's (mean, scale) by the output of the temporal prior P, a small
convolutional network at latent resolution that sees the previous frame's quantized latent next
to the hyperprior's guess (a spatiotemporal entropy model, cf.
"Spatiotemporal Entropy Model is All You Need for Learned Video Compression"):

    (mean, scale)_t = (base_t, scale_h[t]) + P(y_q[t-1], mean_h[t], scale_h[t])

with base_t = mean_h[t] (base "hyperprior", the first models) or y_q[t-1] ("previous": an
untrained P predicts every element as its value in the previous frame, which P's 64-channel hidden
layers cannot pass through from its input). A model may hold one P per base (`prior_bases`): the
encoder then picks, frame by frame, the one that codes the frame for fewer bits, and training does
the same per window and frame (each P learns from the frames it wins: winner takes all). scale_h
is raw, as h_s computes it: the decoder's P reads it before any clamping (SPEC 7.3). With a
channel context, the context nets then correct P's (mean, scale) slice by slice as they correct
h_s's in intra frames (the inter mode the encoder picks most; the one P trains for).
All three inputs live in the gain-scaled domain (the domain of the symbols), so P needs no
quality input: y_q[t-1] = round(y[t-1] * gain - mean[t-1]) + mean[t-1], the value the decoder
holds as integers. P's last convolution starts at zero, so an untrained P codes inter frames
with the hyperprior alone, and training can only move it towards cheaper codes. P is built from
stride-1 convolutions and LeakyReLU(1/8) only: `fixed_point.build_intnet` mirrors it in exact
integer arithmetic, so the decoder picks every CDF identically on every machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from ncodec.entropy.gaussian import SCALE_MIN, gaussian_likelihood
from torch import nn

from .image_model import LAMBDAS, LEAK, ImageHyperprior, ImageModelConfig, _ste_round
from .layers import conv

PRIOR_BASES = ("hyperprior", "previous")  # an inter frame's mean: h_s's, or the previous latent, plus P's
MAX_PRIORS = 2  # temporal priors per model (an inter frame's mode flags name one of them)


@dataclass(frozen=True)
class VideoModelConfig:
    n: int = 112
    m: int = 192
    levels: int = 8
    prior_channels: int = 64  # width of the temporal prior's hidden layers
    res_units: int = 0  # the image part's residual units (ImageModelConfig)
    context_slices: int = 0  # the image part's channel context, used by intra frames
    context_hidden: int = 64
    lambdas: tuple[float, ...] = LAMBDAS  # the image part's ladder, which inter frames train with too
    prior_bases: tuple[str, ...] = ("hyperprior",)  # one temporal prior per base (PRIOR_BASES), in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambdas", self.image.lambdas)  # checked and made a tuple there
        bases = tuple(self.prior_bases)
        object.__setattr__(self, "prior_bases", bases)
        if not 1 <= len(bases) <= MAX_PRIORS or len(set(bases)) < len(bases):
            raise ValueError(f"prior_bases must name 1 to {MAX_PRIORS} different bases, got {list(bases)}")
        for base in bases:
            if base not in PRIOR_BASES:
                raise ValueError(f"prior_base must be one of {', '.join(PRIOR_BASES)}, got {base!r}")

    @property
    def image(self) -> ImageModelConfig:
        return ImageModelConfig(self.n, self.m, self.levels, self.res_units, self.context_slices,
                                self.context_hidden, self.lambdas)

    @classmethod
    def from_dict(cls, d: dict) -> VideoModelConfig:
        """From `as_dict`'s output; `prior_base` (one base: files of format -2) is read as `prior_bases`."""
        names = {f.name for f in fields(cls)}
        d = {"prior_bases": [d["prior_base"]], **d} if "prior_base" in d else d
        return cls(**{k: v for k, v in d.items() if k in names})

    def as_dict(self) -> dict:
        return {**asdict(self), "lambdas": list(self.lambdas), "prior_bases": list(self.prior_bases)}


class TemporalPrior(nn.Module):
    """(y_q of the previous frame, hyperprior mean, hyperprior scale) -> (mean, scale): corrections
    added to `base` (the hyperprior's mean, or y_q of the previous frame) and to the scale.

    Three 3x3 convolutions (receptive field: PRIOR_MARGIN latent positions on each side).
    """

    def __init__(self, m: int, channels: int, from_previous: bool = False):
        super().__init__()
        self.from_previous = from_previous
        self.net = nn.Sequential(
            conv(3 * m, channels, 3), nn.LeakyReLU(LEAK), conv(channels, channels, 3),
            nn.LeakyReLU(LEAK), conv(channels, 2 * m, 3),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y_prev: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(base + mean correction, scale + scale correction), unclamped, from h_s's raw (mean, scale)."""
        d_mean, d_scale = self.net(torch.cat([y_prev, mean, scale], 1)).chunk(2, 1)
        return (y_prev if self.from_previous else mean) + d_mean, scale + d_scale


PRIOR_MARGIN = 3  # latent positions each output of TemporalPrior depends on, on each side


class VideoModel(nn.Module):
    """The image model's transforms plus the temporal priors; `forward` codes short sequences."""

    def __init__(self, cfg: VideoModelConfig = VideoModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.image = ImageHyperprior(cfg.image)
        self.priors = nn.ModuleList(TemporalPrior(cfg.m, cfg.prior_channels, base == "previous")
                                    for base in cfg.prior_bases)
        self.register_load_state_dict_pre_hook(_one_prior_keys)

    def forward(self, frames: torch.Tensor, level: torch.Tensor, noise: bool = True,
                train_transforms: bool = False, reconstruct: bool = True) -> dict[str, torch.Tensor]:
        """frames [B, T, 3, H, W] in [0, 1] (H, W multiples of 64), level [B] quality indices.

        Frame 0 is intra (hyperprior, and the channel context if any), frames 1.. are inter
        (temporal prior on the previous frame's quantized latent, then the channel context if
        any; with several priors, per window the one that gives the fewest bits). Returns bpp
        [B, T] (y and z bits over the frame's pixels), prior [B, T - 1] (the prior of each inter
        frame; only with several priors) and, with `reconstruct`, x_hat [B, T, 3, H, W] and mse
        [B, T]. With train_transforms=False the image model runs without gradients: only the
        priors learn (the rate of inter frames).
        """
        b, t = frames.shape[:2]
        im = self.image
        x = frames.flatten(0, 1)
        levels = level.repeat_interleave(t)
        gain = im.log_gain[levels].exp()[..., None, None]
        with torch.set_grad_enabled(train_transforms and torch.is_grad_enabled()):
            y = im.g_a(x).float() * gain
            z = im.h_a(y).float()
            hyper = im.h_s(_ste_round(z)).float()
            z_q = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noise else torch.round(z)
            with torch.autocast(frames.device.type, enabled=False):
                z_bits = -torch.log2(im.z_density.likelihood(z_q)).sum((1, 2, 3)).view(b, t)
        y, hyper = (v.unflatten(0, (b, t)) for v in (y, hyper))
        y_bits, y_hat, prev, picked = [], [], None, []
        # under autocast only the transforms above and g_s below may run in bfloat16: the priors,
        # the context and the rates stay float32, as the image model's do
        with torch.autocast(frames.device.type, enabled=False):
            for i in range(t):
                guesses = [hyper[:, i]] if prev is None else [torch.cat(p(prev, *hyper[:, i].chunk(2, 1)), 1)
                                                             for p in self.priors]
                u = torch.empty_like(y[:, i]).uniform_(-0.5, 0.5) if noise else None
                coded = [self._code(y[:, i], im.latent_params(y[:, i], g), u) for g in guesses]
                bits, y_q, hat = (torch.stack(v) for v in zip(*coded, strict=True))  # [priors, B, ...]
                best = bits.detach().argmin(0)  # per window: the prior the encoder would pick
                if prev is not None:
                    picked.append(best)
                y_bits.append(bits.gather(0, best[None])[0])
                pick = best[None, :, None, None, None].expand_as(y_q[:1])
                prev = y_q.gather(0, pick)[0].detach()
                y_hat.append(hat.gather(0, pick)[0])
        pixels = frames.shape[3] * frames.shape[4]
        out = {"bpp": (torch.stack(y_bits, 1) + z_bits) / pixels}
        if picked and len(self.priors) > 1:
            out["prior"] = torch.stack(picked, 1)  # [B, T - 1]: the prior each inter frame was coded with
        if reconstruct:
            inv_gain = im.log_inv_gain[levels].exp()[..., None, None]
            with torch.set_grad_enabled(train_transforms and torch.is_grad_enabled()):
                x_hat = im.g_s(torch.stack(y_hat, 1).flatten(0, 1) * inv_gain).float()
            out["x_hat"] = x_hat.unflatten(0, (b, t))
            out["mse"] = (out["x_hat"] - frames).pow(2).mean((2, 3, 4))
        return out

    @staticmethod
    def _code(y: torch.Tensor, params: tuple[torch.Tensor, torch.Tensor], u: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bits [B], rounded latent, latent to synthesize) of y under (mean, scale); u: the
        uniform noise that stands in for rounding in the rate (None: rounded)."""
        mean, scale = params
        centred = y - mean
        noisy = centred + u if u is not None else torch.round(centred)
        bits = -torch.log2(gaussian_likelihood(noisy, scale.clamp_min(SCALE_MIN))).sum((1, 2, 3))
        return bits, torch.round(centred) + mean, _ste_round(centred) + mean


def _one_prior_keys(module: nn.Module, state: dict, prefix: str, *args) -> None:
    """State dicts of models with one temporal prior (`prior.*`, before `priors`) load as prior 0."""
    for key in [k for k in state if k.startswith(prefix + "prior.")]:
        state[prefix + "priors.0." + key[len(prefix + "prior."):]] = state.pop(key)
