"""Exact integer mirror of the decoder-side networks (g_s, h_s).

Activations are integers with ACT_BITS fractional bits, weights are integers with a per-output
channel power-of-two scale, all carried in float64. Every product and partial sum is an integer
below 2**53, so convolution gives the same result in any summation order: on every run, thread
count and device. Rescaling is a multiply by a power of two followed by floor, also exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from ncodec.entropy.coder import TableSet
from torch import nn

from .layers import Residual

ACT_BITS = 12
ACT_LIMIT = float(2**23)  # activations are clamped to +-ACT_LIMIT (i.e. +-2048.0)
WEIGHT_LIMIT = 2**15 - 1
EXACT_LIMIT = 2.0**53
LEAK_SHIFT = 3  # LeakyReLU slope 1/8


@dataclass
class IntConv:
    """Conv with integer weights w (scale 2**shift per output channel) and integer bias."""

    weight: torch.Tensor  # [Cout, Cin, k, k] integer-valued float64
    shift: torch.Tensor  # [Cout] non-negative integers
    bias: torch.Tensor  # [Cout] integer-valued float64, ACT_BITS fraction

    def __post_init__(self) -> None:
        bound = ACT_LIMIT * self.weight.abs().sum((1, 2, 3)).max()
        if bound >= EXACT_LIMIT:
            raise ValueError("integer conv could exceed exact float64 range")
        self.scale = torch.pow(2.0, -self.shift.double()).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        acc = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        return acc.mul_(self.scale).floor_().add_(self.bias.view(-1, 1, 1)).clamp_(-ACT_LIMIT, ACT_LIMIT)


def quantize_conv(conv: nn.Conv2d) -> dict[str, torch.Tensor]:
    """Integer parameters for a float conv (export time)."""
    w = conv.weight.detach().double()
    peak = w.abs().amax((1, 2, 3)).clamp_min(1e-12)
    shift = torch.floor(torch.log2(WEIGHT_LIMIT / peak)).clamp(0, 40)
    w_int = torch.round(w * torch.pow(2.0, shift).view(-1, 1, 1, 1))
    b_int = torch.round(conv.bias.detach().double() * 2.0**ACT_BITS)
    return {"weight": w_int.to(torch.int16), "shift": shift.to(torch.int8), "bias": b_int.to(torch.int32)}


def dequantize_conv(conv: nn.Conv2d, p: dict[str, torch.Tensor]) -> None:
    """Load integer parameters back into a float conv (to resume training from shipped weights)."""
    scale = torch.pow(2.0, -p["shift"].double()).view(-1, 1, 1, 1)
    conv.weight.data = (p["weight"].double() * scale).float()
    conv.bias.data = (p["bias"].double() / 2.0**ACT_BITS).float()


def split_codebooks(embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float codewords [stages, K, D] -> (int16 mantissas, int8 per-stage left shifts)."""
    fixed = embed.double() * 2**ACT_BITS
    peak = fixed.abs().flatten(1).amax(1).clamp(min=1)
    shift = torch.ceil(torch.log2(peak / 32767)).clamp(min=0)
    stored = torch.round(fixed / 2 ** shift[:, None, None]).clamp(-32768, 32767)  # one rounding
    return stored.to(torch.int16).contiguous(), shift.to(torch.int8).contiguous()


