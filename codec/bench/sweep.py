"""What the image, audio and video sweeps share: the codecs and settings to sweep, codecs that
cannot run here, resuming from a result file, timed round trips in the workers, per-setting
summaries, BD-rates, and the result file rewritten as jobs finish."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np

from . import BenchError
from .codecs import Setting
from .metrics import bd_rate
from .results import Progress, write_json

RowKey = tuple[str, str, float]  # item (image, file or clip), codec, setting
Todo = tuple[tuple[str, tuple[Setting, ...]], ...]  # (codec, settings) still to run on one item
Source, Coded, Decoded = TypeVar("Source"), TypeVar("Coded"), TypeVar("Decoded")
_warmed: set[tuple] = set()  # warm-up keys already run in this process


def dataset_files(dataset: str | Path, find: Callable[[Path], list[Path]], limit: int | None,
                  what: str) -> tuple[Path, list[Path]]:
    """(the resolved folder, the first `limit` files `find` lists in it); BenchError when the folder
    is missing or holds none (`what` names them)."""
    root = Path(dataset).resolve()
    if not root.is_dir():
        raise BenchError(f"dataset folder not found: {dataset}")
    files = find(root)[:limit]
    if not files:
        raise BenchError(f"no {what} in {dataset}")
    return root, files


def plan_sweep(codecs: list[str], anchor: str, settings: dict[str, list[Setting]],
               check_codec: Callable[[str], None], defaults: Callable[[str], list[Setting]],
               check_values: Callable[[str, list[Setting]], None] | None = None,
               flag: str = "--settings") -> dict[str, list[Setting]]:
    """{codec: settings to sweep}: those `settings` gives, else the codec's defaults, duplicates
    dropped. BenchError for no codecs, an unknown one (check_codec), an anchor not among them, or
    `flag` values for a codec not among them or out of its range (check_values)."""
    if not codecs:
        raise BenchError("no codecs given")
    for name in codecs:
        check_codec(name)
    if anchor not in codecs:
        raise BenchError(f"anchor {anchor!r} is not among the codecs ({', '.join(codecs)}); "
                         "add it to --codecs or pick another --anchor")
    for name, values in settings.items():
        if name not in codecs:
            raise BenchError(f"{flag} for {name!r}, which is not among the codecs")
        if check_values is not None:
            check_values(name, values)
    return {name: list(dict.fromkeys(settings.get(name) or defaults(name))) for name in codecs}


def drop_unavailable(sweep: dict[str, list[Setting]], unavailable: Callable[[str], str | None],
                     anchor: str, label: str, log: TextIO) -> dict[str, str]:
    """Take the codecs that cannot run here (unavailable(codec): why, or None) out of `sweep`, with
    a note each on `log`; returns {codec: why}. BenchError when none is left."""
    codecs = list(sweep)
    skipped = {}
    for name in codecs:
        reason = unavailable(name)
        if reason:
            skipped[name] = reason
            del sweep[name]
            print(f"{label}: skipping {name}: {reason}", file=log)
    if not sweep:
        raise BenchError(f"none of the codecs can run here ({', '.join(codecs)})")
    if anchor in skipped:
        print(f"{label}: the anchor {anchor} is skipped: no BD-rates", file=log)
    return skipped


def check_models(out: Path, rows: list[dict], before: list[dict], now: list[dict]) -> None:
    """BenchError when `out` holds ncodec rows of other models (`before`) than this run's (`now`)."""
    if now and before != now and any(r["codec"].startswith("ncodec") for r in rows):
        raise BenchError(f"{out} holds ncodec rows of model {before}, this run uses {now}; "
                         "pick another --out")


def check_unchanged(out: Path, made_with: dict[str, tuple[object, object]]) -> None:
    """BenchError when `out` was made with another value of an option ({name: (before, now)})."""
    for key, (before, now) in made_with.items():
        if before != now:
            raise BenchError(f"{out} was made with {key} {before}, this run has {now}; pick another --out")


