"""Audio model files: export from a trained model, load for coding or for training.

File layout (safetensors): enc.* float16 encoder weights; dec.* integer decoder convs (int16
weights, int8 shifts, int32 biases, in call order), dec.codebooks, the RVQ codewords [stages, K, D]
as int16, and dec.codebook_shift, int8 [stages]: codeword = dec.codebooks << shift, an integer
with ACT_BITS fractional bits (the shift keeps each stage's largest codeword within int16);
tables.codes.counts, the per-stage categorical tables of the code indices [stages, K + 1]; train.*
float state only training needs (the prior's logits, the RVQ cluster sizes; the EMA sums are
rebuilt from them and the codewords).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from ncodec.entropy.coder import TableSet
from safetensors import safe_open
from safetensors.torch import load_file

from .audio_model import AudioCodecModel, AudioModelConfig, reach_frames
from .fixed_point import ACT_BITS, code_tables, join_codebooks, rvq_code_tensors, sum_codewords
from .fixed_point_1d import IntNet1d, build_intnet1d, conv1d_modules, dequantize_conv1d, quantize_conv1d
from .zoo import ModelInfo, describe, write_model_file

FORMAT = "ncodec-audio-seanet-2"  # 1: int32 codebooks (no file of it shipped)


def export(model: AudioCodecModel, path: str | Path, model_id: str, training: dict | None = None) -> Path:
    """Write a trained model as an integer-decoder model file; training: provenance metadata."""
    model = model.cpu().eval()
    t: dict[str, torch.Tensor] = {}
    for k, v in model.encoder.state_dict().items():
        t[f"enc.{k}"] = v.half().contiguous()
    for i, conv in enumerate(conv1d_modules(model.decoder)):
        for k, v in quantize_conv1d(conv).items():
            t[f"dec.{i}.{k}"] = v.contiguous()
    t.update(rvq_code_tensors(model.rvq, model.prior))
    return write_model_file(path, t, model_id, "audio", FORMAT, model.cfg.as_dict(), training)


@dataclass
class AudioCodingModel:
    """Everything encode/decode needs, loaded from one model file."""

    info: ModelInfo
    cfg: AudioModelConfig
    encoder: torch.nn.Module  # float, eval mode
    rvq: torch.nn.Module  # float codebooks equal to the integer ones / 2**ACT_BITS
    decoder: IntNet1d
    codebooks: torch.Tensor  # int64 [stages, K, D], ACT_BITS fraction
    tables: TableSet
    margin: int  # latent frames of context each side for windowed encode/decode

    def latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Exact integer latent [B, D, T] of codes [B, T, n]: codeword sums, clamped, float64."""
        return sum_codewords(self.codebooks, codes).transpose(1, 2).double()


def _check_format(info: ModelInfo, path: Path) -> None:
    if info.modality != "audio":
        raise ValueError(f"{path} holds a {info.modality} model, not an audio model")
    with safe_open(str(path), "pt") as f:
        found = (f.metadata() or {}).get("format")
    if found != FORMAT:
        raise ValueError(f"{path} is an audio model file of format {found!r}; this ncodec reads {FORMAT!r}")


def _decoder_params(t: dict[str, torch.Tensor], count: int) -> list[dict[str, torch.Tensor]]:
    return [{k: t[f"dec.{i}.{k}"] for k in ("weight", "shift", "bias")} for i in range(count)]


@cache
def load_coding_model(path: Path) -> AudioCodingModel:
    info = describe(Path(path))
    _check_format(info, path)
    t = load_file(str(path))
    skel = AudioCodecModel(AudioModelConfig.from_dict(info.config))
    skel.encoder.load_state_dict({k[4:]: v.float() for k, v in t.items() if k.startswith("enc.")})
    codebooks = join_codebooks(t)
    skel.rvq.embed[0] = codebooks.double().div(2**ACT_BITS).float()
    params = _decoder_params(t, len(conv1d_modules(skel.decoder)))
    cfg = skel.cfg
    return AudioCodingModel(
        info=info, cfg=cfg, encoder=skel.encoder.eval(), rvq=skel.rvq.eval(),
        decoder=build_intnet1d(skel.decoder, params), codebooks=codebooks,
        tables=code_tables(t, cfg.codebook_size),
        margin=max(reach_frames(skel.decoder, 1), reach_frames(skel.encoder, 1 / cfg.hop)),
    )


def load_float_model(path: str | Path) -> AudioCodecModel:
    """A trainable float model initialised from a model file (the fine-tuning resume point)."""
    path = Path(path)
    info = describe(path)
    _check_format(info, path)
    t = load_file(str(path))
    model = AudioCodecModel(AudioModelConfig.from_dict(info.config))
    model.encoder.load_state_dict({k[4:]: v.float() for k, v in t.items() if k.startswith("enc.")})
    convs = conv1d_modules(model.decoder)
    for conv, p in zip(convs, _decoder_params(t, len(convs)), strict=True):
        dequantize_conv1d(conv, p)
    model.rvq.embed[0] = join_codebooks(t).double().div(2**ACT_BITS).float()
    model.rvq.cluster_size[:] = t["train.rvq.cluster_size"]
    model.rvq.embed_sum[:] = model.rvq.embed * model.rvq.cluster_size[..., None]  # the EMA's invariant
    model.rvq.initted.fill_(True)
    model.prior.logits.data = t["train.prior.logits"].float()
    return model
