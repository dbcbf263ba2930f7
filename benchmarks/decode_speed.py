"""Decode time per image: ncodec's exact integer decoder vs CompressAI's bmshj2018-hyperprior.

    python benchmarks/decode_speed.py [--image kodim01.png] [--threads 2]

CompressAI runs in its own environment (--compressai-python) with an untrained
bmshj2018-hyperprior of quality 3 (N=128, M=192; weights do not change its speed) doing
compress + decompress on the same image; ncodec decodes a file of its default model at
quality 4. Median of 3 runs each, both with the same thread count, in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

CAI_SCRIPT = r"""
import json, sys, time, numpy as np, torch
from PIL import Image
from compressai.zoo import bmshj2018_hyperprior
torch.set_num_threads(int(sys.argv[2]))
img = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
net = bmshj2018_hyperprior(quality=3, pretrained=False).eval()
net.update(force=True)
enc, dec = [], []
with torch.no_grad():
    for _ in range(3):
        t = time.perf_counter(); out = net.compress(x); enc.append(time.perf_counter() - t)
        t = time.perf_counter(); net.decompress(out["strings"], out["shape"])
        dec.append(time.perf_counter() - t)
print(json.dumps({"enc_s": sorted(enc)[1], "dec_s": sorted(dec)[1],
                  "params": sum(p.numel() for p in net.parameters())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default="../shared/datasets/images/kodak/kodim01.png")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compressai-python", default="/work/venv-cai/bin/python")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode_speed.json"))
    args = ap.parse_args()
    import torch
    from ncodec.image_codec import decode_image, encode_image
    from ncodec.zoo import find
    from PIL import Image

    torch.set_num_threads(args.threads)
    image = Image.open(args.image).convert("RGB")
    enc, dec = [], []
    for _ in range(3):
        t = time.perf_counter()
        data = encode_image(image, 4)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode_image(data)
        dec.append(time.perf_counter() - t)
    model = find(None, "image")
    res = {"image": args.image, "size": image.size, "threads": args.threads,
           "ncodec": {"model": model.model_id, "enc_s": sorted(enc)[1], "dec_s": sorted(dec)[1]}}
    cai = subprocess.run([args.compressai_python, "-c", CAI_SCRIPT, args.image, str(args.threads)],
                         capture_output=True, text=True)
    res["compressai_bmshj2018_hyperprior_q3"] = (
        json.loads(cai.stdout) if cai.returncode == 0 else {"unavailable": cai.stderr.strip()[-300:]})
    print(json.dumps(res, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
