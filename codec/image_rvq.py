"""RVQ-latent image model: a scalar model's transforms with residual vector quantization.

Every latent position's M-vector y = g_a(x) is coded by the first n stages of an S-stage residual
VQ (ncodec.rvq, K codewords per stage); the quality picks n (`stages_for_quality`). Stage s
indices are range coded with a static categorical prior learned per stage. Decoding sums the
integer codewords and runs the scalar model's integer g_s, so it is exact on every machine.

File layout (safetensors, format FORMAT): enc.g_a.* float16 analysis weights; dec.g_s.* integer
synthesis convs (as in an image hyperprior file); dec.codebooks int16 [S, K, M] and
dec.codebook_shift int8 [S] (codeword = codebooks << shift, ACT_BITS fraction);
tables.codes.counts, the per-stage categorical tables [S, K + 1]; train.* float state only
training needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

import numpy as np
import torch
from ncodec.entropy import coder
from ncodec.entropy.categorical import CategoricalPrior, stage_index
from ncodec.entropy.coder import TableSet
from safetensors.torch import load_file
from torch import nn

from .fixed_point import (
    ACT_BITS,
    IntNet,
    build_intnet,
    code_tables,
    conv_modules,
    join_codebooks,
    quantize_conv,
    run_tiled,
    rvq_code_tensors,
    sum_codewords,
    tiling_margins,
)
from .image_model import ImageHyperprior, ImageModelConfig
from .rvq import ResidualVectorQuantizer
from .zoo import ModelInfo, describe, write_model_file

FORMAT = "ncodec-image-rvq-1"
MIN_STAGES = 2  # stages at quality 1; the top quality uses all S


@dataclass(frozen=True)
class RVQImageConfig:
    n: int = 112
    m: int = 192
    res_units: int = 0
    levels: int = 8  # the quality range 1..levels, as for the scalar models
    stages: int = 32
    codebook_size: int = 256

    @property
    def image(self) -> ImageModelConfig:
        return ImageModelConfig(self.n, self.m, self.levels, self.res_units)

    @classmethod
    def from_dict(cls, d: dict) -> RVQImageConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def as_dict(self) -> dict:
        return asdict(self)


def stages_for_quality(quality_fx: int, cfg: RVQImageConfig, steps: int = 256) -> int:
    """Stages coded at quality 1 + quality_fx / steps: geometric from MIN_STAGES to all S."""
    t = quality_fx / (steps * (cfg.levels - 1))
    return max(1, min(cfg.stages, round(MIN_STAGES * (cfg.stages / MIN_STAGES) ** t)))


class RVQImageModel(nn.Module):
    """Trainable parts: the transforms (taken from a scalar model), the RVQ and the prior."""

    def __init__(self, cfg: RVQImageConfig):
        super().__init__()
        self.cfg = cfg
        base = ImageHyperprior(cfg.image)
        self.g_a, self.g_s = base.g_a, base.g_s
        self.rvq = ResidualVectorQuantizer(cfg.m, cfg.stages, cfg.codebook_size, kmeans_iters=10)
        self.prior = CategoricalPrior(cfg.stages, cfg.codebook_size)

    def vectors(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors [B*h*w, M] of images x [B, 3, H, W] (H, W multiples of 16)."""
        y = self.g_a(x).float()
        return y.permute(0, 2, 3, 1).reshape(-1, self.cfg.m)


def export(model: RVQImageModel, path: Path, model_id: str, training: dict | None = None) -> Path:
    model = model.cpu().eval()
    t = {f"enc.g_a.{k}": v.half().contiguous() for k, v in model.g_a.state_dict().items()}
    for i, conv in enumerate(conv_modules(model.g_s)):
        for k, v in quantize_conv(conv).items():
            t[f"dec.g_s.{i}.{k}"] = v.contiguous()
    t.update(rvq_code_tensors(model.rvq, model.prior))
    return write_model_file(path, t, model_id, "image", FORMAT, model.cfg.as_dict(), training)


@dataclass
class RVQImageCodingModel:
    """Everything encode/decode needs, loaded from one RVQ image model file."""

    info: ModelInfo
    cfg: RVQImageConfig
    g_a: nn.Module  # float, eval mode
    g_s: IntNet
    codebooks: torch.Tensor  # int64 [S, K, M], ACT_BITS fraction
    search_codebooks: torch.Tensor  # float32 [S, K, M] = codebooks / 2**ACT_BITS (encoder search)
    tables: TableSet
    analysis_margin: int
    synthesis_margin: int


@cache
def load_coding_model(path: Path) -> RVQImageCodingModel:
    info = describe(Path(path))
    if info.format != FORMAT:
        raise ValueError(f"{path} is a {info.format or 'unknown'} model file, not {FORMAT}")
    cfg = RVQImageConfig.from_dict(info.config)
    t = load_file(str(path))
    skel = RVQImageModel(cfg)
    prefix = "enc.g_a."
    skel.g_a.load_state_dict({k[len(prefix):]: v.float() for k, v in t.items() if k.startswith(prefix)})
    params = [{k: t[f"dec.g_s.{i}.{k}"] for k in ("weight", "shift", "bias")}
              for i in range(len(conv_modules(skel.g_s)))]
    codebooks = join_codebooks(t)
    margins = tiling_margins(skel.g_a, skel.g_s)
    return RVQImageCodingModel(
        info=info, cfg=cfg, g_a=skel.g_a.eval(), g_s=build_intnet(skel.g_s, params),
        codebooks=codebooks, search_codebooks=codebooks.double().mul(2.0**-ACT_BITS).float(),
        tables=code_tables(t, cfg.codebook_size),
        analysis_margin=margins[0], synthesis_margin=margins[1],
    )


def encode_tiles(model: RVQImageCodingModel, y: torch.Tensor, stages: int,
                 tiles: list[tuple[int, int, int, int]]) -> list[bytes]:
    """One payload per latent tile: the codes of its positions (row-major), stage-major per position."""
    from .rvq_backends import rvq_encode

    out = []
    for y0, y1, x0, x1 in tiles:
        vec = y[0, :, y0:y1, x0:x1].permute(1, 2, 0).reshape(-1, model.cfg.m).contiguous()
        codes = rvq_encode(vec, model.search_codebooks[:stages]).numpy()
        out.append(coder.encode(codes, stage_index(codes), model.tables))
    return out


def decode_latent(model: RVQImageCodingModel, payloads: list[bytes], stages: int,
                  tiles: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> torch.Tensor:
    """The exact integer latent [1, M, h, w] (float64, ACT_BITS fraction) of the tile payloads."""
    y = torch.zeros(1, model.cfg.m, *shape, dtype=torch.float64)
    for (y0, y1, x0, x1), payload in zip(tiles, payloads, strict=True):
        count = (y1 - y0) * (x1 - x0)
        index = stage_index(np.empty((count, stages)))
        codes = torch.from_numpy(coder.decode(payload, index, model.tables)).view(count, stages)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= model.cfg.codebook_size):
            raise coder.DecodeError("RVQ code outside the codebook")
        total = sum_codewords(model.codebooks, codes)
        y[0, :, y0:y1, x0:x1] = total.T.reshape(model.cfg.m, y1 - y0, x1 - x0).double()
    return y


def analysis(model: RVQImageCodingModel, x: torch.Tensor,
             progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Float latent [1, M, H/16, W/16] of a padded image x [1, 3, H, W] in [0, 1], tiled."""
    _, _, h, w = x.shape
    return run_tiled(model.g_a, x, 1 / 16, tile=1024, margin=model.analysis_margin,
                     out=torch.empty(1, model.cfg.m, h // 16, w // 16), progress=progress)
