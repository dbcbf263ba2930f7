"""What encoder-side latent refinement (`ncodec encode --refine STEPS`) buys on the RD curve.

Encodes each image at qualities 1..8 with 0 and with each STEPS refinement steps (same shipped
model, same decoder), decodes the real files, and reports mean bpp and PSNR-RGB per quality, the
BD-rate of every refined curve against the unrefined one, and encode seconds. Writes JSON to
benchmarks/results/refine_rd_<dataset>.json (default).

    python benchmarks/refine_rd.py --dataset ../shared/datasets/images/kodak --limit 8 --steps 10 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ncodec.bench.machine import cpu_model, source_commit
from ncodec.bench.metrics import bd_rate, psnr
from ncodec.image_codec import decode_image, encode_image
from ncodec.media import image_files
from ncodec.zoo import find
from PIL import Image

QUALITIES = [1, 2, 3, 4, 5, 6, 7, 8]


def measure(images: list[Path], steps: int) -> list[dict]:
    """Mean bpp, PSNR-RGB and encode seconds per quality at `steps` refinement steps."""
    points = []
    for q in QUALITIES:
        bpp, db, seconds = [], [], []
        for path in images:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            t = time.perf_counter()
            data = encode_image(rgb, q, refine=steps)
            seconds.append(time.perf_counter() - t)
            out = np.asarray(decode_image(data).convert("RGB"))
            bpp.append(8 * len(data) / (rgb.width * rgb.height))
            db.append(psnr(np.asarray(rgb), out))
        points.append({"quality": q, "bpp": round(float(np.mean(bpp)), 4),
                       "psnr": round(float(np.mean(db)), 3), "encode_s": round(float(np.mean(seconds)), 3)})
        print(f"steps {steps:3} q{q}: {points[-1]}", flush=True)
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--limit", type=int, help="only the first N images (name order)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 30])
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    images = image_files(args.dataset)[: args.limit]
    model = find(None, "image")
    curves = {0: measure(images, 0)}
    for steps in args.steps:
        curves[steps] = measure(images, steps)
    commit, modified = source_commit()
    result = {
        "dataset": str(args.dataset), "images": [i.name for i in images],
        "model": {"id": model.model_id, "sha256": model.sha256},
        "machine": {"cpu": cpu_model(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "git_commit": commit, "modified": modified},
        "curves": {str(k): v for k, v in curves.items()},
        "bd_rate_vs_no_refine": {str(k): bd_rate(curves[0], curves[k]) for k in args.steps},
    }
    out = args.out or Path(__file__).parent / "results" / f"refine_rd_{args.dataset.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["bd_rate_vs_no_refine"]), f"\nwrote {out}")


if __name__ == "__main__":
    main()
