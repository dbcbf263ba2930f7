"""Reconstruction losses and metrics for audio training: multi-scale mel, multi-resolution STFT, SI-SDR."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

MEL_WINDOWS = (64, 128, 256, 512, 1024, 2048)
STFT_WINDOWS = (512, 1024, 2048)


@cache
def mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters [n_mels, n_fft // 2 + 1] evenly spaced on the HTK mel scale."""
    def to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def to_hz(m: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    top = to_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))
    edges = to_hz(torch.linspace(0, float(top), n_mels + 2, dtype=torch.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| of x [B, 1, T] with a Hann window and hop n_fft / 4: [B, n_fft // 2 + 1, frames]."""
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x[:, 0], n_fft, n_fft // 4, window=window, return_complex=True)
    return spec.abs().clamp_min(1e-7)


def mel_loss(x_hat: torch.Tensor, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean over scales of L1 distances of mel magnitudes and of log mel magnitudes."""
    total = x.new_zeros(())
    for n in MEL_WINDOWS:
        fb = mel_filters(n, min(64, n // 4), sample_rate).to(x.device)
        a, b = fb @ _magnitude(x_hat, n), fb @ _magnitude(x, n)
        total = total + F.l1_loss(a, b) + F.l1_loss(a.clamp_min(1e-5).log(), b.clamp_min(1e-5).log())
    return total / len(MEL_WINDOWS)


def stft_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + L1 of log magnitudes."""
    total = x.new_zeros(())
    for n in STFT_WINDOWS:
        a, b = _magnitude(x_hat, n), _magnitude(x, n)
        convergence = torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-7)
        total = total + convergence + F.l1_loss(a.log(), b.log())
    return total / len(STFT_WINDOWS)


def si_sdr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB per item of [B, 1, T]."""
    x, x_hat = x[:, 0].double(), x_hat[:, 0].double()
    scale = (x_hat * x).sum(-1, keepdim=True) / (x * x).sum(-1, keepdim=True).clamp_min(1e-12)
    target = scale * x
    ratio = (target * target).sum(-1) / ((x_hat - target) ** 2).sum(-1).clamp_min(1e-12)
    return (10 * torch.log10(ratio.clamp(1e-10, 1e10))).float()
