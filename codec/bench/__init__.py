"""Benchmarks of ncodec against other codecs: `ncodec bench image`. Modules: codecs (the codecs
and their sweeps), metrics (PSNR, MS-SSIM, BD-rate), image (the sweep, resumable), executors
(worker processes or Ray), machine (where it ran), report (Markdown and plots).

SCHEMA of the result file DIR/image_<dataset>.json (version 1), rewritten atomically after
every image so an interrupted run keeps what it finished:

    schema      1
    kind        "image"
    dataset     {"name": folder name, "path": absolute folder path}
    images      image names (paths relative to the dataset folder) of the last sweep
    anchor      codec the BD-rates are measured against
    codecs      {codec: [settings swept]}; settings are quality (ncodec 1..8, jpeg/webp/avif 0..100,
                compressai 1..8) or butteraugli distance (jxl)
    machine     {platform, python, cpu_model, cpu_count, torch, numpy, pillow, imagecodecs,
                 pytorch_msssim, compressai (versions, null when absent), ncodec (version),
                 ncodec_commit (git HEAD of the source tree, null outside a checkout),
                 ncodec_dirty (tracked files differ from that commit), models: [{id, sha256}]
                 of the ncodec model the ncodec rows were made with}
    summary     {codec: [{setting, images, bpp, psnr, ms_ssim, ms_ssim_images, enc_s, dec_s}]}:
                means over `images` (ms_ssim over the ms_ssim_images images it is defined for)
    bd_rate     {codec: {"psnr": BD, "ms_ssim": BD}} for every codec but the anchor, where BD is
                {"value_pct": %, "overlap_db": [lo, hi]} or null (no overlap, < 4 points);
                negative = fewer bits than the anchor at equal quality
    rows        [{image, codec, setting, width, height, bytes, bpp, psnr, ms_ssim, enc_s, dec_s}]:
                one per image, codec and setting, including rows of earlier runs into the same file

bpp = 8 * bytes / (width * height); psnr is PSNR-RGB over all samples with peak 255 (MSE floored at
1e-10); ms_ssim is MS-SSIM on RGB with data range 255, null for images under 161 px on a side;
enc_s/dec_s are wall-clock seconds of one encode/decode in a worker with one torch thread.
"""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark that cannot run as asked (bad codec, dataset, result file, missing package)."""
