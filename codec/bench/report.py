"""Markdown summary and rate-distortion plots (PNG and SVG) of an image or audio benchmark result."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TextIO

from .metrics import ms_ssim_db

AXIS_LABELS = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)"}
AUDIO_AXIS_LABELS = {"mel": "mel distance (lower is better)", "si_sdr": "SI-SDR (dB)",
                     "pesq": "PESQ (MOS-LQO)", "stoi": "STOI"}
AUDIO_NAMES = {"mel": "mel distance", "si_sdr": "SI-SDR", "pesq": "PESQ", "stoi": "STOI"}


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _bd(bd: dict | None) -> tuple[str, str]:
    """(value, overlap) cells of one BD-rate."""
    if bd is None:
        return "n/a", "n/a"
    lo, hi = bd["overlap_db"] if "overlap_db" in bd else bd["overlap"]
    return f"{bd['value_pct']:+.1f}%", f"{lo:.2f}-{hi:.2f}" if "overlap_db" in bd else f"{lo:.3g}-{hi:.3g}"


def _describe_machine(m: dict) -> str:
    parts = [f"{m.get('cpu_model') or 'unknown CPU'} ({m.get('cpu_count')} CPUs)", f"torch {m.get('torch')}"]
    commit = m.get("ncodec_commit")
    source = f" at {commit[:12]}{' (modified)' if m.get('ncodec_dirty') else ''}" if commit else ""
    parts.append(f"ncodec {m.get('ncodec')}{source}")
    parts += [f"model {x['id']} (sha256 {x['sha256'][:16]})" for x in m.get("models", [])]
    return ", ".join(parts)


def _row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |"


def _bd_section(doc: dict, overlap: str, metrics: dict[str, str], unit: str = "") -> list[str]:
    """The BD-rate heading, what the values mean (`overlap`: how the overlap is measured) and a
    column pair per metric ({key: name}, overlap in `unit`). A result that can skip codecs (audio,
    video) says instead that the anchor did not run when there are no BD-rates."""
    anchor = doc["anchor"]
    lines = ["", f"## BD-rate against {anchor}", "",
             f"Negative: fewer bits than {anchor} at the same quality, over the quality range both curves "
             f"cover ({overlap}). n/a: no overlap, or fewer than 4 points.", ""]
    if not doc["bd_rate"] and "skipped" in doc:
        return [*lines, f"No BD-rates: {anchor} did not run."]
    lines += [_row(["codec", *(f"BD-rate {name} | overlap{unit}" for name in metrics.values())]),
              "|---|" + "---:|---|" * len(metrics)]
    return lines + [_row([name, *(" | ".join(_bd(bd[m])) for m in metrics)])
                    for name, bd in doc["bd_rate"].items()]


def _codec_tables(doc: dict, columns: list[str], cells: Callable[[dict], list[str]]) -> list[str]:
    """A section per codec: a table with a row of `cells` per summary point."""
    lines = []
    for name, points in doc["summary"].items():
        lines += ["", f"## {name}", "", _row(columns), "|" + "---:|" * len(columns)]
        lines += [_row(cells(p)) for p in points]
    return lines


def _document(lines: list[str], plots: list[str] | None) -> str:
    """The Markdown of `lines`, then links to the `plots`."""
    if plots:
        lines = [*lines, "", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots)]
    return "\n".join(lines) + "\n"


def markdown(doc: dict, plots: list[str] | None = None) -> str:
    """The summary of a result document: BD-rate table, per-codec tables, links to `plots`."""
    anchor, n = doc["anchor"], len(doc["images"])
    lines = [f"# Image rate-distortion: {doc['dataset']['name']}", "",
             f"{_count(n, 'image')}, anchor {anchor}; {_describe_machine(doc['machine'])}.",
             "Values are means over the images; MS-SSIM over those at least 161 px on each side."]
    lines += _bd_section(doc, "overlap; MS-SSIM in dB = -10 log10(1 - MS-SSIM)",
                         {"psnr": "PSNR-RGB", "ms_ssim": "MS-SSIM"}, " (dB)")
    lines += _codec_tables(doc, ["setting", "bpp", "PSNR-RGB", "MS-SSIM", "enc s", "dec s"], _image_cells)
    return _document(lines, plots)


def _image_cells(p: dict) -> list[str]:
    return [str(p["setting"]), f"{p['bpp']:.4f}", f"{p['psnr']:.2f}", _num(p["ms_ssim"], ".4f"),
            f"{p['enc_s']:.4f}", f"{p['dec_s']:.4f}"]


def _draw(curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
          stem: Path, log_x: bool = False) -> list[Path]:
    """One line per codec, saved as STEM.png and STEM.svg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for name, xy in curves.items():
        if xy:
            ax.plot(*zip(*xy, strict=True), marker="o", markersize=3, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_x:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    written = []
    for ext in ("png", "svg"):
        path = stem.with_name(f"{stem.name}.{ext}")
        fig.savefig(path, dpi=150, metadata={"Date": None} if ext == "svg" else None)
        written.append(path)
    return written


def plot(doc: dict, prefix: Path) -> list[Path]:
    """bpp against PSNR and against MS-SSIM (dB), a line per codec, as PREFIX_<metric>.png/.svg."""
    written = []
    for metric, label in AXIS_LABELS.items():
        curves = {}
        for name, points in doc["summary"].items():
            xy = sorted((p["bpp"], p[metric] if metric == "psnr" else ms_ssim_db(p[metric]))
                        for p in points if p[metric] is not None)
            curves[name] = [(x, y) for x, y in xy if math.isfinite(y)]
        if any(curves.values()):
            written += _draw(curves, "bits per pixel", label,
                             f"{doc['dataset']['name']}, {_count(len(doc['images']), 'image')}",
                             prefix.with_name(f"{prefix.name}_{metric}"))
    return written


def plot_audio(doc: dict, prefix: Path) -> list[Path]:
    """kbps (log scale) against each measured metric, a line per codec, as PREFIX_<metric>.png/.svg."""
    written = []
    for metric, label in AUDIO_AXIS_LABELS.items():
        curves = {name: sorted((p["kbps"], p[metric]) for p in points if p[metric] is not None)
                  for name, points in doc["summary"].items()}
        if any(curves.values()):
            written += _draw(curves, "kbps (container included)", label,
                             f"{doc['dataset']['name']}, {_count(len(doc['files']), 'file')}",
                             prefix.with_name(f"{prefix.name}_{metric}"), log_x=True)
    return written


def markdown_audio(doc: dict, plots: list[str] | None = None) -> str:
    """The summary of an audio result: BD-rate table, per-codec tables, links to `plots`."""
    anchor, ds = doc["anchor"], doc["dataset"]
    seconds = sum({r["file"]: r["seconds"] for r in doc["rows"]}.values())
    cut = f", the first {doc['max_seconds']:g} s of each" if doc.get("max_seconds") else ""
    kind = "speech" if ds["speech"] else "not speech"
    lines = [f"# Audio rate-distortion: {ds['name']}", "",
             f"{_count(len(doc['files']), 'file')} ({seconds:.1f} s{cut}), {kind} "
             f"(from the {ds['speech_from']}), anchor {anchor}; {_describe_machine(doc['machine'])}.", "",
             "kbps = 8 * bytes / duration, bytes of "
             + "; ".join(f"{c}: {what}" for c, what in doc["bytes_counted"].items())
             + ". Values are means over the files; RTF = seconds of audio per second of compute on one "
               "thread (above 1: faster than real time), over all files.", ""]
    for name, reason in doc["skipped"].items():
        lines.append(f"- {name} skipped: {reason}")
    for name, reason in doc["metrics_skipped"].items():
        lines.append(f"- no {AUDIO_NAMES[name]}: {reason}")
    bd_metrics = next(iter(doc["bd_rate"].values()), {})
    lines += _bd_section(doc, "overlap", {m: AUDIO_NAMES[m] for m in bd_metrics})
    lines += _codec_tables(doc, ["setting", "kbps", "payload kbps", "mel distance", "SI-SDR dB", "PESQ",
                                 "STOI", "enc RTF", "dec RTF"], _audio_cells)
    return _document(lines, plots)


def _audio_cells(p: dict) -> list[str]:
    return [str(p["setting"]), f"{p['kbps']:.2f}", f"{p['payload_kbps']:.2f}", f"{p['mel']:.3f}",
            f"{p['si_sdr']:.2f}", _num(p["pesq"], ".2f"), _num(p["stoi"], ".3f"), f"{p['enc_rtf']:.1f}",
            f"{p['dec_rtf']:.1f}"]


VIDEO_AXIS_LABELS = {"psnr_rgb": "PSNR-RGB (dB)", "psnr_yuv": "PSNR-YUV (dB), (6 Y + U + V) / 8, BT.709"}


def plot_video(doc: dict, prefix: Path) -> list[Path]:
    """bpp (log scale) against PSNR-RGB and PSNR-YUV, a line per codec, as PREFIX_<metric>.png/.svg."""
    written = []
    for metric, label in VIDEO_AXIS_LABELS.items():
        curves = {name: sorted((p["bpp"], p[metric]) for p in points)
                  for name, points in doc["summary"].items()}
        if any(curves.values()):
            frames = f", first {doc['frames']} frames" if doc.get("frames") else ""
            written += _draw(curves, "bits per pixel", label,
                             f"{doc['dataset']['name']}, {_count(len(doc['clips']), 'clip')}{frames}",
                             prefix.with_name(f"{prefix.name}_{metric}"), log_x=True)
    return written


def markdown_video(doc: dict, plots: list[str] | None = None) -> str:
    """The summary of a video result: BD-rate table, per-codec tables, links to `plots`."""
    anchor, n = doc["anchor"], len(doc["clips"])
    frames = f"the first {doc['frames']} frames of each" if doc.get("frames") else "whole clips"
    gop = (f"an intra frame every {doc['gop']} frames in every codec" if doc.get("gop")
           else "each codec's own intra period (ncodec: 32 frames; the anchors: their encoders' defaults)")
    lines = [f"# Video rate-distortion: {doc['dataset']['name']}", "",
             f"{_count(n, 'clip')} ({frames}), anchor {anchor}, {_count(doc['threads'], 'thread')} per "
             f"encoder and decoder, {gop}; {_describe_machine(doc['machine'])}.", "",
             "bpp = 8 * bytes / (width * height * frames). PSNR-RGB: per frame over the RGB samples; "
             "PSNR-YUV: (6 PSNR-Y + PSNR-U + PSNR-V) / 8 per frame, on BT.709 full-range Y'CbCr computed "
             "from the RGB frames (no subsampling). Values are means over the frames, then over the "
             "clips; fps = frames per second of encoder / decoder time over all clips.", ""]
    lines += [f"- {name}: {what}" for name, what in doc["described"].items()]
    lines += [f"- {name} skipped: {reason}" for name, reason in doc["skipped"].items()]
    lines += _bd_section(doc, "overlap, dB", {"psnr_rgb": "PSNR-RGB", "psnr_yuv": "PSNR-YUV"}, " (dB)")
    lines += _codec_tables(doc, ["CRF", "bpp", "PSNR-RGB", "PSNR-YUV", "PSNR-Y", "PSNR-U", "PSNR-V",
                                 "enc fps", "dec fps"], _video_cells)
    return _document(lines, plots)


def _video_cells(p: dict) -> list[str]:
    return [str(p["setting"]), f"{p['bpp']:.4f}",
            *(f"{p[k]:.2f}" for k in ("psnr_rgb", "psnr_yuv", "psnr_y", "psnr_u", "psnr_v")),
            f"{p['enc_fps']:.1f}", f"{p['dec_fps']:.1f}"]


def write_report(result: Path, log: TextIO | None = None) -> list[Path]:
    """Plots (when matplotlib is installed) and the Markdown summary beside an image, audio or
    video result file; returns the paths written. The note about missing matplotlib goes to `log`
    (default stderr)."""
    doc = json.loads(result.read_text())
    kind = doc.get("kind", "image")
    draw, describe, metrics = {"audio": (plot_audio, markdown_audio, AUDIO_AXIS_LABELS),
                               "video": (plot_video, markdown_video, VIDEO_AXIS_LABELS)
                               }.get(kind, (plot, markdown, AXIS_LABELS))
    if find_spec("matplotlib") is None:
        print(f"bench {kind}: matplotlib is not installed, no plots; pip install 'ncodec[plot]'",
              file=log or sys.stderr)
        plots = []
    else:
        plots = draw(doc, result.with_suffix(""))
    stale = {result.with_name(f"{result.stem}_{m}.{ext}") for m in metrics for ext in ("png", "svg")}
    for path in stale - set(plots):  # plots of an earlier run that this one did not redraw
        path.unlink(missing_ok=True)
    md = result.with_suffix(".md")
    md.write_text(describe(doc, [p.name for p in plots if p.suffix == ".png"]))
    return [md, *plots]
