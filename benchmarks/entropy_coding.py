"""Range-coding throughput and overhead of ncodec's entropy core, next to CompressAI's rANS.

    python benchmarks/entropy_coding.py [--n 1000000] [--compressai-python /path/to/python]

Symbols: Gaussian latents as a learned image codec makes them (scale indices skewed towards
small scales), coded with ncodec's 64 integer Gaussian tables. CompressAI (optional, in its own
environment because it pins other torch/numpy versions) codes the same symbols with the same
tables re-quantised to its 16-bit precision, in a subprocess; data passes through an .npz file.
Reports Msymbols/s (median of 3) and bits/symbol against the ideal information content.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAI_SCRIPT = r"""
import json, sys, time
import numpy as np
from compressai.ans import RansDecoder, RansEncoder
d = np.load(sys.argv[1], allow_pickle=False)
sym, idx = d["symbols"].tolist(), d["index"].tolist()
cdf = [row[:n].tolist() for row, n in zip(d["cdf"], d["cdf_len"])]
lens, offs = d["cdf_len"].tolist(), d["offsets"].tolist()
enc_t, dec_t = [], []
for _ in range(3):
    t = time.perf_counter(); blob = RansEncoder().encode_with_indexes(sym, idx, cdf, lens, offs)
    enc_t.append(time.perf_counter() - t)
    t = time.perf_counter(); out = RansDecoder().decode_with_indexes(blob, idx, cdf, lens, offs)
    dec_t.append(time.perf_counter() - t)
assert out == sym, "compressai round trip failed"
print(json.dumps({"bytes": len(blob), "enc_s": sorted(enc_t)[1], "dec_s": sorted(dec_t)[1]}))
"""


def make_symbols(n: int, seed: int = 0):
    from ncodec.entropy.gaussian import scale_table

    rng = np.random.default_rng(seed)
    index = np.minimum(rng.geometric(0.08, n) - 1, 63)  # mostly small scales, as in real latents
    symbols = np.round(rng.normal(0, scale_table()[index])).astype(np.int64)
    return symbols, index


def ncodec_tables():
    from ncodec.entropy.coder import TableSet
    from ncodec.entropy.gaussian import gaussian_tables, scale_table
    from ncodec.entropy.tables import PRECISION

    counts, radii = gaussian_tables(scale_table(), PRECISION)
    return TableSet(counts, 2 * radii + 1, -radii), PRECISION


def ideal_bits(symbols, index, tables, precision) -> float:
    rel = symbols - tables.offsets[index]
    rel = np.where((rel >= 0) & (rel < tables.sizes[index]), rel, tables.sizes[index])
    return float(-np.log2(tables.counts[index, rel] / (1 << precision)).sum())


def time_ncodec(symbols, index, tables) -> dict:
    from ncodec.entropy.coder import decode, encode

    enc_t, dec_t = [], []
    for _ in range(3):
        t = time.perf_counter()
        payload = encode(symbols, index, tables)
        enc_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = decode(payload, index, tables)
        dec_t.append(time.perf_counter() - t)
    assert np.array_equal(out, symbols)
    return {"bytes": len(payload), "enc_s": sorted(enc_t)[1], "dec_s": sorted(dec_t)[1]}


def time_compressai(python: str, symbols, index, tables, precision) -> dict:
    from ncodec.entropy.tables import pmf_to_counts

    used = [tables.counts[t, : tables.sizes[t] + 1] for t in range(len(tables))]
    width = max(len(u) for u in used) + 1
    cdf = np.zeros((len(tables), width), np.int32)
    for t, u in enumerate(used):
        c16 = pmf_to_counts((u / (1 << precision))[None], 16)[0]
        cdf[t, 1 : len(u) + 1] = np.cumsum(c16)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "symbols.npz"
        np.savez(npz, symbols=symbols.astype(np.int32), index=index.astype(np.int32), cdf=cdf,
                 cdf_len=(tables.sizes + 2).astype(np.int32), offsets=tables.offsets.astype(np.int32))
        res = subprocess.run([python, "-c", CAI_SCRIPT, str(npz)], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr.strip().splitlines()[-1])
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--compressai-python", default="/work/venv-cai/bin/python")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "entropy_coding.json"))
    args = ap.parse_args()
    import constriction
    import torch

    tables, precision = ncodec_tables()
    symbols, index = make_symbols(args.n)
    ideal = ideal_bits(symbols, index, tables, precision)
    results = {"ncodec (constriction range coder)": time_ncodec(symbols, index, tables)}
    try:
        results["compressai rANS (16-bit tables)"] = time_compressai(
            args.compressai_python, symbols, index, tables, precision)
    except (OSError, RuntimeError) as err:
        results["compressai rANS (16-bit tables)"] = {"unavailable": str(err)}
    report = {"n_symbols": args.n, "ideal_bits_per_symbol": ideal / args.n,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "numpy": np.__version__,
                          "constriction": getattr(constriction, "__version__", "?")},
              "coders": {}}
    print(f"{args.n} symbols, ideal {ideal / args.n:.4f} bits/symbol\n")
    print("| coder | enc Msym/s | dec Msym/s | bits/symbol | overhead |\n|---|---|---|---|---|")
    for name, r in results.items():
        if "unavailable" in r:
            print(f"| {name} | unavailable: {r['unavailable']} | | | |")
            report["coders"][name] = r
            continue
        bits = r["bytes"] * 8 / args.n
        row = {"enc_msym_s": args.n / r["enc_s"] / 1e6, "dec_msym_s": args.n / r["dec_s"] / 1e6,
               "bits_per_symbol": bits, "overhead_pct": (bits * args.n / ideal - 1) * 100}
        report["coders"][name] = row
        print(f"| {name} | {row['enc_msym_s']:.2f} | {row['dec_msym_s']:.2f} | {bits:.4f} "
              f"| {row['overhead_pct']:+.3f}% |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