def todo(item: str, sweep: dict[str, list[Setting]], done: set[RowKey]) -> Todo:
    """(codec, settings) of `sweep` that `item` has no row of yet, codecs with none left out."""
    pending = ((codec, tuple(s for s in settings if (item, codec, float(s)) not in done))
               for codec, settings in sweep.items())
    return tuple((codec, settings) for codec, settings in pending if settings)


def note_resume(out: Path, wanted: int, pending: int, label: str, log: TextIO) -> None:
    """Say on `log` how many of the `wanted` rows `out` already holds, when it holds any."""
    if pending < wanted:
        print(f"{label}: resuming {out}: {wanted - pending} of {wanted} rows already there, "
              "skipping them", file=log)


def _timed(encode: Callable[[Source, Setting], Coded], decode: Callable[[Coded], Decoded], source: Source,
           setting: Setting) -> tuple[Coded, Decoded, float, float]:
    t0 = time.perf_counter()
    coded = encode(source, setting)
    t1 = time.perf_counter()
    decoded = decode(coded)
    return coded, decoded, t1 - t0, time.perf_counter() - t1


def round_trip(encode: Callable[[Source, Setting], Coded], decode: Callable[[Coded], Decoded],
               source: Source, setting: Setting, warm_up: Source, key: tuple,
               what: str) -> tuple[Coded, Decoded, float, float]:
    """(coded, decoded, encode seconds, decode seconds) of `source` at `setting`. The first use of
    `key` (kind, codec, setting) in a process is preceded by an untimed round trip of `warm_up`, so
    model loading and one-time set-up stay out of the timings. Errors but BenchError become a
    BenchError that starts with `what`."""
    try:
        if key not in _warmed:
            _timed(encode, decode, warm_up, setting)
            _warmed.add(key)
        return _timed(encode, decode, source, setting)
    except BenchError:
        raise
    except Exception as err:
        raise BenchError(f"{what}: {type(err).__name__}: {err}") from None


def mean(rows: list[dict], key: str) -> float | None:
    """The mean of `key` over the rows that have it (not None); None when none has."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def counted(rows: list[dict], key: str) -> int:
    """How many rows have `key` (not None)."""
    return sum(r.get(key) is not None for r in rows)


def per_setting(rows: list[dict], items: list[str], codecs: dict[str, list[Setting]],
                key: Callable[[dict], RowKey], point: Callable[[Setting, list[dict]], dict]
                ) -> dict[str, list[dict]]:
    """{codec: [point(setting, rows of that codec and setting)]} over the rows of `items`, a
    setting without rows left out."""
    index = {key(r): r for r in rows}
    summary: dict[str, list[dict]] = {}
    for name, settings in codecs.items():
        summary[name] = []
        for setting in settings:
            selected = [index[k] for item in items if (k := (item, name, float(setting))) in index]
            if selected:
                summary[name].append(point(setting, selected))
    return summary


def bd_rates(summary: dict[str, list[dict]], anchor: str, metrics: tuple[str, ...],
             rate: str = "bpp") -> dict:
    """{codec: {metric: BD}} on `rate` against the anchor; {} when the anchor has no points."""
    if not summary.get(anchor):
        return {}
    return {name: {m: bd_rate(summary[anchor], points, m, rate=rate) for m in metrics}
            for name, points in summary.items() if name != anchor}


def fill(out: Path, doc: dict, rows: list[dict], key: Callable[[dict], RowKey],
         analyse: Callable[[list[dict]], dict], progress: Progress,
         run: Callable[[], Iterable[list[dict]]]) -> None:
    """Write `doc` to `out` with analyse(rows) (summary, bd_rate) and the rows sorted by `key`:
    after each job's rows from run() arrive (progress.total jobs), or once when there are none."""
    def save() -> None:
        rows.sort(key=key)
        doc.update(**analyse(rows), rows=rows)
        write_json(out, doc)

    if not progress.total:
        save()
        return
    for done_jobs, new_rows in enumerate(run(), 1):
        rows.extend(new_rows)
        save()
        progress.update(done_jobs)
