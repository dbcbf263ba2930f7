"""What the bench tests share: `ncodec bench KIND` run in this process, result files, a run_jobs
stand-in, and the checks every kind of sweep passes."""

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from ncodec.bench import report
from ncodec.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_bench(kind: str, *args) -> tuple[int, str]:
    """Run `ncodec bench KIND ARGS`; (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["bench", kind, *map(str, args)])
    return code, err.getvalue()


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def swept_result(kind: str, dataset: Path, out: Path, args: list) -> tuple[Path, str]:
    """(result file, stderr) of `ncodec bench KIND ARGS` sweeping `dataset` into `out`; it must succeed."""
    code, err = run_bench(kind, *args)
    assert code == 0, err
    return out / f"{kind}_{dataset.name}.json", err


def run_here(submitted: list) -> Callable:
    """A run_jobs stand-in that runs the jobs in this process (no worker start-up) and records them
    in `submitted`."""
    def run(fn, jobs, *args):
        import torch

        submitted.extend(jobs)
        threads = torch.get_num_threads()
        try:
            return [fn(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)  # a job may set one thread; keep this process as it was

    return run


def copy_result(result: Path, folder: Path) -> Path:
    """A copy of a result file in a new `folder`, to rerun into."""
    folder.mkdir()
    return Path(shutil.copy(result, folder))


def check_rerun_computes_nothing(module: ModuleType, result: Path, args: list, rows: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`ncodec bench KIND ARGS` into a complete `result` (KIND: `module`, ncodec.bench.KIND) runs no
    job, says it skips all `rows`, and leaves the rows as they were (timings included)."""
    before = load(result)["rows"]

    def no_work(*args, **kwargs):
        raise AssertionError("a complete result was recomputed")

    monkeypatch.setattr(module, "run_jobs", no_work)
    code, err = run_bench(module.__name__.rpartition(".")[2], *args)
    assert code == 0, err
    assert f"{rows} of {rows} rows already there, skipping them" in err
    assert load(result)["rows"] == before


def check_plots(result: Path, metrics: tuple[str, ...]) -> None:
    """A PNG and an SVG plot of each metric beside `result`, the PNG linked from its Markdown."""
    md = result.with_suffix(".md").read_text()
    for metric in metrics:
        png = result.with_name(f"{result.stem}_{metric}.png")
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert "<svg" in png.with_suffix(".svg").read_text()
        assert f"]({png.name})" in md


def report_without_matplotlib(result: Path, folder: Path,
                              monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """(a copy of `result` in `folder`, the note logged) after writing its report as if matplotlib were
    missing, which must write the Markdown only."""
    copy = Path(shutil.copy(result, folder))
    monkeypatch.setattr(report, "find_spec", lambda name: None)
    log = io.StringIO()
    assert report.write_report(copy, log) == [copy.with_suffix(".md")]
    return copy, log.getvalue()


def check_bad_arguments(kind: str, dataset: Path, folder: Path, args: list, message: str) -> None:
    """`ncodec bench KIND --dataset DATASET --out FOLDER/out ARGS` exits 1 with `message` on one
    line (after any notes of skipped codecs) and writes nothing."""
    out = folder / "out"
    code, err = run_bench(kind, "--dataset", dataset, "--out", out, *args)
    assert code == 1 and message in err and err.endswith("\n")
    assert err.count("\n") == 1 + err.count(f"bench {kind}: skipping")
    assert not out.exists()


def check_other_kind_is_kept(result: Path, other: str, args: list, message: str) -> None:
    """`ncodec bench KIND ARGS` into `result` (KIND_*.json) holding a result of the `other` kind exits
    1 with `message` and leaves the file as it was."""
    text = json.dumps({"schema": 1, "kind": other})
    result.write_text(text)
    code, err = run_bench(result.name.partition("_")[0], *args)
    assert code == 1 and message in err
    assert result.read_text() == text
