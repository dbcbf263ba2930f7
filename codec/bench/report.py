"""Markdown summary and rate-distortion plots (PNG and SVG) of an image or audio benchmark result."""

from __future__ import annotations

import json
import math
import sys
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


def markdown(doc: dict, plots: list[str] | None = None) -> str:
    """The summary of a result document: BD-rate table, per-codec tables, links to `plots`."""
    anchor, n = doc["anchor"], len(doc["images"])
    lines = [f"# Image rate-distortion: {doc['dataset']['name']}", "",
             f"{_count(n, 'image')}, anchor {anchor}; {_describe_machine(doc['machine'])}.",
             "Values are means over the images; MS-SSIM over those at least 161 px on each side.", "",
             f"## BD-rate against {anchor}", "",
             f"Negative: fewer bits than {anchor} at the same quality, over the quality range both "
             "curves cover (overlap; MS-SSIM in dB = -10 log10(1 - MS-SSIM)). n/a: no overlap, or fewer "
             "than 4 points.", "",
             "| codec | BD-rate PSNR-RGB | overlap (dB) | BD-rate MS-SSIM | overlap (dB) |",
             "|---|---:|---|---:|---|"]
    for name, bd in doc["bd_rate"].items():
        lines.append(f"| {name} | {' | '.join(_bd(bd['psnr']))} | {' | '.join(_bd(bd['ms_ssim']))} |")
    for name, points in doc["summary"].items():
        lines += ["", f"## {name}", "", "| setting | bpp | PSNR-RGB | MS-SSIM | enc s | dec s |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {p['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {_num(p['ms_ssim'], '.4f')} "
                  f"| {p['enc_s']:.4f} | {p['dec_s']:.4f} |" for p in points]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


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
    bd_metrics = list(next(iter(doc["bd_rate"].values()), {}))
    lines += ["", f"## BD-rate against {anchor}", "",
              f"Negative: fewer bits than {anchor} at the same quality, over the quality range both curves "
              "cover (overlap). n/a: no overlap, or fewer than 4 points.", ""]
    if bd_metrics:
        lines += ["| codec | " + " | ".join(f"BD-rate {AUDIO_NAMES[m]} | overlap" for m in bd_metrics) + " |",
                  "|---|" + "---:|---|" * len(bd_metrics)]
        for name, bd in doc["bd_rate"].items():
            lines.append(f"| {name} | " + " | ".join(" | ".join(_bd(bd[m])) for m in bd_metrics) + " |")
    else:
        lines.append(f"No BD-rates: {anchor} did not run.")
    for name, points in doc["summary"].items():
        lines += ["", f"## {name}", "",
                  "| setting | kbps | payload kbps | mel distance | SI-SDR dB | PESQ | STOI | enc RTF "
                  "| dec RTF |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {p['setting']} | {p['kbps']:.2f} | {p['payload_kbps']:.2f} | {p['mel']:.3f} "
                  f"| {p['si_sdr']:.2f} | {_num(p['pesq'], '.2f')} | {_num(p['stoi'], '.3f')} "
                  f"| {p['enc_rtf']:.1f} | {p['dec_rtf']:.1f} |" for p in points]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(result: Path, log: TextIO | None = None) -> list[Path]:
    """Plots (when matplotlib is installed) and the Markdown summary beside an image or audio
    result file; returns the paths written. The note about missing matplotlib goes to `log`
    (default stderr)."""
    doc = json.loads(result.read_text())
    kind = doc.get("kind", "image")
    draw, describe, metrics = ((plot_audio, markdown_audio, AUDIO_AXIS_LABELS) if kind == "audio"
                               else (plot, markdown, AXIS_LABELS))
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
