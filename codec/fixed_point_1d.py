"""Exact integer mirror of 1-D decoder networks (Conv1d, ConvTranspose1d, residual units).

The same fixed point as `fixed_point` (images): activations are integers with ACT_BITS
fractional bits, weights are int16 with a power-of-two scale per output channel, everything is
carried in float64 with every partial sum below 2**53, so convolution gives the same result in
any summation order, thread count or device; rescaling multiplies by 2**-shift and floors.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .fixed_point import ACT_BITS, ACT_LIMIT, EXACT_LIMIT, WEIGHT_LIMIT, IntSequence, mirror_steps

ConvLike = nn.Conv1d | nn.ConvTranspose1d


def _out_axis(conv: ConvLike) -> int:
    return 1 if isinstance(conv, nn.ConvTranspose1d) else 0  # ConvTranspose weight is [Cin, Cout, k]


def quantize_conv1d(conv: ConvLike) -> dict[str, torch.Tensor]:
    """Integer parameters of a float conv: int16 weights, int8 shifts, int32 biases (export time)."""
    w = conv.weight.detach().double()
    axis = _out_axis(conv)
    other = tuple(d for d in range(w.ndim) if d != axis)
    peak = w.abs().amax(other).clamp_min(1e-12)
    shift = torch.floor(torch.log2(WEIGHT_LIMIT / peak)).clamp(0, 40)
    view = [1] * w.ndim
    view[axis] = -1
    w_int = torch.round(w * torch.pow(2.0, shift).view(view))
    b_int = torch.round(conv.bias.detach().double() * 2.0**ACT_BITS)
    return {"weight": w_int.to(torch.int16), "shift": shift.to(torch.int8), "bias": b_int.to(torch.int32)}


def dequantize_conv1d(conv: ConvLike, p: dict[str, torch.Tensor]) -> None:
    """Load integer parameters back into a float conv (to resume training from a model file)."""
    view = [1] * conv.weight.ndim
    view[_out_axis(conv)] = -1
    conv.weight.data = (p["weight"].double() * torch.pow(2.0, -p["shift"].double()).view(view)).float()
    conv.bias.data = (p["bias"].double() / 2.0**ACT_BITS).float()


class IntConv1d:
    """out = clamp(floor(conv(x, w) / 2**shift) + bias), for Conv1d or ConvTranspose1d geometry."""

    def __init__(self, conv: ConvLike, p: dict[str, torch.Tensor], device: str | torch.device = "cpu"):
        if conv.padding_mode != "zeros" or conv.groups != 1:
            raise ValueError("integer decoder supports zero-padded, ungrouped convs only")
        self.weight = p["weight"].double().to(device)
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        axis = 1 if self.transposed else 0
        other = tuple(d for d in range(3) if d != axis)
        if ACT_LIMIT * self.weight.abs().sum(other).max() >= EXACT_LIMIT:
            raise ValueError("integer conv could exceed exact float64 range")
        self.scale = torch.pow(2.0, -p["shift"].double()).view(-1, 1).to(device)
        self.bias = p["bias"].double().view(-1, 1).to(device)
        self.stride, self.padding, self.dilation = conv.stride[0], conv.padding[0], conv.dilation[0]
        self.output_padding = conv.output_padding[0] if self.transposed else 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            acc = F.conv_transpose1d(x, self.weight, stride=self.stride, padding=self.padding,
                                     output_padding=self.output_padding)
        else:
            acc = F.conv1d(x, self.weight, stride=self.stride, padding=self.padding, dilation=self.dilation)
        return acc.mul_(self.scale).floor_().add_(self.bias).clamp_(-ACT_LIMIT, ACT_LIMIT)


class IntNet1d(IntSequence):
    """Whole integer network: float64 integer-valued input [B, C, T] -> output, exact."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=False):  # no FFT/Winograd: exact GEMM convs
            return super().__call__(x)


def conv1d_modules(net: nn.Module) -> list[ConvLike]:
    """Convolutions in call order: the order of their parameters in a model file."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


def build_intnet1d(net: nn.Sequential, params: list[dict[str, torch.Tensor]], device="cpu") -> IntNet1d:
    """Mirror `net` (Conv1d / ConvTranspose1d / LeakyReLU / Residual) with integer parameters."""
    def leaf(m: nn.Module, it: Iterator[dict[str, torch.Tensor]]) -> IntConv1d | None:
        return IntConv1d(m, next(it), device) if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) else None

    return IntNet1d(mirror_steps(net, params, leaf))
