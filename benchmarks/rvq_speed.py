"""RVQ encode throughput: the native kernels against the best pure-torch search, in one run.

    python benchmarks/rvq_speed.py                     # CPU: torch variants vs the C++ kernel
    python benchmarks/rvq_speed.py --device cuda       # GPU: torch on GPU vs the CUDA kernel

Cases (issue 4): S=8, K=1024, D=128, N=65536 and an audio-like S=32, K=1024, D=128. Every
torch variant is exact greedy RVQ; the fastest of them is the baseline the native backend is
compared with. Throughput counts input vectors per second; GFLOP/s counts the 2*N*S*K*D
multiply-adds of the distance products (what every variant computes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ncodec.bench.machine import cpu_model
from ncodec.rvq_backends import quantize_backends, rvq_encode

CASES = [(8, 1024, 128), (32, 1024, 128)]
# Peak dense fp32 (non-tensor-core) throughput, for the "fraction of peak" column.
PEAK_FP32_TFLOPS = {"H100 SXM": 67.0, "H100 PCIe": 51.0, "H200": 67.0}


@torch.no_grad()
def torch_addmm(x: torch.Tensor, cb: torch.Tensor, rows: int) -> torch.Tensor:
    """||c||^2 - 2 r.c with addmm + argmin over row blocks of the residual."""
    norms = (cb * cb).sum(-1)
    codes = torch.empty(x.shape[0], cb.shape[0], dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], rows):
        r = x[start:start + rows].clone()
        for s in range(cb.shape[0]):
            idx = torch.addmm(norms[s], r, cb[s].t(), alpha=-2.0).argmin(1)
            codes[start:start + rows, s] = idx
            r -= cb[s].index_select(0, idx)
    return codes


@torch.no_grad()
def torch_cdist(x: torch.Tensor, cb: torch.Tensor, rows: int) -> torch.Tensor:
    """torch.cdist (matmul path) + argmin over row blocks."""
    codes = torch.empty(x.shape[0], cb.shape[0], dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], rows):
        r = x[start:start + rows].clone()
        for s in range(cb.shape[0]):
            idx = torch.cdist(r, cb[s], compute_mode="use_mm_for_euclid_dist").argmin(1)
            codes[start:start + rows, s] = idx
            r -= cb[s].index_select(0, idx)
    return codes


def torch_variants() -> dict[str, Callable]:
    return {
        "torch addmm, 1024-row blocks": lambda x, cb: torch_addmm(x, cb, 1024),
        "torch addmm, 4096-row blocks (ncodec torch backend)": lambda x, cb: rvq_encode(x, cb, "torch"),
        "torch addmm, 16384-row blocks": lambda x, cb: torch_addmm(x, cb, 16384),
        "torch cdist, 4096-row blocks": lambda x, cb: torch_cdist(x, cb, 4096),
    }


def isa_capped(isa: str) -> Callable:
    """The cpp backend with its CPU kernel capped at `isa` (NCODEC_RVQ_ISA) for the call."""
    def encode(x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
        before = os.environ.get("NCODEC_RVQ_ISA")
        os.environ["NCODEC_RVQ_ISA"] = isa
        try:
            return rvq_encode(x, cb, "cpp")
        finally:
            if before is None:
                del os.environ["NCODEC_RVQ_ISA"]
            else:
                os.environ["NCODEC_RVQ_ISA"] = before
    return encode


def timed(fn: Callable, x: torch.Tensor, cb: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of `repeats` runs after one warm-up run."""
    out = fn(x, cb)
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn(x, cb)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def machine(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    else:
        info["cpu"] = cpu_model()
    return info


def peak_tflops(gpu_name: str) -> float | None:
    for key, peak in PEAK_FP32_TFLOPS.items():
        if all(part in gpu_name for part in key.split()):
            return peak
    return None


def run(device: str, n: int, repeats: int) -> dict:
    native = "cuda" if device == "cuda" else "cpp"
    results = {"machine": machine(device), "backends": quantize_backends(), "n_vectors": n,
               "cases": []}
    for S, K, D in CASES:
        g = torch.Generator().manual_seed(S)
        x = torch.randn(n, D, generator=g).to(device)
        cb = (torch.randn(S, K, D, generator=g) * torch.logspace(0, -1, S)[:, None, None]).to(device)
        flops = 2.0 * n * S * K * D
        case = {"S": S, "K": K, "D": D, "N": n, "rows": []}
        reference = None
        variants = [*torch_variants().items(), (native, lambda x, cb: rvq_encode(x, cb, native))]
        if native == "cpp":
            variants.append(("cpp, kernel capped at avx2+fma (NCODEC_RVQ_ISA=avx2)", isa_capped("avx2")))
        for name, fn in variants:
            if name.startswith(native) and not results["backends"][native].startswith("available"):
                continue
            seconds, codes = timed(fn, x, cb, repeats)
            reference = codes if reference is None else reference
            row = {"backend": name, "seconds": round(seconds, 4), "vectors_per_s": round(n / seconds),
                   "gflops": round(flops / seconds / 1e9, 1),
                   "rows_differing_from_first": int((codes != reference).any(1).sum())}
            case["rows"].append(row)
            print(f"S={S:2} K={K} D={D}  {name:52} {row['vectors_per_s']:>10,} vec/s "
                  f"{row['gflops']:>8} GFLOP/s  differing rows {row['rows_differing_from_first']}",
                  flush=True)
        torch_rows = [r for r in case["rows"] if r["backend"].startswith("torch")]
        best = max(torch_rows, key=lambda r: r["vectors_per_s"])
        case["best_torch"] = best["backend"]
        native_rows = [r for r in case["rows"] if r["backend"] == native]
        if native_rows:
            case[f"{native}_speedup_over_best_torch"] = round(
                native_rows[0]["vectors_per_s"] / best["vectors_per_s"], 2)
            print(f"  {native} is {case[f'{native}_speedup_over_best_torch']}x the best torch "
                  f"variant ({best['backend']})")
            if device == "cuda":
                peak = peak_tflops(results["machine"]["gpu"])
                if peak:
                    case["cuda_fraction_of_fp32_peak"] = round(native_rows[0]["gflops"] / 1e3 / peak, 3)
        results["cases"].append(case)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("-n", type=int, default=65536, help="vectors per case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="JSON results file (default benchmarks/results/rvq_speed_<device>.json)")
    args = p.parse_args()
    results = run(args.device, args.n, args.repeats)
    out = Path(args.out or Path(__file__).parent / "results" / f"rvq_speed_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