def join_codebooks(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """The exact integer codewords (int64, ACT_BITS fraction) of a model file's tensors."""
    return t["dec.codebooks"].long() << t["dec.codebook_shift"].long()[:, None, None]


def sum_codewords(codebooks: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Exact int64 sums [..., D] of the integer codewords `codebooks` [S, K, D] picked by codes
    [..., n] (stage s in column s), clamped to the activation range."""
    total = torch.zeros(*codes.shape[:-1], codebooks.shape[-1], dtype=torch.int64)
    for s in range(codes.shape[-1]):
        total += codebooks[s][codes[..., s]]
    return total.clamp_(-int(ACT_LIMIT), int(ACT_LIMIT))


def rvq_code_tensors(rvq: nn.Module, prior: nn.Module) -> dict[str, torch.Tensor]:
    """Model-file tensors of an RVQ and its per-stage categorical prior: integer codebooks and
    shifts, the prior's coding tables, and the float state fine-tuning resumes from."""
    books, shift = split_codebooks(rvq.embed[0].detach())
    return {"dec.codebooks": books, "dec.codebook_shift": shift,
            "tables.codes.counts": torch.from_numpy(prior.table_set().counts.astype(np.int32)),
            "train.prior.logits": prior.logits.detach().float().contiguous(),
            "train.rvq.cluster_size": rvq.cluster_size.detach().float().contiguous()}


def code_tables(t: dict[str, torch.Tensor], codebook_size: int) -> TableSet:
    """The per-stage coding tables of a model file's `tables.codes.counts` (values 0..K-1)."""
    counts = t["tables.codes.counts"].numpy()
    return TableSet(counts, np.full(len(counts), codebook_size), np.zeros(len(counts), np.int64))


def leaky(x: torch.Tensor) -> torch.Tensor:
    """Integer x >= 0: x; x < 0: floor(x / 8)."""
    return F.leaky_relu(x, 2.0**-LEAK_SHIFT).floor_()


class IntSequence:
    """Steps applied in order; a residual unit is an IntSequence with `skip` set."""

    def __init__(self, steps: list[Callable[[torch.Tensor], torch.Tensor]], skip: bool = False):
        self.steps, self.skip = steps, skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for step in self.steps:
            y = step(y)
        return (y + x).clamp_(-ACT_LIMIT, ACT_LIMIT) if self.skip else y


class IntNet(IntSequence):
    """A whole integer network (convs, pixel shuffles, leaky ReLUs, residual units), exact."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=False):  # no FFT/Winograd: exact GEMM convs
            return super().__call__(x)


def leaves(seq: nn.Module) -> list[nn.Module]:
    """Leaf modules in call order, repeats included (modules() would drop a reused activation)."""
    kids = list(seq._modules.values())
    return [leaf for k in kids for leaf in leaves(k)] if kids else [seq]


def conv_modules(seq: nn.Module) -> list[nn.Conv2d]:
    return [m for m in leaves(seq) if isinstance(m, nn.Conv2d)]


Leaf = Callable[[nn.Module, Iterator[dict[str, torch.Tensor]]], Callable | None]


def mirror_steps(net: nn.Sequential, params: list[dict[str, torch.Tensor]], leaf: Leaf) -> list[Callable]:
    """Integer steps mirroring `net`: `leaf` maps the dimension-specific modules (convolutions,
    pixel shuffle) given the parameter iterator, or returns None; LeakyReLU (slope 1/8) and
    nn.Sequential (Residual: with the skip) are mirrored here."""
    it = iter(params)

    def mirror(m: nn.Module) -> Callable:
        step = leaf(m, it)
        if step is not None:
            return step
        if isinstance(m, nn.LeakyReLU):
            if m.negative_slope != 2.0**-LEAK_SHIFT:
                raise ValueError("integer decoder needs LeakyReLU slope 1/8")
            return leaky
        if isinstance(m, nn.Sequential):
            return IntSequence([mirror(k) for k in m], skip=isinstance(m, Residual))
        raise ValueError(f"no integer mirror for {type(m).__name__}")

    steps = [mirror(m) for m in net]
    if next(it, None) is not None:
        raise ValueError("more integer parameters than convolutions")
    return steps


def build_intnet(seq: nn.Sequential, params: list[dict[str, torch.Tensor]], device="cpu") -> IntNet:
    """Mirror `seq` (Conv2d / PixelShuffle / LeakyReLU / Residual) with integer parameters."""
    def leaf(m: nn.Module, it: Iterator[dict[str, torch.Tensor]]) -> Callable | None:
        if isinstance(m, nn.Conv2d):
            if m.stride != (1, 1):
                raise ValueError("integer decoder supports stride-1 convs only")
            p = next(it)
            return IntConv(p["weight"].double().to(device), p["shift"].double().to(device),
                           p["bias"].double().to(device))
        if isinstance(m, nn.PixelShuffle):
            return nn.PixelShuffle(m.upscale_factor)
        return None

    return IntNet(mirror_steps(seq, params, leaf))


def receptive_radius(seq: nn.Module) -> float:
    """How far (in input positions) an output of `seq` looks on each side: a tiling margin."""
    radius, step = 0.0, 1.0  # step: input positions per position of the current layer
    for m in leaves(seq):
        if isinstance(m, nn.Conv2d):
            radius += (m.kernel_size[0] // 2) * m.dilation[0] * step
            step *= m.stride[0]
        elif isinstance(m, nn.PixelShuffle):
            step /= m.upscale_factor
    return radius


def tiling_margins(g_a: nn.Module, g_s: nn.Module) -> tuple[int, int]:
    """(pixels of context around a g_a tile, a multiple of 16; latent positions around a g_s tile)."""
    return 16 * math.ceil(receptive_radius(g_a) / 16), math.ceil(receptive_radius(g_s))


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: float,
    tile: int,
    margin: int,
    out: torch.Tensor,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply a local network tile by tile over x [1,C,H,W] into `out` (output = input * scale).

    Each tile is extended by `margin` input pixels (cut at the borders, where the network's
    own zero padding applies as in a whole-image run), so with margin >= the receptive field
    the result equals the whole-image result; for IntNet, bit for bit.
    `progress(done, total)` is called after each tile.
    """
    _, _, h, w = x.shape
    total, done = -(-h // tile) * -(-w // tile), 0
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ey0, ex0 = max(y0 - margin, 0), max(x0 - margin, 0)
            ey1, ex1 = min(y1 + margin, h), min(x1 + margin, w)
            res = fn(x[:, :, ey0:ey1, ex0:ex1])
            oy, ox = int((y0 - ey0) * scale), int((x0 - ex0) * scale)
            th, tw = int((y1 - y0) * scale), int((x1 - x0) * scale)
            out[:, :, int(y0 * scale) : int(y0 * scale) + th, int(x0 * scale) : int(x0 * scale) + tw] = (
                res[:, :, oy : oy + th, ox : ox + tw].to(out.dtype)
            )
            done += 1
            if progress:
                progress(done, total)
    return out
