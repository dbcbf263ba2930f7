"""Residual vector quantization (RVQ) with EMA codebooks, for neural codecs.

    rvq = ResidualVectorQuantizer(dim=128, n_stages=8, codebook_size=1024, dropout=True)
    out = rvq(z)                  # z [N, D] or [B, D, T]; out.quantized has z's shape
    loss = recon + out.commit_loss
    codes = rvq.encode(z)         # int64 [N, S * G]  (N = B * T for [B, D, T] input)
    z_hat = rvq.decode(codes)     # [N, D]; codes viewed as [B, T, S * G] decode to [B, D, T]

Stage s quantizes the residual left by stages 0..s-1 with its own K-word codebook; the nearest
codeword search is exact (ncodec.rvq_backends: a fused C++ kernel on CPU, CUDA kernel on GPU,
chunked torch otherwise). Codebooks are buffers trained by exponential moving averages (not by
the optimizer): k-means initialisation on the first training batch, EMA of cluster sizes
(Laplace-smoothed) and sums, and re-seeding of dead codes from the current batch's residuals.

Code columns are stage-major: column s * G + g holds stage s of group g, so the first n * G
columns are a valid code for n stages (quantizer dropout / bitrate scalability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rvq_backends import MAX_CODEBOOK_SIZE, rvq_decode, rvq_encode

__all__ = ["ResidualVectorQuantizer", "RVQOutput", "rotate_to"]

GRAD_MODES = ("ste", "rotation")


@dataclass
class RVQOutput:
    """What a forward pass returns.

    quantized: same shape and dtype as the input; its value is the quantized vector, its
        gradient w.r.t. the input is the identity ("ste") or the rotation trick ("rotation").
    codes: int64 [N, n_stages * groups], column s * groups + g.
    commit_loss: scalar, beta * mean((x - sg(q))^2).
    usage: [n_stages] fraction of codewords used in this batch (mean over groups).
    perplexity: [n_stages] exp(entropy) of this batch's code histogram (mean over groups).
    n_stages: number of stages used (random in [1, S] with quantizer dropout in training).
    """

    quantized: Tensor
    codes: Tensor
    commit_loss: Tensor
    usage: Tensor
    perplexity: Tensor
    n_stages: int


def rotate_to(e: Tensor, q: Tensor, eps: float = 1e-8) -> Tensor:
    """Rotation trick (Fifty et al. 2024): returns q in value, gradient lambda * R^T g to e.

    R rotates e/|e| onto q/|q| (R = I - 2 r r^T + 2 q^ e^T with r = (e^ + q^)/|e^ + q^|),
    lambda = |q|/|e|; both are treated as constants, so gradients flow through the rotation.
    Vectors are the last dimension of e and q.
    """
    q = q.detach()
    with torch.no_grad():
        e_norm = e.norm(dim=-1, keepdim=True).clamp_min(eps)
        q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
        u = e / e_norm
        w = q / q_norm
        r = u + w
        r = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
        scale = q_norm / e_norm
    rotated = scale * (e - 2.0 * (e * r).sum(-1, keepdim=True) * r
                       + 2.0 * (e * u).sum(-1, keepdim=True) * w)
    return q + (rotated - rotated.detach())


class ResidualVectorQuantizer(nn.Module):
    """S-stage residual VQ of D-dim vectors, K codewords per stage, optionally in G groups.

    Args:
        dim: D, the vector size (channels of a [B, D, T] input).
        n_stages: S, number of residual stages.
        codebook_size: K codewords per stage (<= 65535).
        groups: G; the D dims are split into G groups of D/G dims, each with its own RVQ
            (grouped RVQ as in HiFi-Codec).
        decay: EMA decay of cluster sizes and sums.
        beta: commitment loss weight.
        grad: "ste" (straight-through) or "rotation" (rotation trick).
        dropout: quantizer dropout; in training each batch uses n ~ U{1..S} stages.
        kmeans_init: initialise the codebooks by k-means on the first training batch
            (otherwise they start as N(0, 1) samples).
        kmeans_iters: Lloyd iterations of that initialisation.
        dead_code_threshold: codes whose EMA cluster size (assignments per batch) falls below
            this are re-seeded from random residuals of the current batch (0 disables).
        eps: Laplace smoothing of the cluster sizes.
        backend: nearest-codeword backend, see ncodec.rvq_backends.rvq_encode.
    """

    def __init__(self, dim: int, n_stages: int = 8, codebook_size: int = 1024, *,
                 groups: int = 1, decay: float = 0.99, beta: float = 0.25, grad: str = "ste",
                 dropout: bool = False, kmeans_init: bool = True, kmeans_iters: int = 5,
                 dead_code_threshold: float = 1.0, eps: float = 1e-5,
                 backend: str = "auto") -> None:
        super().__init__()
        if dim <= 0 or n_stages <= 0 or groups <= 0:
            raise ValueError("dim, n_stages and groups must be positive")
        if dim % groups:
            raise ValueError(f"dim={dim} is not divisible by groups={groups}")
        if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(f"codebook_size must be in [1, {MAX_CODEBOOK_SIZE}]")
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must be in [0, 1)")
        self.dim, self.n_stages, self.codebook_size, self.groups = dim, n_stages, codebook_size, groups
        self.group_dim = dim // groups
        self.decay, self.beta, self.grad, self.dropout = decay, beta, grad, dropout
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold, self.eps, self.backend = dead_code_threshold, eps, backend
        shape = (groups, n_stages, codebook_size)
        embed = torch.randn(*shape, self.group_dim)
        self.register_buffer("embed", embed)
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("cluster_size", torch.ones(shape))
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_stages={self.n_stages}, codebook_size={self.codebook_size}, "
                f"groups={self.groups}, grad={self.grad!r}, dropout={self.dropout}")

    # ----------------------------------------------------------------------- shapes

    def _flatten(self, x: Tensor) -> Tensor:
        if x.ndim not in (2, 3) or x.shape[1] != self.dim:
            raise ValueError(f"expected [N, {self.dim}] or [B, {self.dim}, T], "
                             f"got {tuple(x.shape)}")
        flat = x if x.ndim == 2 else x.transpose(1, 2).reshape(-1, self.dim)
        return flat.float()

    @staticmethod
    def _unflatten(flat: Tensor, like: Tensor) -> Tensor:
        if like.ndim == 3:
            B, D, T = like.shape
            flat = flat.view(B, T, D).transpose(1, 2)
        return flat.to(like.dtype)

    def _stages(self, n_stages: int | None) -> int:
        if n_stages is not None:
            if not 1 <= int(n_stages) <= self.n_stages:
                raise ValueError(f"n_stages must be in [1, {self.n_stages}], got {n_stages}")
            return int(n_stages)
        if self.training and self.dropout:
            return int(torch.randint(1, self.n_stages + 1, ()).item())
        return self.n_stages

    # ----------------------------------------------------------------------- codebooks

    @torch.no_grad()
    def _kmeans(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """K centres of r [N, d] by Lloyd's algorithm; returns (centres, final counts)."""
        N, K = r.shape[0], self.codebook_size
        if N >= K:
            centres = r[torch.randperm(N, device=r.device)[:K]].clone()
        else:  # fewer points than codes: repeat points, jittered so the copies can separate
            centres = r[torch.randint(0, N, (K,), device=r.device)]
            centres = centres + 1e-3 * r.std().clamp_min(1e-6) * torch.randn_like(centres)
        for it in range(self.kmeans_iters + 1):
            codes = rvq_encode(r, centres[None], self.backend)[:, 0]
            counts = torch.bincount(codes, minlength=K).to(r.dtype)
            if it == self.kmeans_iters:
                break
            sums = torch.zeros_like(centres).index_add_(0, codes, r)
            new = sums / counts.clamp_min(1.0)[:, None]
            empty = counts == 0
            if empty.any():  # re-seed empty clusters with random points
                new[empty] = r[torch.randint(0, N, (int(empty.sum()),), device=r.device)]
            centres = new
        return centres, counts

    @torch.no_grad()
    def init_codebooks(self, x: Tensor) -> None:
        """k-means initialisation of every stage (on the running residual) from batch x."""
        flat = self._flatten(x.detach())
        if flat.shape[0] == 0:
            raise ValueError("cannot initialise the codebooks from an empty batch")
        for g in range(self.groups):
            r = flat[:, g * self.group_dim:(g + 1) * self.group_dim].contiguous()
            for s in range(self.n_stages):
                centres, counts = self._kmeans(r)
                self.embed[g, s] = centres
                self.cluster_size[g, s] = counts
                self.embed_sum[g, s] = centres * counts[:, None]
                codes = rvq_encode(r, centres[None], self.backend)[:, 0]
                r = r - centres.index_select(0, codes)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, g: int, s: int, r: Tensor, codes: Tensor, counts: Tensor) -> None:
        d, K = self.decay, self.codebook_size
        sums = torch.zeros(K, r.shape[1], dtype=r.dtype, device=r.device).index_add_(0, codes, r)
        size, total = self.cluster_size[g, s], self.embed_sum[g, s]
        size.mul_(d).add_(counts, alpha=1 - d)
        total.mul_(d).add_(sums, alpha=1 - d)
        n = size.sum()
        smoothed = (size + self.eps) / (n + K * self.eps) * n
        self.embed[g, s] = total / smoothed[:, None]
        dead = size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead:
            seeds = r[torch.randint(0, r.shape[0], (n_dead,), device=r.device)]
            self.embed[g, s, dead] = seeds
            total[dead] = seeds * self.dead_code_threshold
            size[dead] = self.dead_code_threshold

    # ----------------------------------------------------------------------- API

    def forward(self, x: Tensor, n_stages: int | None = None) -> RVQOutput:
        """Quantize x [N, D] or [B, D, T]; trains the codebooks (EMA) in training mode."""
        flat = self._flatten(x)
        n = self._stages(n_stages)
        if self.training and not bool(self.initted):
            self.init_codebooks(flat)
        N, G, d = flat.shape[0], self.groups, self.group_dim
        target = flat.detach()
        quant = torch.empty_like(target)
        codes = torch.empty((N, n, G), dtype=torch.int64, device=flat.device)
        usage = torch.zeros(n, device=flat.device)
        perplexity = torch.zeros(n, device=flat.device)
        for g in range(G):
            r = target[:, g * d:(g + 1) * d].contiguous()
            group_codes = rvq_encode(r, self.embed[g, :n], self.backend)
            codes[:, :, g] = group_codes
            q = torch.zeros_like(r)
            for s in range(n):
                c = group_codes[:, s]
                word = self.embed[g, s].index_select(0, c)  # a copy: safe from the EMA update
                q = q + word
                counts = torch.bincount(c, minlength=self.codebook_size).to(r.dtype)
                if N:
                    p = counts / N
                    usage[s] += (counts > 0).float().mean() / G
                    perplexity[s] += torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()) / G
                if self.training and N:
                    self._ema_update(g, s, r, c, counts)
                r = r - word
            quant[:, g * d:(g + 1) * d] = q
        commit = self.beta * F.mse_loss(flat, quant) if N else flat.sum() * 0.0
        if self.grad == "rotation":
            out = rotate_to(flat.reshape(N, G, d), quant.view(N, G, d)).reshape(N, self.dim)
        else:
            out = quant + (flat - flat.detach())  # value exactly q, identity gradient
        return RVQOutput(self._unflatten(out, x), codes.view(N, n * G), commit, usage,
                         perplexity, n)

    @torch.no_grad()
    def encode(self, x: Tensor, n_stages: int | None = None) -> Tensor:
        """Codes of x [N, D] or [B, D, T]: int64 [N, n * G] (N = B * T, (b, t) row order)."""
        flat = self._flatten(x)
        n = self.n_stages if n_stages is None else n_stages
        if not 1 <= n <= self.n_stages:
            raise ValueError(f"n_stages must be in [1, {self.n_stages}], got {n_stages}")
        d = self.group_dim
        parts = [rvq_encode(flat[:, g * d:(g + 1) * d].contiguous(), self.embed[g, :n],
                            self.backend) for g in range(self.groups)]
        return torch.stack(parts, dim=2).view(flat.shape[0], n * self.groups)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Vectors for codes [N, n * G] -> [N, D], or [B, T, n * G] -> [B, D, T]."""
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.ndim not in (2, 3):
            raise ValueError(f"codes must be [N, n*G] or [B, T, n*G], got {tuple(codes.shape)}")
        cols = codes.shape[-1]
        if cols == 0 or cols % self.groups or cols // self.groups > self.n_stages:
            raise ValueError(f"codes have {cols} columns; expected n * {self.groups} with "
                             f"1 <= n <= {self.n_stages}")
        n = cols // self.groups
        flat = codes.reshape(-1, n, self.groups)
        out = torch.cat([rvq_decode(flat[:, :, g], self.embed[g]) for g in range(self.groups)],
                        dim=1)
        if codes.ndim == 3:
            out = out.view(codes.shape[0], codes.shape[1], self.dim).transpose(1, 2)
        return out

    def bits_per_vector(self, n_stages: int | None = None) -> float:
        """Uncompressed code size: n * G * log2(K) bits per D-dim vector."""
        n = self.n_stages if n_stages is None else n_stages
        return n * self.groups * math.log2(self.codebook_size)
