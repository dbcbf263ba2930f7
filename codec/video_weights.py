"""Video model files: export from a trained VideoModel, load for coding or for training.

A video model file is an image model file (enc.*, dec.g_s.*, dec.h_s.*, dec.inv_gain, tables.*,
train.*: the layout of image_weights) plus the temporal prior's integer convolutions
`dec.prior.N.{weight,shift,bias}` (int16, int8, int32, in call order), or with several priors
prior J's as `dec.prior.J.N.*`. Metadata: modality "video", format FORMAT_HYPERPRIOR_BASE
(FORMAT_NAMED_BASE for one prior on the previous latent, FORMAT_PRIORS for several), config
(VideoModelConfig as JSON), image_model ({"id", "sha256"} of the image model it started from),
training (provenance). When the image transforms were not trained, the image tensors are copied
from that image model file byte for byte, so intra frames code exactly as the image codec does
with that model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from .fixed_point import IntNet, build_intnet, conv_modules, dequantize_conv, quantize_conv
from .image_weights import FORMAT as IMAGE_FORMAT
from .image_weights import ImageCodingModel, export_tensors, image_config
from .image_weights import load_coding_model as load_image_coding_model
from .image_weights import load_float_model as load_image_float_model
from .video_model import PRIOR_MARGIN, TemporalPrior, VideoModel, VideoModelConfig
from .zoo import ModelInfo, describe, write_model_file

# -1: P's mean corrections add to the hyperprior's mean; -2: config names the base; -3: config lists
# the bases of several priors (SPEC 7.3, 7.6). A model is written in the oldest format that holds it
# (older readers read it right, and refuse newer formats rather than misread them).
FORMAT_HYPERPRIOR_BASE, FORMAT_NAMED_BASE = "ncodec-video-stprior-1", "ncodec-video-stprior-2"
FORMAT_PRIORS = "ncodec-video-stprior-3"
FORMATS = (FORMAT_HYPERPRIOR_BASE, FORMAT_NAMED_BASE, FORMAT_PRIORS)


class VideoModelError(ValueError):
    """A model file that is not a usable video model (one-line message)."""


def export(model: VideoModel, path: str | Path, model_id: str, training: dict | None = None,
           image_tensors: dict[str, torch.Tensor] | None = None,
           image_model: dict | None = None) -> Path:
    """Write a trained video model file.

    image_tensors: the tensors of the image model file the transforms came from, stored as they
    are (use when the transforms were frozen); otherwise they are exported from `model.image`.
    image_model: {"id", "sha256"} of that image model (provenance).
    """
    model = model.cpu().eval()
    t = dict(image_tensors) if image_tensors is not None else export_tensors(model.image)
    t = {k: v.contiguous() for k, v in t.items() if not k.startswith("dec.prior.")}
    bases = model.cfg.prior_bases
    for j, prior in enumerate(model.priors):
        for i, layer in enumerate(conv_modules(prior.net)):
            for k, v in quantize_conv(layer).items():
                t[f"{_prior_prefix(j, len(bases))}{i}.{k}"] = v.contiguous()
    config, fmt = model.cfg.as_dict(), FORMAT_PRIORS
    if bases == ("hyperprior",):
        del config["prior_bases"]
        fmt = FORMAT_HYPERPRIOR_BASE
    elif len(bases) == 1:
        config["prior_base"] = config.pop("prior_bases")[0]
        fmt = FORMAT_NAMED_BASE
    return write_model_file(path, t, model_id, "video", fmt, config, training,
                            {"image_model": image_model} if image_model else None)


def write_image_part(path: str | Path, dest: str | Path) -> Path:
    """Write a video model file's image part (transforms, gains, hyperprior, context, tables) as an
    image model file, e.g. for a new video run that starts from a fine-tuned model's transforms."""
    info = describe(Path(path))
    _check(info)
    t = {k: v for k, v in load_file(str(path)).items() if not k.startswith("dec.prior.")}
    return write_model_file(dest, t, f"{info.model_id}-image", "image", IMAGE_FORMAT,
                            image_config(info).as_dict(), {"image_part_of": {"id": info.model_id,
                                                                            "sha256": info.sha256}})


@dataclass
class VideoCodingModel:
    """Everything video encode/decode needs: the image coding model and the integer priors (one per
    base of `cfg.prior_bases`, in order)."""

    info: ModelInfo
    cfg: VideoModelConfig
    image: ImageCodingModel
    priors: list[IntNet]
    margin: int = PRIOR_MARGIN


def _prior_prefix(j: int, count: int) -> str:
    """Name prefix of prior j's tensors in a file of a model with `count` priors."""
    return "dec.prior." if count == 1 else f"dec.prior.{j}."


def _prior_params(t: dict[str, torch.Tensor], prefix: str, count: int) -> list[dict[str, torch.Tensor]]:
    try:
        return [{k: t[f"{prefix}{i}.{k}"] for k in ("weight", "shift", "bias")} for i in range(count)]
    except KeyError as err:
        raise VideoModelError(f"video model file lacks tensor {err.args[0]}") from None


def _check(info: ModelInfo) -> VideoModelConfig:
    if info.modality != "video":
        raise VideoModelError(f"model {info.model_id!r} is an {info.modality} model, not a video model")
    if info.format not in FORMATS:
        raise VideoModelError(f"model {info.model_id!r} has format {info.format!r}; this ncodec reads "
                              f"{' and '.join(FORMATS)}")
    try:
        cfg = VideoModelConfig.from_dict(info.config)
    except ValueError as err:
        raise VideoModelError(f"model {info.model_id!r}: {err}") from None
    if (len(cfg.prior_bases) > 1) != (info.format == FORMAT_PRIORS):
        raise VideoModelError(f"model {info.model_id!r}: format {info.format!r} with "
                              f"{len(cfg.prior_bases)} temporal priors")
    return cfg


@cache
def load_coding_model(path: Path) -> VideoCodingModel:
    info = describe(Path(path))
    cfg = _check(info)
    image = load_image_coding_model(Path(path))
    skeleton = TemporalPrior(cfg.m, cfg.prior_channels).net
    t = load_file(str(path))
    count, layers = len(cfg.prior_bases), len(conv_modules(skeleton))
    priors = [build_intnet(skeleton, _prior_params(t, _prior_prefix(j, count), layers)) for j in range(count)]
    return VideoCodingModel(info, cfg, image, priors)


def load_float_model(path: str | Path) -> VideoModel:
    """A trainable float model from a video model file (to resume or fine-tune)."""
    info = describe(Path(path))
    model = VideoModel(_check(info))
    model.image.load_state_dict(load_image_float_model(path).state_dict())
    t = load_file(str(path))
    for j, prior in enumerate(model.priors):
        convs = conv_modules(prior.net)
        params = _prior_params(t, _prior_prefix(j, len(model.priors)), len(convs))
        for layer, p in zip(convs, params, strict=True):
            dequantize_conv(layer, p)
    return model
