"""Variable-rate mean-scale hyperprior image model (training and float inference).

x -> g_a -> y; y * gain[q] -> h_a -> z; z is rounded and coded with a factorized density;
h_s(z_hat) predicts (mean, scale) for y * gain[q]; y_hat * inverse_gain[q] -> g_s -> x_hat.
With a channel context (`context_slices` > 0) the latent is coded in equal channel slices and
slice s's (mean, scale) is h_s's plus a correction computed by a small per-position network from
h_s's values for the slice and the decoded slices before it (parallel over all positions).
Decoding uses the exact integer mirror of g_s, h_s and the context nets in `fixed_point.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from ncodec.entropy.factorized import FactorizedDensity
from ncodec.entropy.gaussian import SCALE_MIN, gaussian_likelihood
from torch import nn

from .layers import GDN, Residual, SubpixelUp, conv

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)  # the v1-v5 ladder
LEAK = 0.125  # LeakyReLU slope in the decoder: a power of two, exact in fixed point


@dataclass(frozen=True)
class ImageModelConfig:
    n: int = 112
    m: int = 192
    levels: int = len(LAMBDAS)
    res_units: int = 0  # residual units at g_s's 1/16, 1/8, 1/4 scales and g_a's 1/8 (0: v1 layout)
    context_slices: int = 0  # channel slices coded in turn (0: hyperprior only, the v1-v3 layout)
    context_hidden: int = 64  # width of each slice's context network
    lambdas: tuple[float, ...] = LAMBDAS  # quality level i trains rate + lambdas[i] * 255**2 * MSE

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambdas", tuple(float(v) for v in self.lambdas))
        if len(self.lambdas) != self.levels:
            raise ValueError(f"{self.levels} quality levels need as many lambdas, got {len(self.lambdas)}")
        if self.lambdas[0] <= 0 or any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:], strict=False)):
            raise ValueError(f"lambdas must be positive and increasing, got {self.lambdas}")

    def as_dict(self) -> dict:
        return {**asdict(self), "lambdas": list(self.lambdas)}


def residual_unit(channels: int, hidden: int) -> Residual:
    """x + conv(leaky(conv(x))); the last conv starts at zero, so a new unit starts as identity."""
    unit = Residual(conv(channels, hidden, 3), nn.LeakyReLU(LEAK), conv(hidden, channels, 3))
    nn.init.zeros_(unit[2].weight)
    nn.init.zeros_(unit[2].bias)
    return unit


def context_net(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Per-position (1x1) network whose last conv starts at zero: a new context changes nothing."""
    net = nn.Sequential(conv(cin, hidden, 1), nn.LeakyReLU(LEAK), conv(hidden, hidden, 1),
                        nn.LeakyReLU(LEAK), conv(hidden, cout, 1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ImageHyperprior(nn.Module):
    """Trainable model; `forward` returns the reconstruction and bits."""

    def __init__(self, cfg: ImageModelConfig = ImageModelConfig()):
        super().__init__()
        n, m = cfg.n, cfg.m
        self.cfg = cfg

        def units(channels: int) -> list[Residual]:
            return [residual_unit(channels, n // 2) for _ in range(cfg.res_units)]

        self.g_a = nn.Sequential(
            conv(3, n, 5, 2), GDN(n), conv(n, n, 5, 2), GDN(n),
            conv(n, n, 5, 2), GDN(n), *units(n), conv(n, m, 5, 2),
        )
        act = nn.LeakyReLU(LEAK)
        self.g_s = nn.Sequential(
            *units(m), SubpixelUp(m, n), act, *units(n), SubpixelUp(n, n), act, *units(n),
            SubpixelUp(n, n), act, SubpixelUp(n, 3),
        )
        self.h_a = nn.Sequential(
            conv(m, n, 3), nn.LeakyReLU(LEAK), conv(n, n, 5, 2), nn.LeakyReLU(LEAK), conv(n, n, 5, 2),
        )
        self.h_s = nn.Sequential(
            SubpixelUp(n, n), act, SubpixelUp(n, n), act, conv(n, 2 * m, 3),
        )
        self.z_density = FactorizedDensity(n)
        if cfg.context_slices and m % cfg.context_slices:
            raise ValueError(f"{m} latent channels do not split into {cfg.context_slices} slices")
        width = m // max(cfg.context_slices, 1)
        self.context = nn.ModuleList(context_net((2 + s) * width, cfg.context_hidden, 2 * width)
                                     for s in range(cfg.context_slices))
        # log-gains: quality level i scales the latent by exp(gain[i]) before quantization
        steps = torch.linspace(-1.5, 1.5, cfg.levels).view(-1, 1).expand(-1, m)
        self.log_gain = nn.Parameter(steps.clone())
        self.log_inv_gain = nn.Parameter(-steps.clone())

    def latent_params(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, unclamped scale) of the scaled latent y given h_s's output `hyper` [B, 2M, h, w].

        With a channel context, slice s sees the decoded values round(y - mean) + mean of the
        slices before it (as constants: the decoder's inputs, not a path for gradients).
        """
        mean, scale = hyper.chunk(2, 1)
        if not self.cfg.context_slices:
            return mean, scale
        means, scales, decoded = [], [], []
        parts = (t.chunk(self.cfg.context_slices, 1) for t in (y, mean, scale))
        for net, y_s, mu, sc in zip(self.context, *parts, strict=True):
            delta_mu, delta_sc = net(torch.cat([mu, sc, *decoded], 1)).chunk(2, 1)
            mu, sc = mu + delta_mu, sc + delta_sc
            decoded.append((torch.round(y_s - mu) + mu).detach())
            means.append(mu)
            scales.append(sc)
        return torch.cat(means, 1), torch.cat(scales, 1)

    def forward(
        self, x: torch.Tensor, level: torch.Tensor, noise: bool = True
    ) -> dict[str, torch.Tensor]:
        """x in [0,1] [B,3,H,W] (H, W multiples of 64); level: [B] quality indices.

        With noise=False the rate is measured on rounded values, as coding would (with
        straight-through gradients, so a model can also train on the symbols coding writes).
        """
        gain = self.log_gain[level].exp()[..., None, None]
        inv_gain = self.log_inv_gain[level].exp()[..., None, None]
        # Under autocast the transforms may run in bfloat16; latents, rounding and
        # likelihoods always stay float32 (bf16 cannot even represent y to 0.5 steps).
        y = self.g_a(x).float() * gain
        z = self.h_a(y).float()
        hyper = self.h_s(_ste_round(z)).float()
        with torch.autocast(x.device.type, enabled=False):
            mean, scale = self.latent_params(y, hyper)
            scale = scale.clamp_min(SCALE_MIN)
            z_q = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noise else _ste_round(z)
            z_bits = -torch.log2(self.z_density.likelihood(z_q))
            centred = y - mean
            if noise:
                y_q = centred + torch.empty_like(centred).uniform_(-0.5, 0.5)
            else:
                y_q = _ste_round(centred)
            y_bits = -torch.log2(gaussian_likelihood(y_q, scale))
        y_hat = (_ste_round(centred) + mean) * inv_gain
        x_hat = self.g_s(y_hat).float()
        pixels = x.shape[2] * x.shape[3]
        bpp = (y_bits.sum((1, 2, 3)) + z_bits.sum((1, 2, 3))) / pixels
        return {"x_hat": x_hat, "bpp": bpp}


def warm_start(model: ImageHyperprior, source: ImageHyperprior) -> None:
    """Load `source`'s parameters into `model`, which may add residual units or a channel
    context (with another slice count: a new one) to its layout.

    The units and context nets `source` lacks keep their zero-initialised output conv, so
    `model` starts out computing exactly what `source` computes.
    """
    for name in ("g_a", "h_a", "g_s", "h_s"):
        dst, src = getattr(model, name), getattr(source, name)
        trunk = [[m for m in net if not isinstance(m, Residual)] for net in (dst, src)]
        for a, b in zip(*trunk, strict=True):
            a.load_state_dict(b.state_dict())
        units = [[m for m in net if isinstance(m, Residual)] for net in (dst, src)]
        if units[1]:
            for a, b in zip(*units, strict=True):
                a.load_state_dict(b.state_dict())
    if model.cfg.context_slices == source.cfg.context_slices:
        model.context.load_state_dict(source.context.state_dict())
    model.z_density.load_state_dict(source.z_density.state_dict())
    for name in ("log_gain", "log_inv_gain"):
        gains = ladder_gains(getattr(source, name).data, source.cfg.lambdas, model.cfg.lambdas)
        getattr(model, name).data.copy_(gains)


def ladder_gains(log_gain: torch.Tensor, lambdas: tuple[float, ...], new: tuple[float, ...]) -> torch.Tensor:
    """Log-gains [levels, M] trained for `lambdas`, moved to the ladder `new`: piecewise linear
    in log lambda, extended past either end along the end segments (a start for fine-tuning)."""
    src = torch.tensor(lambdas, dtype=torch.float64).log()
    rows = []
    for lam in torch.tensor(new, dtype=torch.float64).log():
        i = int(torch.searchsorted(src, lam).clamp(1, len(src) - 1))
        t = float((lam - src[i - 1]) / (src[i] - src[i - 1]))
        rows.append((1 - t) * log_gain[i - 1] + t * log_gain[i])
    return torch.stack(rows)
