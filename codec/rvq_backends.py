"""Exact nearest-codeword search for residual vector quantization, with several backends.

    codes = rvq_encode(x, codebooks)        # x [N, D] fp32, codebooks [S, K, D] -> int64 [N, S]
    x_hat = rvq_decode(codes, codebooks)    # sum of the selected codewords, [N, D]
    quantize_backends()                     # {"torch": "available", "cpp": ..., "cuda": ...}

Every backend computes, stage by stage, argmin_k ||c_k||^2 - 2 r.c_k on the running residual r
(then r <- r - c_k) in fp32, lowest index first on equal distances, so backends agree except
where two codewords are at (numerically) the same distance.

Backends:
  * "torch": any device; chunked over N so the distance block is at most
    ``TORCH_BLOCK_ELEMENTS`` floats (4096 x 1024), addmm + argmin.
  * "cpp": CPU; fused distance + argmin kernel in ``csrc/rvq_cpu.cpp`` (AVX2+FMA when the CPU
    has it), JIT-built once with torch.utils.cpp_extension (needs a C++ compiler and ninja),
    cached under ``$XDG_CACHE_HOME/ncodec/ext/<hash>`` (default ``~/.cache/ncodec/ext``).
  * "cuda": CUDA tensors; kernel in ``csrc/rvq_cuda.cu``, built only when a CUDA device and
    nvcc are present.
"auto" picks cuda for CUDA tensors (torch if the kernel is unavailable), else cpp when it
builds, else torch. Set NCODEC_DISABLE_CPP=1 / NCODEC_DISABLE_CUDA=1 to skip a native backend.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
from pathlib import Path

import torch

__all__ = ["rvq_encode", "rvq_decode", "quantize_backends", "BACKENDS", "MAX_CODEBOOK_SIZE"]

BACKENDS = ("auto", "torch", "cpp", "cuda")
MAX_CODEBOOK_SIZE = 65535
TORCH_BLOCK_ELEMENTS = 4096 * 1024

_CSRC = Path(__file__).resolve().parent / "csrc"
_CPP_SOURCE = _CSRC / "rvq_cpu.cpp"
_CUDA_SOURCE = _CSRC / "rvq_cuda.cu"
# No -march=native: the cached binary must run on any x86-64 CPU (AVX2 is picked at run time).
_CPP_CFLAGS = ["-O3", "-ftree-vectorize", "-pthread"]
_CPP_LDFLAGS = ["-pthread"]
_CUDA_CFLAGS = ["-O3"]

_lock = threading.Lock()
_native: dict[str, tuple[bool, str]] = {}  # backend -> (available, description or reason)


# --------------------------------------------------------------------------- validation


def _check_codebooks(codebooks: torch.Tensor) -> None:
    if not isinstance(codebooks, torch.Tensor):
        raise TypeError(f"codebooks must be a torch.Tensor, got {type(codebooks).__name__}")
    if codebooks.dtype != torch.float32:
        raise TypeError(f"codebooks must be float32, got {codebooks.dtype}")
    if codebooks.ndim != 3:
        raise ValueError(f"codebooks must be [S, K, D], got shape {tuple(codebooks.shape)}")
    S, K, D = codebooks.shape
    if S == 0:
        raise ValueError("codebooks has no stages (S == 0)")
    if K == 0 or D == 0:
        raise ValueError(f"codebooks must have K > 0 codewords of D > 0 dims, got K={K}, D={D}")
    if K > MAX_CODEBOOK_SIZE:
        raise ValueError(f"codebook size K={K} exceeds the maximum {MAX_CODEBOOK_SIZE}")


def _check_inputs(x: torch.Tensor, codebooks: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    _check_codebooks(codebooks)
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    if x.shape[1] != codebooks.shape[2]:
        raise ValueError(f"x has D={x.shape[1]} but codebooks have D={codebooks.shape[2]}")
    if x.device != codebooks.device:
        raise ValueError(f"x is on {x.device} but codebooks are on {codebooks.device}")
    if not bool(torch.isfinite(codebooks).all()):
        raise ValueError("codebooks contain NaN or inf")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf")


# --------------------------------------------------------------------------- native builds


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ncodec" / "ext"


def _build_key(source: Path, flags: list[str]) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    for part in (torch.__version__, str(torch.version.cuda), sys.version.split()[0],
                 platform.machine(), platform.system(), " ".join(flags)):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def _ninja_on_path() -> bool:
    """Make ninja findable by torch (the pip ``ninja`` package's binary may be off PATH)."""
    if shutil.which("ninja"):
        return True
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ninja") is not None


def _build_and_load(name: str, source: Path, cflags: list[str], ldflags: list[str],
                    what: str, cuda: bool = False) -> tuple[bool, str]:
    """Build ``source`` once into the cache (or reuse it) and load it; (ok, description)."""
    if not source.is_file():
        return False, f"unavailable: source {source} not found"
    build_dir = _cache_root() / _build_key(source, cflags + ldflags)
    lib = build_dir / f"{name}.so"
    marker = build_dir / "BUILD_OK"  # written only after a complete, loadable build
    if marker.is_file() and lib.is_file():
        try:
            torch.ops.load_library(str(lib))
            return True, f"available (cached at {build_dir})"
        except Exception as exc:
            return False, (f"unavailable: cached build {lib} failed to load ({exc}); "
                           f"delete {build_dir} to rebuild")
    if not _ninja_on_path():
        return False, "unavailable: ninja not found (pip install ninja)"
    from torch.utils import cpp_extension

    build_dir.mkdir(parents=True, exist_ok=True)
    print(f"ncodec: building the {what} (once, cached in {build_dir})", file=sys.stderr,
          flush=True)
    try:
        cpp_extension.load(
            name=name,
            sources=[str(source)],
            extra_cflags=[] if cuda else cflags,
            extra_cuda_cflags=cflags if cuda else None,
            extra_ldflags=ldflags,
            build_directory=str(build_dir),
            with_cuda=cuda,
            is_python_module=False,
            verbose=False,
        )
    except Exception as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = " | ".join(lines[-4:])[-600:] if lines else type(exc).__name__
        return False, f"unavailable: build failed ({type(exc).__name__}: {detail})"
    marker.write_text(f"{name}\n")
    return True, f"available (built once, cached at {build_dir})"


def _probe_cpp() -> tuple[bool, str]:
    if os.environ.get("NCODEC_DISABLE_CPP"):
        return False, "unavailable: disabled by NCODEC_DISABLE_CPP"
    if os.name != "posix":
        return False, "unavailable: the C++ kernel is built with GCC/Clang on POSIX systems only"
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return False, f"unavailable: no C++ compiler ({cxx} not found)"
    ok, desc = _build_and_load("ncodec_rvq_cpu", _CPP_SOURCE, _CPP_CFLAGS, _CPP_LDFLAGS,
                               "C++ quantization kernel")
    if ok:
        try:
            isa = torch.ops.ncodec.rvq_cpu_isa()
        except Exception as exc:  # loaded, but the op is missing: treat as broken
            return False, f"unavailable: kernel loaded without its ops ({exc})"
        desc = desc.replace("available (", f"available ({isa} kernel, ", 1)
    return ok, desc


def _probe_cuda() -> tuple[bool, str]:
    if os.environ.get("NCODEC_DISABLE_CUDA"):
        return False, "unavailable: disabled by NCODEC_DISABLE_CUDA"
    if torch.version.cuda is None:
        return False, "unavailable: this torch build has no CUDA support"
    if not torch.cuda.is_available():
        return False, "unavailable: no CUDA device"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return False, "unavailable: CUDA toolkit (nvcc) not found; set CUDA_HOME"
    return _build_and_load("ncodec_rvq_cuda", _CUDA_SOURCE, _CUDA_CFLAGS, [],
                           "CUDA quantization kernel", cuda=True)


def _native_backend(kind: str) -> tuple[bool, str]:
    with _lock:
        if kind not in _native:
            _native[kind] = _probe_cpp() if kind == "cpp" else _probe_cuda()
        return _native[kind]


def quantize_backends() -> dict[str, str]:
    """Every backend -> "available ..." or "unavailable: <reason>" (builds cpp on first call)."""
    return {
        "torch": "available (chunked addmm + argmin, any device)",
        "cpp": _native_backend("cpp")[1],
        "cuda": _native_backend("cuda")[1],
    }


# --------------------------------------------------------------------------- encode / decode


@torch.no_grad()
def _encode_torch(x: torch.Tensor, codebooks: torch.Tensor,
                  block_rows: int | None = None) -> torch.Tensor:
    N = x.shape[0]
    S, K, _ = codebooks.shape
    codes = torch.empty((N, S), dtype=torch.int64, device=x.device)
    block = block_rows or max(1, TORCH_BLOCK_ELEMENTS // K)
    norms = (codebooks * codebooks).sum(-1)  # [S, K]
    for start in range(0, N, block):
        r = x[start:start + block].clone()
        for s in range(S):
            idx = torch.addmm(norms[s], r, codebooks[s].t(), alpha=-2.0).argmin(1)
            codes[start:start + block, s] = idx
            r.sub_(codebooks[s].index_select(0, idx))
    return codes


def _resolve(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend == "auto":
        if device.type == "cuda":
            return "cuda" if _native_backend("cuda")[0] else "torch"
        if device.type == "cpu" and _native_backend("cpp")[0]:
            return "cpp"
        return "torch"
    if backend == "cpp" and device.type != "cpu":
        raise ValueError(f"the cpp backend needs CPU tensors, got {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"the cuda backend needs CUDA tensors, got {device}")
    if backend in ("cpp", "cuda"):
        ok, why = _native_backend(backend)
        if not ok:
            raise RuntimeError(f"rvq backend {backend!r} is {why}")
    return backend


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Nearest-codeword codes of ``x`` [N, D] for each stage of ``codebooks`` [S, K, D].

    Greedy residual quantization, exact per stage; int64 [N, S] on x's device. N == 0 gives an
    empty [0, S] tensor. Raises TypeError (not float32 tensors), ValueError (shapes, devices,
    NaN/inf, K > 65535) or RuntimeError (an explicitly requested backend is unavailable).
    """
    _check_inputs(x, codebooks)
    name = _resolve(backend, x.device)
    if x.shape[0] == 0:
        return torch.empty((0, codebooks.shape[0]), dtype=torch.int64, device=x.device)
    x = x.detach().contiguous()
    codebooks = codebooks.detach().contiguous()
    if name == "cpp":
        return torch.ops.ncodec.rvq_encode_cpu(x, codebooks)
    if name == "cuda":
        return torch.ops.ncodec.rvq_encode_cuda(x, codebooks)
    return _encode_torch(x, codebooks)


def rvq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Sum over stages of the selected codewords: codes [N, S'] (S' <= S) -> fp32 [N, D].

    Fewer columns than stages decode with the first S' stages (bitrate scalability).
    """
    _check_codebooks(codebooks)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"codes must be an integer tensor (int64), got {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, S], got shape {tuple(codes.shape)}")
    S, K, D = codebooks.shape
    if codes.shape[1] > S:
        raise ValueError(f"codes have {codes.shape[1]} stages but codebooks only {S}")
    if codes.device != codebooks.device:
        raise ValueError(f"codes are on {codes.device} but codebooks are on {codebooks.device}")
    out = torch.zeros((codes.shape[0], D), dtype=codebooks.dtype, device=codebooks.device)
    if codes.numel() == 0:
        return out
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= K:
        raise ValueError(f"codes must lie in [0, {K}), got values in [{lo}, {hi}]")
    codes = codes.long()
    for s in range(codes.shape[1]):
        out = out + codebooks[s].index_select(0, codes[:, s])
    return out
