"""Rate-distortion of ncodec against JPEG, WebP, AVIF and JPEG XL: now `ncodec bench image`
(package ncodec.bench, schema in its docstring). This wrapper passes its arguments on:

    python benchmarks/image_rd.py --dataset ../shared/datasets/images/kodak --workers 2 \
        --out benchmarks/results

--out is a folder: the run writes image_<dataset>.json, .md and RD plots into it, and a rerun
resumes. See `ncodec bench image --help` for the other options.
"""

import sys

from ncodec.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "image", *sys.argv[1:]]))
