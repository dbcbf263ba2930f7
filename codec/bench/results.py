"""Result files shared by every benchmark: atomic rewrite, loading one to resume from, progress."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TextIO

from ..atomic import atomic_output
from . import BenchError

SCHEMA = 1


def write_json(path: Path, doc: dict) -> None:
    """Replace `path` atomically (temp file in the same folder, then os.replace)."""
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=1)


def load_previous(path: Path, kind: str) -> dict | None:
    """An earlier `kind` ("image", "audio") result file at `path` to resume from, or None when
    there is none; BenchError when the file is something else."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"cannot resume from {path} ({err}); delete it or pick another --out") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("kind") != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise BenchError(f"{path} is not {article} {kind} benchmark result of schema {SCHEMA}; "
                         "delete it or pick another --out")
    return doc


class Progress:
    """'LABEL: done/total UNIT, elapsed, ETA' on a stream: one updating line on a terminal, else a
    line per job."""

    def __init__(self, total: int, stream: TextIO, label: str = "bench image", unit: str = "images"):
        self.total, self.stream, self.start = total, stream, time.monotonic()
        self.label, self.unit = label, unit

    @staticmethod
    def _clock(seconds: float) -> str:
        m, s = divmod(round(seconds), 60)
        return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"

    def update(self, done: int) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done)
        line = (f"{self.label}: {done}/{self.total} {self.unit}, elapsed {self._clock(elapsed)}, "
                f"ETA {self._clock(eta)}")
        tty = self.stream.isatty()
        print(f"\r{line}" if tty else line, end="\n" if done == self.total or not tty else "",
              file=self.stream, flush=True)
