"""`ncodec bench image`: result schema, rows, resume, report, BD-rate, errors, executors."""

import math
import sys
from functools import partial
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import (
    check_bad_arguments,
    check_other_kind_is_kept,
    check_plots,
    check_rerun_computes_nothing,
    copy_result,
    load,
    report_without_matplotlib,
    run_bench,
    run_here,
    swept_result,
)
from conftest import imported_after
from ncodec.bench import BenchError, image
from ncodec.bench.codecs import get_codec
from ncodec.bench.executors import run_ray
from ncodec.bench.metrics import bd_rate, ms_ssim, psnr
from PIL import Image

SAMPLE = Path(__file__).parent / "data" / "parrots.png"
JPEG = [10, 30, 50, 70, 90]
WEBP = [5, 25, 50, 75, 95]
SMALL = ["a.png", "b.png"]  # 96x80 crops; big.png is the whole 256x192 photo (MS-SSIM defined)
bench = partial(run_bench, "image")


def sweep_args(dataset: Path, out: Path, *extra, jpeg: list[int] = JPEG) -> list:
    return ["--dataset", dataset, "--codecs", "jpeg,webp", "--settings", "jpeg=" + ",".join(map(str, jpeg)),
            "--settings", "webp=" + ",".join(map(str, WEBP)), "--out", out, *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    with Image.open(SAMPLE) as im:
        photo = im.convert("RGB")
    photo.crop((0, 0, 96, 80)).save(folder / "a.png")
    photo.crop((120, 90, 216, 170)).save(folder / "b.png")
    photo.save(folder / "big.png")
    (folder / "LICENSE.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def swept(dataset, tmp_path_factory) -> tuple[Path, str]:
    """One jpeg+webp sweep over the three images with two worker processes: (result file, stderr)."""
    out = tmp_path_factory.mktemp("results")
    return swept_result("image", dataset, out, sweep_args(dataset, out, "--workers", 2))


def test_result_has_the_documented_schema(swept, dataset):
    doc = load(swept[0])
    assert {"schema", "kind", "dataset", "images", "anchor", "codecs", "machine", "summary", "bd_rate",
            "rows"} <= doc.keys()
    assert doc["schema"] == 1 and doc["kind"] == "image" and doc["anchor"] == "webp"
    assert doc["dataset"] == {"name": dataset.name, "path": str(dataset.resolve())}
    assert doc["images"] == ["a.png", "b.png", "big.png"]
    assert doc["codecs"] == {"jpeg": JPEG, "webp": WEBP}
    m = doc["machine"]
    for key in ("platform", "python", "cpu_model", "cpu_count", "torch", "numpy", "pillow", "imagecodecs",
                "ncodec", "ncodec_commit", "models"):
        assert key in m
    assert m["python"] == ".".join(map(str, sys.version_info[:3])) and m["models"] == []


def test_every_image_codec_and_setting_has_one_row(swept):
    doc = load(swept[0])
    keys = [(r["image"], r["codec"], r["setting"]) for r in doc["rows"]]
    expected = {(i, c, s) for i in doc["images"] for c, settings in doc["codecs"].items() for s in settings}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for r in doc["rows"]:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (r["width"] * r["height"]))
        assert r["enc_s"] > 0 and r["dec_s"] > 0 and 15 < r["psnr"] < 60
        assert (r["ms_ssim"] is None) == (r["image"] in SMALL)


def test_quality_rises_with_the_jpeg_setting(swept):
    doc = load(swept[0])
    for name in doc["images"]:
        rows = sorted((r for r in doc["rows"] if r["image"] == name and r["codec"] == "jpeg"),
                      key=lambda r: r["setting"])
        assert np.all(np.diff([r["psnr"] for r in rows]) > 0)
        assert np.all(np.diff([r["bytes"] for r in rows]) > 0)
    points = doc["summary"]["jpeg"]
    assert [p["setting"] for p in points] == JPEG and all(p["images"] == 3 for p in points)
    assert all(p["ms_ssim_images"] == 1 for p in points)
    assert np.all(np.diff([p["ms_ssim"] for p in points]) > 0)


def test_bd_rate_of_jpeg_against_webp_is_in_the_file(swept):
    bd = load(swept[0])["bd_rate"]
    assert set(bd) == {"jpeg"}
    lo, hi = bd["jpeg"]["psnr"]["overlap_db"]
    assert lo < hi and bd["jpeg"]["psnr"]["value_pct"] > 0  # JPEG needs more bits than WebP


def test_progress_and_markdown(swept):
    result, err = swept
    assert "bench image: 3/3 images" in err and "ETA" in err
    md = result.with_suffix(".md").read_text()
    assert "## BD-rate against webp" in md and "| jpeg | +" in md
    assert "## jpeg" in md and "| setting | bpp | PSNR-RGB | MS-SSIM | enc s | dec s |" in md
    assert md.count("\n| 50 |") == 2  # the jpeg and the webp rows of setting 50


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plots_are_written(swept):
    check_plots(swept[0], ("psnr", "ms_ssim"))


def test_without_matplotlib_the_report_says_how_to_get_plots(swept, tmp_path, monkeypatch):
    result, log = report_without_matplotlib(swept[0], tmp_path, monkeypatch)
    assert "pip install 'ncodec[plot]'" in log
    assert "## Plots" not in result.with_suffix(".md").read_text()


def test_rerun_computes_nothing_already_in_the_file(swept, dataset, tmp_path, monkeypatch):
    result = copy_result(swept[0], tmp_path / "results")
    check_rerun_computes_nothing(image, result, sweep_args(dataset, result.parent, "--workers", 2), 30,
                                 monkeypatch)


def test_rerun_with_a_new_setting_computes_only_that_setting(swept, dataset, tmp_path, monkeypatch):
    result = copy_result(swept[0], tmp_path / "results")
    before = load(result)["rows"]
    submitted = []
    monkeypatch.setattr(image, "run_jobs", run_here(submitted))
    code, err = bench(*sweep_args(dataset, result.parent, jpeg=[*JPEG, 95]))
    assert code == 0, err
    assert [(j.name, j.todo) for j in submitted] == [(n, (("jpeg", (95,)),)) for n in (*SMALL, "big.png")]
    rows = load(result)["rows"]
    assert len(rows) == len(before) + 3 and all(r in rows for r in before)


def test_ncodec_rows_record_the_model(dataset, tmp_path):
    from ncodec.zoo import find

    model = find(None, "image")  # the shipped default
    code, err = bench("--dataset", dataset, "--codecs", "ncodec,webp", "--settings", "ncodec=1,4,8",
                      "--settings", "webp=20,80", "--limit", 1, "--out", tmp_path)
    assert code == 0, err
    doc = load(tmp_path / f"image_{dataset.name}.json")
    assert doc["images"] == ["a.png"]
    assert doc["machine"]["models"] == [{"id": model.model_id, "sha256": model.sha256}]
    rows = [r for r in doc["rows"] if r["codec"] == "ncodec"]
    assert [r["setting"] for r in rows] == [1, 4, 8]
    assert np.all(np.diff([r["bytes"] for r in rows]) > 0)


def test_one_run_compares_several_ncodec_models(dataset, tmp_path, monkeypatch):
    import torch
    from ncodec.image_codec import encode_image
    from ncodec.image_model import ImageHyperprior, ImageModelConfig
    from ncodec.image_weights import export
    from ncodec.zoo import find

    torch.manual_seed(0)
    export(ImageHyperprior(ImageModelConfig(n=16, m=24)), tmp_path / "zoo" / "tiny.safetensors", "tiny-bench")
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(tmp_path / "zoo"))
    code, err = bench("--dataset", dataset, "--codecs", "ncodec,ncodec:tiny-bench,ncodec+refine0,webp",
                      "--settings", "ncodec=8", "--settings", "ncodec:tiny-bench=2,6",
                      "--settings", "ncodec+refine0=8", "--settings", "webp=50",
                      "--limit", 1, "--out", tmp_path / "out")
    assert code == 0, err
    doc = load(tmp_path / "out" / f"image_{dataset.name}.json")
    assert [m["id"] for m in doc["machine"]["models"]] == [find(None, "image").model_id, "tiny-bench"]
    rows = {(r["codec"], r["setting"]): (r["bytes"], r["psnr"]) for r in doc["rows"]}
    assert set(rows) == {("ncodec", 8), ("ncodec:tiny-bench", 2), ("ncodec:tiny-bench", 6),
                         ("ncodec+refine0", 8), ("webp", 50)}
    assert rows["ncodec", 8] != rows["ncodec:tiny-bench", 6]
    with Image.open(dataset / "a.png") as im:
        rgb = im.convert("RGB")
    # as `ncodec encode` does: refined (quality 8, where refinement changes this image's file)
    assert rows["ncodec", 8][0] == len(encode_image(rgb, 8.0))
    assert rows["ncodec+refine0", 8][0] == len(encode_image(rgb, 8.0, refine=0)) != rows["ncodec", 8][0]
    for codecs, message in (("ncodec:nope,webp", "'nope' is not installed"),
                            ("ncodec+refinex,webp", "refine steps must be a whole number within 0..1000"),
                            ("ncodec:+refine2,webp", "is not ncodec[:MODEL][+refineN]")):
        code, err = bench("--dataset", dataset, "--codecs", codecs, "--out", tmp_path / "out2")
        assert code == 1 and message in err, err


