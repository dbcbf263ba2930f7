"""Rate-distortion of ncodec's image model against JPEG, WebP, AVIF and JPEG XL, in one run.

    python benchmarks/image_rd.py --dataset ../shared/datasets/images/kodak --workers 2 \
        --out benchmarks/results/image_rd_kodak.json

Every codec is swept over its quality range on every image; the JSON holds per-image rows
(bytes, bpp = 8*bytes/pixels, PSNR-RGB over all samples with peak 255, MS-SSIM on RGB with
data range 255, encode/decode seconds) and per-setting means; BD-rate is the classic
Bjontegaard delta (cubic fit of log-rate against PSNR, integrated over the overlapping PSNR
range, stated in the output) against the chosen anchor. Classical codecs run in-process:
JPEG/WebP through Pillow (4:2:0, Pillow defaults; WebP method 6), AVIF (libavif via
imagecodecs, 4:4:4, speed 6) and JPEG XL (libjxl via imagecodecs, effort 7).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SETTINGS = {
    "ncodec": [1, 2, 3, 4, 5, 6, 7, 8],
    "jpeg": [3, 6, 10, 20, 30, 50, 70, 85, 95],
    "webp": [0, 2, 5, 15, 30, 50, 70, 85, 95],
    "avif": [2, 8, 20, 35, 50, 65, 80, 90],
    "jxl": [25.0, 18.0, 12.0, 8.0, 5.0, 3.0, 2.0, 1.2, 0.7],
}


def _pil(fmt: str, **opts):
    def encode(rgb: np.ndarray, q) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, quality=int(q), **opts)
        return buf.getvalue()

    return encode, lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def codec_functions(name: str):
    """(encode(rgb, setting) -> bytes, decode(bytes) -> rgb) for a codec name."""
    if name == "ncodec":
        from ncodec.image_codec import decode_image, encode_image

        return (lambda rgb, q: encode_image(Image.fromarray(rgb), float(q)),
                lambda data: np.asarray(decode_image(data)))
    if name == "jpeg":
        return _pil("JPEG")
    if name == "webp":
        return _pil("WEBP", method=6)
    import imagecodecs

    if name == "avif":
        yuv444 = imagecodecs.AVIF.PIXEL_FORMAT.YUV444
        return (lambda rgb, q: imagecodecs.avif_encode(rgb, level=int(q), speed=6, pixelformat=yuv444),
                imagecodecs.avif_decode)
    if name == "jxl":
        return (lambda rgb, d: imagecodecs.jpegxl_encode(rgb, distance=float(d), effort=7),
                imagecodecs.jpegxl_decode)
    raise ValueError(f"unknown codec {name}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    if min(a.shape[:2]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as msssim

    ta, tb = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].double() for x in (a, b))
    return float(msssim(ta, tb, data_range=255))


def run_image(path: str, codecs: list[str]) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    rows = []
    for name in codecs:
        encode, decode = codec_functions(name)
        for setting in SETTINGS[name]:
            t0 = time.perf_counter()
            data = encode(rgb, setting)
            t1 = time.perf_counter()
            out = decode(data)
            t2 = time.perf_counter()
            rows.append({"image": Path(path).name, "codec": name, "setting": setting,
                         "bytes": len(data), "bpp": len(data) * 8 / (rgb.shape[0] * rgb.shape[1]),
                         "psnr": psnr(rgb, out), "ms_ssim": ms_ssim(rgb, out),
                         "enc_s": t1 - t0, "dec_s": t2 - t1})
    return rows


def summarise(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for name in dict.fromkeys(r["codec"] for r in rows):
        for setting in dict.fromkeys(r["setting"] for r in rows if r["codec"] == name):
            sel = [r for r in rows if r["codec"] == name and r["setting"] == setting]
            ms = [r["ms_ssim"] for r in sel if r["ms_ssim"] is not None]
            out.setdefault(name, []).append({
                "setting": setting, "bpp": float(np.mean([r["bpp"] for r in sel])),
                "psnr": float(np.mean([r["psnr"] for r in sel])),
                "ms_ssim": float(np.mean(ms)) if ms else None,
                "enc_s": float(np.mean([r["enc_s"] for r in sel])),
                "dec_s": float(np.mean([r["dec_s"] for r in sel]))})
    return out


def bd_rate(anchor: list[dict], test: list[dict], key: str = "psnr") -> dict:
    """Bjontegaard delta rate (%) of test vs anchor; cubic fits of log rate over quality."""
    def curve(points):
        pts = [(p["bpp"], p[key]) for p in points if p[key] is not None]
        q = np.array([v for _, v in pts])
        if key == "ms_ssim":
            q = -10 * np.log10(1 - q)
        return np.log(np.array([r for r, _ in pts])), q

    ra, qa = curve(anchor)
    rt, qt = curve(test)
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if lo >= hi or len(qa) < 4 or len(qt) < 4:
        return {"value_pct": None, "overlap_db": None}
    pa, pt = np.polyint(np.polyfit(qa, ra, 3)), np.polyint(np.polyfit(qt, rt, 3))
    avg = ((np.polyval(pt, hi) - np.polyval(pt, lo)) - (np.polyval(pa, hi) - np.polyval(pa, lo))) / (hi - lo)
    return {"value_pct": float((np.exp(avg) - 1) * 100), "overlap_db": [float(lo), float(hi)]}


def machine() -> dict:
    import imagecodecs
    import PIL
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    from ncodec.zoo import find

    model = find(None, "image")
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "imagecodecs": imagecodecs.__version__,
            "ncodec_commit": commit, "model": {"id": model.model_id, "sha256": model.sha256}}


def main() -> None:
    from ncodec.media import image_files

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--codecs", default="ncodec,jpeg,webp,avif,jxl")
    ap.add_argument("--anchor", default="webp")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    codecs = args.codecs.split(",")
    files = [str(p) for p in image_files(args.dataset)][: args.limit]
    rows: list[dict] = []
    start = time.monotonic()
    with ProcessPoolExecutor(args.workers) as pool:
        for i, res in enumerate(pool.map(run_image, files, [codecs] * len(files)), 1):
            rows += res
            print(f"\r{i}/{len(files)} images, {time.monotonic() - start:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    summary = summarise(rows)
    bd = {name: {k: bd_rate(summary[args.anchor], summary[name], k) for k in ("psnr", "ms_ssim")}
          for name in summary}
    result = {"schema": 1, "dataset": args.dataset, "images": len(files), "anchor": args.anchor,
              "machine": machine(), "summary": summary, "bd_rate": bd, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for name, pts in summary.items():
        b = bd[name]["psnr"]
        bd_txt = "n/a"
        if b["value_pct"] is not None:
            lo, hi = b["overlap_db"]
            bd_txt = f"{b['value_pct']:+.1f}% over {lo:.1f}-{hi:.1f} dB"
        print(f"\n{name} (BD-rate vs {args.anchor}, PSNR: {bd_txt})")
        print("| setting | bpp | PSNR-RGB | MS-SSIM | enc s | dec s |\n|---|---|---|---|---|---|")
        for p in pts:
            ms = "n/a" if p["ms_ssim"] is None else f"{p['ms_ssim']:.4f}"
            print(f"| {p['setting']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {ms} "
                  f"| {p['enc_s']:.2f} | {p['dec_s']:.2f} |")


if __name__ == "__main__":
    main()
