"""What the training loops share: progress notes, the run's log.jsonl, and resumable checkpoints of
modules with their Adam states (run/checkpoint.safetensors, written atomically)."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Set
from functools import cache
from pathlib import Path
from typing import NamedTuple, TextIO

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .bench.machine import cpu_model

CHECKPOINT = "checkpoint.safetensors"
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


class Part(NamedTuple):
    """A trained module and its Adam optimizer; in a checkpoint the module's state is PREFIX.* (the
    part's key) and the Adam state of its parameter NAME is ADAM.NAME.{step,exp_avg,exp_avg_sq}."""

    module: nn.Module
    opt: torch.optim.Optimizer
    adam: str


def note(msg: str) -> None:
    """A progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def record(log: TextIO, rec: dict) -> None:
    """One JSON line to stderr and to the run's log.jsonl."""
    note(json.dumps(rec))
    log.write(json.dumps(rec) + "\n")
    log.flush()


def record_loss(log: TextIO, rec: dict) -> None:
    """`record` a training step's {step, loss, ...}; RuntimeError when the loss is not finite."""
    record(log, rec)
    if not math.isfinite(rec["loss"]):
        raise RuntimeError(f"training diverged at step {rec['step']} (non-finite loss)")


def module_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The PREFIX.* tensors of a checkpoint, without the prefix: a module's state dict."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")}


def checkpoint_info(path: Path) -> tuple[int, dict]:
    """(step, meta) of a checkpoint file."""
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    return int(metadata["step"]), json.loads(metadata["meta"])


def hardware() -> str:
    """What this process trains on, for provenance: the GPU's name, else the CPU's and its threads."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name()}"
    return f"CPU: {cpu_model() or platform.machine()}, {torch.get_num_threads()} threads"


def save_checkpoint(run: Path, parts: dict[str, Part], step: int, meta: dict) -> None:
    """The parts' modules and Adam states, the step and `meta` (JSON, with `hardware` added) as
    run/checkpoint.safetensors."""
    tensors = {}
    for prefix, (module, opt, adam) in parts.items():
        tensors.update({f"{prefix}.{k}": v.contiguous() for k, v in module.state_dict().items()})
        names = {id(p): n for n, p in module.named_parameters()}
        for group in opt.param_groups:
            for p in group["params"]:
                for k, v in opt.state.get(p, {}).items():
                    tensors[f"{adam}.{names[id(p)]}.{k}"] = torch.as_tensor(v).contiguous()
    tmp = run / f"{CHECKPOINT}.tmp"
    meta = {**meta, "hardware": hardware()}
    save_file(tensors, str(tmp), metadata={"step": str(step), "meta": json.dumps(meta)})
    tmp.replace(run / CHECKPOINT)


def load_checkpoint(run: Path, parts: dict[str, Part]) -> int:
    """Restore the parts the run's checkpoint holds (one it lacks, e.g. a discriminator that starts
    later, stays as it is); returns the step, 0 without a checkpoint."""
    path = run / CHECKPOINT
    if not path.exists():
        return 0
    step, _ = checkpoint_info(path)
    tensors = load_file(str(path))
    for prefix, (module, opt, adam) in parts.items():
        state = module_state(tensors, prefix)
        if not state:
            continue
        module.load_state_dict(state)
        for name, p in module.named_parameters():
            saved = {k: tensors[f"{adam}.{name}.{k}"] for k in ADAM_STATE if f"{adam}.{name}.{k}" in tensors}
            if saved:
                opt.state[p] = saved
    return step


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags the CPU reports (empty where /proc/cpuinfo does not exist), read once."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    lines = (line for line in text.splitlines() if line.startswith("flags"))
    return frozenset(flag for line in lines for flag in line.split(":", 1)[1].split())


def resolve_precision(precision: str, device: str, flags: Set[str] | None = None) -> str:
    """"auto" -> "bf16" where bfloat16 arithmetic is native on `device`, else "fp32".

    On CPUs, oneDNN also runs bf16 on plain AVX-512 by emulation, about 3x slower than fp32 there,
    so "auto" asks the CPU's own flags (`flags`, default from /proc/cpuinfo) for AVX512-BF16 or AMX.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    flags = cpu_flags() if flags is None else flags
    return "bf16" if any(f in flags for f in NATIVE_BF16_FLAGS) else "fp32"
