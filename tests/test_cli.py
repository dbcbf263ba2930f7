"""The `ncodec` command: exit codes, one-line errors, no partial output, stdin/stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import imported_after
from PIL import Image


def run(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "ncodec.cli.main", *map(str, args)],
                          input=stdin, capture_output=True)


@pytest.fixture
def png(tmp_path, photo):
    path = tmp_path / "photo.png"
    photo.save(path)
    return path


def test_encode_decode_round_trip(png, tmp_path):
    ncz, out = tmp_path / "a.ncz", tmp_path / "a.bmp"
    assert run("encode", png, "-o", ncz, "--quality", 5).returncode == 0
    assert run("decode", ncz, "-o", out).returncode == 0
    assert Image.open(out).size == Image.open(png).size
    info = json.loads(run("info", ncz, "--json").stdout)
    assert info["modality"] == "image" and info["quality"] == 5.0


def test_outputs_get_the_permissions_of_a_plain_open(tmp_path):
    from ncodec.atomic import atomic_output

    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "out.bin") as tmp:
            Path(tmp).write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "failed.bin") as tmp:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("encoder failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_stdin_and_stdout_are_supported(png):
    enc = run("encode", "-", "-o", "-", stdin=png.read_bytes())
    assert enc.returncode == 0 and enc.stdout[:4] == b"\x89NCZ"
    dec = run("decode", "-", "-o", "-", stdin=enc.stdout)
    assert dec.returncode == 0 and dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_bpp_target_is_met(png, tmp_path):
    ncz = tmp_path / "t.ncz"
    assert run("encode", png, "-o", ncz, "--bpp", 0.5).returncode == 0
    image = Image.open(png)
    assert ncz.stat().st_size * 8 / (image.width * image.height) <= 0.5


@pytest.mark.parametrize("content", [b"", b"\x89NCZ\r\n\x1a\n\x00\x00", b"hello world\n" * 9])
def test_bad_input_exits_1_with_one_line_and_no_output(content, tmp_path):
    bad, out = tmp_path / "bad.ncz", tmp_path / "out.png"
    bad.write_bytes(content)
    res = run("decode", bad, "-o", out)
    assert res.returncode == 1
    assert res.stderr.decode().count("\n") == 1 and b"Traceback" not in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_corrupted_file_is_detected(png, tmp_path):
    ncz, out = tmp_path / "a.ncz", tmp_path / "a.png"
    run("encode", png, "-o", ncz)
    data = bytearray(ncz.read_bytes())
    data[len(data) // 2] ^= 0x10
    ncz.write_bytes(bytes(data))
    res = run("decode", ncz, "-o", out)
    assert res.returncode == 1 and b"CRC" in res.stderr and not out.exists()


def test_non_image_input_to_encode_exits_1(tmp_path):
    txt = tmp_path / "notes.png"
    txt.write_text("not an image")
    res = run("encode", txt, "-o", tmp_path / "x.ncz")
    assert res.returncode == 1 and b"cannot read" in res.stderr
    assert not (tmp_path / "x.ncz").exists()


def test_usage_errors_exit_2(png, tmp_path):
    assert run("encode", png).returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("encode", png, "-o", tmp_path / "a.ncz", "--quality", "x").returncode == 2


def test_models_lists_the_default_image_model():
    res = run("models", "--json")
    models = json.loads(res.stdout)
    assert any(m["modality"] == "image" and m["default"] and len(m["sha256"]) == 64
               for m in models)


def test_a_non_model_file_in_a_model_folder_is_skipped_with_one_warning(png, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "checkpoint.safetensors").write_bytes(b"not safetensors")
    env = {**os.environ, "NCODEC_MODEL_PATH": str(folder)}
    cmd = [sys.executable, "-m", "ncodec.cli.main", "encode", str(png), "-o", str(tmp_path / "a.ncz")]
    res = subprocess.run(cmd, capture_output=True, env=env)
    assert res.returncode == 0 and (tmp_path / "a.ncz").stat().st_size > 0
    (line,) = res.stderr.decode().splitlines()
    assert line.startswith(f"ncodec: warning: skipped: {folder / 'checkpoint.safetensors'} is not a readable "
                           "safetensors file: ")


def test_a_model_file_is_the_same_bytes_every_time_it_is_written(tmp_path):
    """(safetensors alone writes its metadata in a random order, another in each process.)"""
    from ncodec.zoo import describe

    code = ("import sys, torch; from ncodec.zoo import write_model_file; write_model_file(sys.argv[1], "
            "{'w': torch.arange(6.0)}, 'm', 'image', 'f', {'n': 1}, {'steps': 3}, {'extra': [1]})")
    files = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for path in files:
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert len({path.read_bytes() for path in files}) == 1
    info = describe(files[0])
    assert (info.model_id, info.format, info.config, info.training) == ("m", "f", {"n": 1}, {"steps": 3})


def test_encode_decode_path_imports_no_heavy_packages():
    heavy = {"compressai", "matplotlib", "pandas", "scipy", "ray"}
    assert not heavy & imported_after("ncodec", "ncodec.image_codec", "ncodec.cli.main")


def test_every_python_package_folder_is_installed_by_pyproject():
    """A new subpackage that pyproject does not list would be missing from the wheel."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {name: root / folder for name, folder in cfg["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            if not any(p.startswith((".", "__")) for p in rel):
                found.add(".".join((name, *rel)))
    assert found <= set(cfg["packages"]), found - set(cfg["packages"])
