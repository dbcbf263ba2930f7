"""Models: the shipped ones in this folder (each with a model card <id>.md), plus any in the
folders named by the NCODEC_MODEL_PATH environment variable (os.pathsep-separated)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from safetensors import SafetensorError, safe_open

ZOO_DIR = Path(__file__).parent
DEFAULT_MODELS = {"image": "image-hyperprior-v6", "audio": "audio-seanet-v1", "video": "video-stprior-v8"}


class ModelNotFound(LookupError):
    """No installed model matches the request."""


class NotAModelFile(ValueError):
    """A file that is not an ncodec model file (unreadable, or no model_id/modality metadata)."""


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    modality: str
    path: Path
    sha256: str
    size_bytes: int
    config: dict
    training: dict | None = None  # the file's provenance (steps, data, ...), if it records one
    format: str = ""  # the file's layout name (e.g. ncodec-image-rvq-1)

    @property
    def card(self) -> Path:
        return self.path.with_suffix(".md")

    @property
    def weights_hash(self) -> bytes:
        return bytes.fromhex(self.sha256)

    def summary(self) -> dict:
        return {"id": self.model_id, "modality": self.modality, "sha256": self.sha256,
                "size_bytes": self.size_bytes, "default": DEFAULT_MODELS.get(self.modality) == self.model_id,
                "card": str(self.card)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_model_file(path: str | Path, tensors: dict, model_id: str, modality: str, fmt: str, config: dict,
                     training: dict | None = None, extra: dict | None = None) -> Path:
    """Save a model file as `describe` reads it: the tensors, and metadata model_id, modality,
    format, config, training (provenance) and any `extra` entries, all but the first three as
    JSON. The folder is created if needed; the file appears whole (written beside, then renamed)
    with the permissions a plain open() gives."""
    from safetensors.torch import save

    from ..atomic import atomic_output

    meta = {"model_id": model_id, "modality": modality, "format": fmt, "config": json.dumps(config)}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    if training:
        meta["training"] = json.dumps(training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(_sorted_metadata(save(tensors, metadata=meta)))
    return path


def _sorted_metadata(data: bytes) -> bytes:
    """safetensors bytes with the header's metadata in key order (safetensors writes it in a random
    order, so the same model would give files, and weights hashes, that differ run to run)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text = text.ljust(-(-len(text) // 8) * 8)  # (tensor offsets count from the end of the header)
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


@cache
def describe(path: Path) -> ModelInfo:
    """The model file's id, modality, hash, size, config and provenance; NotAModelFile for any
    other file."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise NotAModelFile(f"{path} is not a readable safetensors file: {err}") from None
    if "model_id" not in meta or "modality" not in meta:
        raise NotAModelFile(f"{path} is not an ncodec model file (no model_id/modality metadata; a "
                            "training checkpoint is exported with `ncodec train ... --export FILE`)")
    training = json.loads(meta["training"]) if "training" in meta else None
    return ModelInfo(meta["model_id"], meta["modality"], path, file_sha256(path),
                     path.stat().st_size, json.loads(meta.get("config", "{}")), training,
                     meta.get("format", ""))


def model_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("NCODEC_MODEL_PATH", "").split(os.pathsep) if p]
    return [ZOO_DIR, *extra]


def installed() -> list[ModelInfo]:
    """Shipped models first, then user models from NCODEC_MODEL_PATH; other .safetensors files in
    those folders (e.g. training checkpoints) are skipped with a warning."""
    models = []
    for path in (p for d in model_dirs() for p in sorted(d.glob("*.safetensors"))):
        try:
            models.append(describe(path))
        except NotAModelFile as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
    return models


def find(model_id: str | None, modality: str) -> ModelInfo:
    """The installed model with this id (or the modality's default)."""
    wanted = model_id or DEFAULT_MODELS.get(modality)
    models = installed()
    matches = [m for m in models if m.model_id == wanted]
    if len({m.sha256 for m in matches}) > 1:
        others = ", ".join(str(m.path) for m in matches[1:])
        warnings.warn(f"several installed models are called {wanted!r}; using {matches[0].path} "
                      f"(ignored: {others})", stacklevel=2)
    if matches:
        return matches[0]
    have = ", ".join(f"{m.model_id}@{m.sha256[:12]}" for m in models) or "none"
    raise ModelNotFound(f"model {wanted!r} is not installed (installed: {have})")


def locate(name: str, modality: str) -> ModelInfo:
    """A model given as a file path or as an installed id (`find`, which may return another
    modality's model of that id: callers check)."""
    path = Path(name)
    return describe(path) if path.is_file() else find(name, modality)


def find_by_hash(model_id: str, weights_hash: bytes) -> ModelInfo:
    """The installed model a file was made with, refused by name if the weights differ."""
    models = installed()
    for m in models:
        if m.model_id == model_id and m.weights_hash == weights_hash:
            return m
    have = ", ".join(f"{m.model_id}@{m.sha256[:12]}" for m in models) or "none"
    raise ModelNotFound(f"file needs model {model_id}@{weights_hash.hex()[:12]}; installed: {have}")


def model_for(model_id: str | None, modality: str, error: type[Exception], train: str) -> ModelInfo:
    """The model to encode `modality` with: `model_id`, else the modality's default, else the first
    installed one. Raises `error` naming the `train` command when none is installed."""
    article = "an" if modality[0] in "aeiou" else "a"
    if model_id is not None:
        info = find(model_id, modality)
        if info.modality != modality:
            raise error(f"model {model_id!r} is an {info.modality} model, not {article} {modality} model")
        return info
    models = [m for m in installed() if m.modality == modality]
    if not models:
        raise error(f"no {modality} model installed; train one with `{train}` and add its folder to "
                    "NCODEC_MODEL_PATH")
    default = [m for m in models if m.model_id == DEFAULT_MODELS.get(modality)]
    return (default or models)[0]