@pytest.mark.skipif(find_spec("ray") is None, reason="ray is not installed")
def test_ray_executor_gives_the_same_rows(dataset, tmp_path):
    code, err = bench("--dataset", dataset, "--codecs", "jpeg,webp", "--settings", "jpeg=40",
                      "--settings", "webp=40", "--limit", 2, "--executor", "ray", "--out", tmp_path)
    assert code == 0, err
    rows = load(tmp_path / f"image_{dataset.name}.json")["rows"]
    assert {(r["image"], r["codec"]) for r in rows} == {(i, c) for i in SMALL for c in ("jpeg", "webp")}
    with Image.open(dataset / "a.png") as im:
        rgb = np.asarray(im)
    data = get_codec("jpeg").encode(rgb, 40)
    row = next(r for r in rows if r["image"] == "a.png" and r["codec"] == "jpeg")
    assert row["bytes"] == len(data)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BenchError, match=r"ray is not installed; pip install 'ncodec\[ray\]'"):
        list(run_ray(len, [b"x"], 1))


@pytest.mark.parametrize("args, message", [
    (["--codecs", "jpeg,foo"], "unknown codec 'foo'"),
    (["--codecs", "jpeg"], "anchor 'webp' is not among the codecs"),
    (["--settings", "jpeg="], "--settings wants CODEC=VALUE"),
    (["--codecs", "jpeg,webp", "--settings", "avif=50"], "--settings for 'avif'"),
])
def test_bad_arguments_exit_1_with_one_line(dataset, tmp_path, args, message):
    check_bad_arguments("image", dataset, tmp_path, args, message)


