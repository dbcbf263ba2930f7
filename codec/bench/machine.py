"""Where a benchmark ran: platform, CPU, library versions, ncodec source commit and models."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when ncodec runs from one


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout if run.returncode == 0 else None


def source_commit() -> tuple[str | None, bool | None]:
    """(git HEAD, whether tracked files differ from it) of the ncodec checkout; (None, None) when
    ncodec is not running from its own git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != SOURCE_ROOT:
        return None, None
    head, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    return (head.strip() if head else None), (None if status is None else bool(status.strip()))


IMAGE_PACKAGES = ("torch", "numpy", "pillow", "imagecodecs", "pytorch-msssim", "compressai")
AUDIO_PACKAGES = ("torch", "numpy", "av", "soundfile", "pesq", "pystoi")


def ffmpeg_version() -> str | None:
    """The FFmpeg that PyAV is built with (libopus, libmp3lame, libswresample come with it)."""
    try:
        import av
    except ImportError:
        return None
    return str(getattr(av, "ffmpeg_version_info", None) or "") or None


def machine_info(models: list[dict], packages: tuple[str, ...] = IMAGE_PACKAGES,
                 extra: dict | None = None) -> dict:
    """The `machine` record of a result file: platform, CPU, the versions of `packages` (null when
    absent; "-" becomes "_" in the key), `extra` fields, ncodec's version and source commit, and
    `models`, the ncodec models used ({id, sha256})."""
    import ncodec

    commit, dirty = source_commit()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            **{name.replace("-", "_"): _version(name) for name in packages}, **(extra or {}),
            "ncodec": ncodec.__version__, "ncodec_commit": commit, "ncodec_dirty": dirty, "models": models}
