"""SEANet-style audio model at 24 kHz mono: convolutional encoder, RVQ, convolutional decoder.

x [B, 1, T] -> encoder (strided Conv1d, 320x down) -> y [B, D, T/320] -> residual VQ
(up to 32 stages of 1024 codewords, quantizer dropout) -> decoder (ConvTranspose1d up) -> x_hat.
The decoder uses only convolutions, residual sums and LeakyReLU with slope 1/8, so
`fixed_point_1d` can mirror it in exact integer arithmetic. No tanh: outputs are clamped later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from ncodec.entropy.categorical import CategoricalPrior
from torch import nn

from .fixed_point import LEAK_SHIFT
from .layers import Residual
from .rvq import ResidualVectorQuantizer

LEAK = 2.0**-LEAK_SHIFT
STAGE_STEPS = (2, 4, 8, 16, 32)  # stage counts offered as bitrates (1.5 .. 24 kbps by default)


@dataclass(frozen=True)
class AudioModelConfig:
    sample_rate: int = 24000
    channels: int = 24  # width after the first conv; doubles at every downsampling
    ratios: tuple[int, ...] = (2, 4, 5, 8)  # encoder strides; the decoder uses them reversed
    dim: int = 64  # latent (and codeword) size
    residual_units: int = 3  # per resolution, dilations 1, 3, 9, ...
    n_stages: int = 32
    codebook_size: int = 1024

    @property
    def hop(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioModelConfig:
        return cls(**{**d, "ratios": tuple(d["ratios"])})


TINY = AudioModelConfig(channels=4, dim=16, residual_units=1)


def bitrates(cfg: AudioModelConfig) -> dict[float, int]:
    """Nominal bitrate in kbps -> number of RVQ stages (1.5: 2, 3: 4, ... 24: 32 by default)."""
    bits = math.log2(cfg.codebook_size) * cfg.frame_rate / 1000
    return {round(n * bits, 3): n for n in STAGE_STEPS if n <= cfg.n_stages}


def _residual(c: int, dilation: int) -> Residual:
    return Residual(nn.LeakyReLU(LEAK), nn.Conv1d(c, c // 2, 3, dilation=dilation, padding=dilation),
                    nn.LeakyReLU(LEAK), nn.Conv1d(c // 2, c, 1))


def build_encoder(cfg: AudioModelConfig) -> nn.Sequential:
    c = cfg.channels
    layers: list[nn.Module] = [nn.Conv1d(1, c, 7, padding=3)]
    for r in cfg.ratios:
        layers += [_residual(c, 3**i) for i in range(cfg.residual_units)]
        layers += [nn.LeakyReLU(LEAK), nn.Conv1d(c, 2 * c, 2 * r, stride=r, padding=(r + 1) // 2)]
        c *= 2
    layers += [nn.LeakyReLU(LEAK), nn.Conv1d(c, cfg.dim, 3, padding=1)]
    return nn.Sequential(*layers)


def build_decoder(cfg: AudioModelConfig) -> nn.Sequential:
    c = cfg.channels * 2 ** len(cfg.ratios)
    layers: list[nn.Module] = [nn.Conv1d(cfg.dim, c, 7, padding=3)]
    for r in reversed(cfg.ratios):
        layers += [nn.LeakyReLU(LEAK),
                   nn.ConvTranspose1d(c, c // 2, 2 * r, stride=r, padding=(r + 1) // 2, output_padding=r % 2)]
        c //= 2
        layers += [_residual(c, 3**i) for i in range(cfg.residual_units)]
    layers += [nn.LeakyReLU(LEAK), nn.Conv1d(c, 1, 7, padding=3)]
    return nn.Sequential(*layers)


def reach_frames(net: nn.Module, unit: float) -> int:
    """Frames of context on each side that an output of `net` can depend on (an upper bound).

    unit: length of one input sample in frames (1 for the decoder, 1/hop for the encoder).
    """
    reach = 0.0
    for m in net.modules():
        if isinstance(m, nn.Conv1d):
            k, d, s = m.kernel_size[0], m.dilation[0], m.stride[0]
            reach += (k - 1) * d * unit / (2 if s == 1 else 1)
            unit *= s
        elif isinstance(m, nn.ConvTranspose1d):
            reach += math.ceil(m.kernel_size[0] / m.stride[0]) * unit
            unit /= m.stride[0]
    return math.ceil(reach) + 1


class AudioCodecModel(nn.Module):
    """Trainable model; `forward` returns the reconstruction, codes, commitment loss and bits."""

    def __init__(self, cfg: AudioModelConfig = AudioModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)
        self.rvq = ResidualVectorQuantizer(cfg.dim, cfg.n_stages, cfg.codebook_size, dropout=True)
        self.prior = CategoricalPrior(cfg.n_stages, cfg.codebook_size)

    def forward(self, x: torch.Tensor, n_stages: int | None = None) -> dict[str, torch.Tensor]:
        """x [B, 1, T], T a multiple of the hop; n_stages None = random (training) or all."""
        y = self.encoder(x)
        with torch.autocast(y.device.type, enabled=False):  # codeword search in fp32 under autocast
            q = self.rvq(y.float(), n_stages)
        bits = self.prior.bits(q.codes.detach()).sum(-1).mean()
        return {"x_hat": self.decoder(q.quantized).float(), "codes": q.codes, "commit": q.commit_loss,
                "bits_per_frame": bits, "n_stages": torch.tensor(q.n_stages)}
