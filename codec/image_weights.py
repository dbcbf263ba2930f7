"""Shipped image model files: export from a trained model, load for coding or for training.

File layout (safetensors): enc.* float16 encoder weights and float32 log-gains; dec.* integer
decoder convs (int16 weights, int8 shifts, int32 biases: g_s, h_s and, with a channel context,
context.0 .. context.S-1) and int32 inverse gains; tables.* integer CDF tables and scale
thresholds; train.* float parameters only training needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import numpy as np
import torch
from ncodec.entropy.coder import TableSet
from ncodec.entropy.gaussian import gaussian_tables, scale_table, scale_thresholds
from ncodec.entropy.tables import PRECISION
from safetensors.torch import load_file

from .fixed_point import (
    ACT_BITS,
    IntNet,
    build_intnet,
    conv_modules,
    dequantize_conv,
    quantize_conv,
    receptive_radius,
    tiling_margins,
)
from .image_model import ImageHyperprior, ImageModelConfig
from .zoo import ModelInfo, describe, locate, write_model_file

FORMAT = "ncodec-image-hyperprior-1"
GAIN_BITS = 16
Z_RADIUS = 64
ENCODER_NETS = ("g_a", "h_a")


def decoder_nets(model: ImageHyperprior) -> dict[str, torch.nn.Sequential]:
    """The networks the decoder mirrors in integers, by their name in a model file."""
    nets = {"g_s": model.g_s, "h_s": model.h_s}
    nets.update((f"context.{s}", net) for s, net in enumerate(model.context))
    return nets


def export(model: ImageHyperprior, path: Path, model_id: str, training: dict | None = None) -> Path:
    """Write a trained model as a shipped, integer-decoder model file.

    training: provenance (steps, data, ...) stored as JSON in the file's metadata.
    """
    return write_model_file(path, export_tensors(model), model_id, "image", FORMAT,
                            model.cfg.as_dict(), training)


def export_tensors(model: ImageHyperprior) -> dict[str, torch.Tensor]:
    """The tensors of an image model file (enc.*, dec.*, tables.*, train.*); the video model
    file holds the same ones."""
    model = model.cpu().eval()
    t: dict[str, torch.Tensor] = {}
    for net in ENCODER_NETS:
        for k, v in getattr(model, net).state_dict().items():
            t[f"enc.{net}.{k}"] = v.half().contiguous()
    t["enc.log_gain"] = model.log_gain.detach().float().contiguous()
    for net, seq in decoder_nets(model).items():
        for i, conv in enumerate(conv_modules(seq)):
            for k, v in quantize_conv(conv).items():
                t[f"dec.{net}.{i}.{k}"] = v.contiguous()
    inv = torch.round(model.log_inv_gain.detach().double().exp() * 2**GAIN_BITS)
    t["dec.inv_gain"] = inv.to(torch.int32).contiguous()
    scales = scale_table()
    counts, radii = gaussian_tables(scales, PRECISION)
    t["tables.y.counts"] = torch.from_numpy(counts.astype(np.int32))
    t["tables.y.radii"] = torch.from_numpy(radii.astype(np.int32))
    t["tables.y.thresholds"] = torch.from_numpy(scale_thresholds(scales, ACT_BITS))
    t["tables.z.counts"] = torch.from_numpy(
        model.z_density.integer_tables(Z_RADIUS, PRECISION).astype(np.int32))
    for k, v in model.z_density.state_dict().items():
        t[f"train.z_density.{k}"] = v.float().contiguous()
    return t


@dataclass
class ImageCodingModel:
    """Everything encode/decode needs, loaded from one model file."""

    info: ModelInfo
    cfg: ImageModelConfig
    g_a: torch.nn.Module
    h_a: torch.nn.Module
    log_gain: torch.Tensor  # [levels, M]
    g_s: IntNet
    h_s: IntNet
    context: list[IntNet]  # one per channel slice; empty without a channel context
    inv_gain: torch.Tensor  # [levels, M] int64, GAIN_BITS fraction
    thresholds: torch.Tensor  # float64 integer-valued, ACT_BITS fraction
    y_tables: TableSet
    z_tables: TableSet
    analysis_margin: int  # pixels of context around a g_a tile (a multiple of 16)
    synthesis_margin: int  # latent positions of context around a g_s tile
    context_margin: int = 0  # latent positions around a tile of a context net's input


def image_config(info: ModelInfo) -> ImageModelConfig:
    """The image model layout of a file's config (a video model file's config has more keys)."""
    names = {f.name for f in fields(ImageModelConfig)}
    return ImageModelConfig(**{k: v for k, v in info.config.items() if k in names})


def _skeleton(info: ModelInfo) -> ImageHyperprior:
    """The float model of a file's config."""
    return ImageHyperprior(image_config(info))