def test_missing_or_empty_dataset_exits_1(tmp_path):
    code, err = bench("--dataset", tmp_path / "nope", "--codecs", "jpeg,webp", "--out", tmp_path / "out")
    assert code == 1 and "dataset folder not found" in err
    (tmp_path / "empty").mkdir()
    code, err = bench("--dataset", tmp_path / "empty", "--codecs", "jpeg,webp", "--out", tmp_path / "out")
    assert code == 1 and "no images in" in err


def test_a_result_file_of_another_kind_is_not_overwritten(dataset, tmp_path):
    check_other_kind_is_kept(tmp_path / f"image_{dataset.name}.json", "video", sweep_args(dataset, tmp_path),
                             "is not an image benchmark result")


@pytest.mark.skipif(find_spec("compressai") is not None, reason="compressai is installed")
def test_missing_compressai_is_a_clear_error(dataset, tmp_path):
    code, err = bench("--dataset", dataset, "--codecs", "compressai:bmshj2018-hyperprior,webp",
                      "--out", tmp_path)
    assert code == 1
    assert err == "ncodec: error: compressai is not installed; pip install 'ncodec[compressai]'\n"
    with pytest.raises(BenchError, match="compressai is not installed"):  # the worker's own check
        get_codec("compressai:bmshj2018-hyperprior")


