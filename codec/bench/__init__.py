"""Benchmarks of ncodec against other codecs: `ncodec bench image`, `ncodec bench audio` and
`ncodec bench video`. Modules: codecs / audio_codecs / video_codecs (the codecs and their sweeps),
metrics (PSNR, PSNR-YUV, MS-SSIM, BD-rate), audio_metrics (mel distance, SI-SDR, PESQ, STOI),
image / audio / video (the sweeps, resumable; the video schema is in video.py), sweep (what
the sweeps share: codecs to run, resume, timed round trips, summaries), results (result files,
progress), executors (worker processes or Ray), machine (where it ran), report
(Markdown and plots).

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

SCHEMA of the result file DIR/audio_<dataset>.json (version 1), one per --dataset, rewritten the
same way after every file:

    schema      1
    kind        "audio"
    dataset     {"name", "path", "speech": PESQ and STOI are measured, "speech_from": "flag" (--speech
                / --no-speech) or "folder name" (speech when the name contains "speech", any case)}
    files       audio file names (relative to the dataset folder) of the last sweep
    max_seconds only the first seconds of each file were used (null: whole files)
    anchor      codec the BD-rates are measured against
    codecs      {codec: [settings swept]} of the codecs that ran: kbps of all channels for ncodec
                (stereo: half the stages each for mid and side) and target kbps for opus, mp3
    skipped     {codec: reason} for codecs asked for that cannot run here (no ncodec audio model,
                no libopus / libmp3lame in PyAV)
    metrics_skipped {"pesq"|"stoi": reason}: "not a speech dataset", or the package is missing
    bytes_counted   {codec: what `bytes` holds}: the .ncz file, the Ogg file, the MP3 stream
    definitions {field: how it is computed} (kbps, payload_kbps, mel, si_sdr, pesq, stoi, rtf, ...)
    machine     as for images, with versions of torch, numpy, av, soundfile, pesq, pystoi and
                ffmpeg (the FFmpeg inside PyAV), and the ncodec audio model [{id, sha256}]
    summary     {codec: [{setting, files, seconds, kbps, payload_kbps, mel, si_sdr, pesq, pesq_files,
                 stoi, stoi_files, enc_rtf, dec_rtf}]}: kbps and metrics are means over the files
                (pesq/stoi over the pesq_files/stoi_files that have one); seconds is the total audio;
                enc_rtf/dec_rtf = total audio seconds / total encode (decode) seconds
    bd_rate     {codec: {"mel": BD, "pesq": BD (speech only)}} on kbps against the anchor, BD being
                {"value_pct", "overlap": [lo, hi] in the metric's units} or null; {} when the anchor
                did not run
    rows        [{file, codec, setting, sample_rate, channels, seconds, bytes, payload_bytes, kbps,
                 payload_kbps, mel, si_sdr, pesq, pesq_mode ("wb"|"nb"), stoi, length_diff, enc_s,
                 dec_s, enc_rtf, dec_rtf}]: one per file, codec and setting

kbps = 8 * bytes / seconds / 1000 with bytes the whole encoded file (payload_kbps: the codec's
packets only); decoded audio is aligned by the container's delay fields and trimmed or zero-padded
to the original length (length_diff: decoded minus original samples, before that); metric
definitions: ncodec.bench.audio_metrics; enc_rtf = seconds of audio / encode seconds (higher is
faster, above 1 faster than real time), the same for dec_rtf; encode and decode times include
any rate conversion a codec needs (e.g. 44.1 kHz <-> 48 kHz for Opus).
"""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark that cannot run as asked (bad codec, dataset, result file, missing package)."""