def _decoder_params(t: dict[str, torch.Tensor], net: str, count: int) -> list[dict]:
    return [{k: t[f"dec.{net}.{i}.{k}"] for k in ("weight", "shift", "bias")} for i in range(count)]


def _load_encoders(model: ImageHyperprior, t: dict[str, torch.Tensor]) -> None:
    """The float analysis transforms (g_a, h_a) from a model file's enc.* tensors."""
    for net in ENCODER_NETS:
        prefix = f"enc.{net}."
        state = {k[len(prefix):]: v.float() for k, v in t.items() if k.startswith(prefix)}
        getattr(model, net).load_state_dict(state)


@cache
def load_coding_model(path: Path) -> ImageCodingModel:
    info = describe(Path(path))
    t = load_file(str(path))
    skel = _skeleton(info)
    _load_encoders(skel, t)
    nets = {name: build_intnet(seq, _decoder_params(t, name, len(conv_modules(seq))))
            for name, seq in decoder_nets(skel).items()}
    radii = t["tables.y.radii"].numpy().astype(np.int64)
    z_counts = t["tables.z.counts"].numpy()
    margins = tiling_margins(skel.g_a, skel.g_s)
    return ImageCodingModel(
        info=info, cfg=skel.cfg, g_a=skel.g_a.eval(), h_a=skel.h_a.eval(),
        log_gain=t["enc.log_gain"].float(), g_s=nets["g_s"], h_s=nets["h_s"],
        context=[nets[f"context.{s}"] for s in range(skel.cfg.context_slices)],
        inv_gain=t["dec.inv_gain"].long(), thresholds=t["tables.y.thresholds"].double(),
        y_tables=TableSet(t["tables.y.counts"].numpy(), 2 * radii + 1, -radii),
        z_tables=TableSet(z_counts, np.full(len(z_counts), 2 * Z_RADIUS + 1),
                          np.full(len(z_counts), -Z_RADIUS)),
        analysis_margin=margins[0], synthesis_margin=margins[1],
        context_margin=max((math.ceil(receptive_radius(net)) for net in skel.context), default=0),
    )


def load_float_model(path: str | Path) -> ImageHyperprior:
    """A trainable float model initialised from a shipped file (the resume point)."""
    info = describe(Path(path))
    t = load_file(str(path))
    model = _skeleton(info)
    _load_encoders(model, t)
    for name, seq in decoder_nets(model).items():
        convs = conv_modules(seq)
        for conv, p in zip(convs, _decoder_params(t, name, len(convs)), strict=True):
            dequantize_conv(conv, p)
    model.log_gain.data = t["enc.log_gain"].float()
    model.log_inv_gain.data = (t["dec.inv_gain"].double() / 2**GAIN_BITS).log().float()
    zd = {k[len("train.z_density.") :]: v for k, v in t.items() if k.startswith("train.z_density.")}
    model.z_density.load_state_dict(zd)
    return model


def resolve_hyperprior(init: str) -> Path:
    """A hyperprior image model file, given as a path or as an installed model id."""
    return hyperprior_path(locate(init, "image"), init)


def hyperprior_path(info: ModelInfo, name: str) -> Path:
    """The file of `info` (given by the user as `name`) if it is a hyperprior image model."""
    if info.modality != "image" or info.format not in ("", FORMAT):
        raise ValueError(f"{name!r} is not an image hyperprior model ({info.modality}, {info.format})")
    return info.path