def test_bench_modules_import_nothing_heavy():
    heavy = {"compressai", "matplotlib", "ray", "imagecodecs", "torch", "pytorch_msssim"}
    assert not heavy & imported_after("ncodec.cli.main", "ncodec.bench.image", "ncodec.bench.report")


def curve(rates, quality, metric="psnr"):
    return [{"bpp": r, metric: q} for r, q in zip(rates, quality, strict=True)]


ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
ANCHOR_DB = [27.0, 30.5, 33.6, 36.3, 38.7, 40.8]  # concave, like a real codec


def test_bd_rate_of_a_curve_at_80_percent_of_the_rate_is_minus_20():
    bd = bd_rate(curve(ANCHOR_BPP, ANCHOR_DB), curve([0.8 * r for r in ANCHOR_BPP], ANCHOR_DB))
    assert bd["value_pct"] == pytest.approx(-20, abs=0.5)
    assert bd["overlap_db"] == [27.0, 40.8]


def test_bd_rate_uses_the_overlap_only_and_ms_ssim_in_db():
    shifted = [q + 3 for q in ANCHOR_DB]  # the test curve covers 30..43.8 dB
    bd = bd_rate(curve(ANCHOR_BPP, ANCHOR_DB), curve([0.8 * r for r in ANCHOR_BPP], ANCHOR_DB))
    assert bd_rate(curve(ANCHOR_BPP, ANCHOR_DB), curve(ANCHOR_BPP, shifted))["overlap_db"] == [30.0, 40.8]
    as_ms_ssim = [1 - 10 ** (-(q - 20) / 10) for q in ANCHOR_DB]  # 7..20.8 dB
    bd_ms = bd_rate(curve(ANCHOR_BPP, as_ms_ssim, "ms_ssim"),
                    curve([0.8 * r for r in ANCHOR_BPP], as_ms_ssim, "ms_ssim"), "ms_ssim")
    assert bd_ms["value_pct"] == pytest.approx(bd["value_pct"], abs=1e-6)
    assert bd_ms["overlap_db"] == pytest.approx([7.0, 20.8])


def test_bd_rate_is_none_without_overlap_or_points():
    anchor = curve(ANCHOR_BPP, ANCHOR_DB)
    assert bd_rate(anchor, curve(ANCHOR_BPP, [q + 20 for q in ANCHOR_DB])) is None
    assert bd_rate(anchor, curve(ANCHOR_BPP[:3], ANCHOR_DB[:3])) is None
    four, three = ([q if i < n else None for i, q in enumerate(ANCHOR_DB)] for n in (4, 3))
    assert bd_rate(anchor, curve(ANCHOR_BPP, four)) is not None
    assert bd_rate(anchor, curve(ANCHOR_BPP, three)) is None


def test_psnr_and_ms_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (170, 180, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 2, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr(a, a) == pytest.approx(100 + 10 * math.log10(255**2))  # MSE floored at 1e-10
    assert ms_ssim(a, a) == pytest.approx(1.0) and 0 < ms_ssim(a, b) < 1
    assert ms_ssim(a[:160], b[:160]) is None


def test_missing_compressai_checkpoints_are_a_clear_error(dataset, tmp_path):
    def run(folder: Path) -> tuple[int, str]:
        return bench("--dataset", dataset, "--codecs", f"compressai:bmshj2018-hyperprior@{folder}",
                     "--out", tmp_path / "out")

    assert run(tmp_path / "none") == (1, f"ncodec: error: no compressai checkpoint at {tmp_path / 'none'}\n")
    (tmp_path / "empty").mkdir()
    code, err = run(tmp_path / "empty")
    assert code == 1 and "no checkpoints (.pth, .pth.tar, .pt) in" in err
    assert not (tmp_path / "out").exists()
