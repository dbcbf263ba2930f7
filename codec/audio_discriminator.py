"""Multi-scale STFT discriminator with hinge losses and feature matching (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FFT_SIZES = (2048, 1024, 512, 256, 128)
SLOPE = 0.2


class STFTDiscriminator(nn.Module):
    """2-D convolutions over the complex STFT (real and imaginary parts as two channels)."""

    def __init__(self, n_fft: int, channels: int = 32):
        super().__init__()
        self.n_fft = n_fft
        c = channels
        self.convs = nn.ModuleList(
            [nn.Conv2d(2, c, (3, 9), padding=(1, 4))]
            + [nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)) for d in (1, 2, 4)]
            + [nn.Conv2d(c, c, (3, 3), padding=(1, 1))])
        self.out = nn.Conv2d(c, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B, 1, T] -> (logits [B, 1, frames, bins'], feature maps of every layer)."""
        window = torch.hann_window(self.n_fft, device=x.device)
        spec = torch.stft(x[:, 0], self.n_fft, self.n_fft // 4, window=window, return_complex=True)
        z = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)  # [B, 2, frames, bins]
        features = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), SLOPE)
            features.append(z)
        return self.out(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """One STFTDiscriminator per FFT size; returns (logits, features) per scale."""

    def __init__(self, fft_sizes: tuple[int, ...] = FFT_SIZES, channels: int = 32):
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(n, channels) for n in fft_sizes)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.scales]


def discriminator_loss(disc: MultiScaleSTFTDiscriminator, x: torch.Tensor,
                       x_hat: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator (x_hat is detached here)."""
    real, fake = disc(x), disc(x_hat.detach())
    losses = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)]
    return torch.stack(losses).mean()


def generator_losses(disc: MultiScaleSTFTDiscriminator, x: torch.Tensor,
                     x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge adversarial loss, feature matching loss) of the generator's output."""
    with torch.no_grad():
        real = disc(x)
    fake = disc(x_hat)
    adv = torch.stack([F.relu(1 - f).mean() for f, _ in fake]).mean()
    feat = torch.stack([F.l1_loss(b, a) / a.abs().mean().clamp_min(1e-6)
                        for (_, ra), (_, fa) in zip(real, fake, strict=True)
                        for a, b in zip(ra, fa, strict=True)]).mean()
    return adv, feat
