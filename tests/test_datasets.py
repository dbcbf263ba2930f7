"""`ncodec datasets`: checksum-verified downloads, exercised only against a local HTTP server."""

import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from ncodec import datasets
from ncodec.cli.main import main

KODAK_LOCAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "images" / "kodak"
FILES = {"a.bin": b"alpha" * 1000, "b.bin": bytes(range(256)) * 40, "sub/c.txt": b"gamma\n"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        self.server.requests.append(self.path)
        if self.path.startswith("/slow/"):
            time.sleep(1.0)
        super().do_GET()

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that timed out: not our concern
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves tmp_path/www; registers a 3-file "tiny" dataset at /origin; returns (url, www, requests)."""
    www = tmp_path / "www"
    for name, data in FILES.items():
        for root in ("origin", "mirror", "slow"):
            (www / root / name).parent.mkdir(parents=True, exist_ok=True)
            (www / root / name).write_bytes(data)
    httpd = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(www)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    files = [(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in FILES.items()]
    tiny = datasets._from_base("tiny", "three small files", f"{url}/origin", files)
    monkeypatch.setattr(datasets, "DATASETS", {**datasets.DATASETS, "tiny": tiny})
    monkeypatch.delenv("NCODEC_DATASETS_MIRROR", raising=False)
    monkeypatch.delenv("NCODEC_DATA", raising=False)
    yield url, www, httpd.requests
    httpd.shutdown()
    httpd.server_close()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _error_line(err: str) -> str:
    line = err.strip().splitlines()[-1]
    assert line.startswith("ncodec: error: ") and "Traceback" not in err
    return line


def test_fetch_downloads_verifies_and_prints_folder(server, tmp_path, capsys):
    rc, out, err = _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path / "data"))
    folder = tmp_path / "data" / "tiny"
    assert rc == 0 and out == f"{folder.resolve()}\n"
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == FILES
    assert "3/3 files" in err and len(server[2]) == 3


def test_rerun_skips_verified_files_and_resumes(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCODEC_DATA", str(tmp_path / "data"))  # the default dest
    requests = server[2]
    assert _run(capsys, "datasets", "fetch", "tiny")[0] == 0
    assert _run(capsys, "datasets", "fetch", "tiny")[0] == 0
    assert len(requests) == 3
    (tmp_path / "data" / "tiny" / "b.bin").unlink()
    (tmp_path / "data" / "tiny" / "a.bin").write_bytes(b"stale")
    rc, out, _ = _run(capsys, "datasets", "fetch", "tiny")
    assert rc == 0 and out.strip() == str((tmp_path / "data" / "tiny").resolve())
    assert sorted(requests[3:]) == ["/origin/a.bin", "/origin/b.bin"]
    assert (tmp_path / "data" / "tiny" / "a.bin").read_bytes() == FILES["a.bin"]


def test_mirror_replaces_base_url(server, tmp_path, capsys, monkeypatch):
    url, _, requests = server
    monkeypatch.setenv("NCODEC_DATASETS_MIRROR", f"{url}/mirror/")
    assert _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path))[0] == 0
    assert sorted(requests) == ["/mirror/a.bin", "/mirror/b.bin", "/mirror/sub/c.txt"]


def test_corrupted_file_is_rejected_and_deleted(server, tmp_path, capsys):
    _, www, _ = server
    bad = bytearray(FILES["b.bin"])
    bad[100] ^= 1
    (www / "origin" / "b.bin").write_bytes(bad)
    rc, _, err = _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path / "data"))
    line = _error_line(err)
    assert rc == 1 and "checksum mismatch for b.bin" in line
    assert hashlib.sha256(FILES["b.bin"]).hexdigest() in line and hashlib.sha256(bad).hexdigest() in line
    folder = tmp_path / "data" / "tiny"
    assert not (folder / "b.bin").exists() and not list(folder.rglob("*.part"))


def test_truncated_file_is_rejected(server, tmp_path, capsys):
    (server[1] / "origin" / "sub" / "c.txt").write_bytes(b"gam")
    rc, _, err = _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path))
    assert rc == 1 and "checksum mismatch for sub/c.txt" in _error_line(err) and "(3 bytes)" in err
    assert not list((tmp_path / "tiny").rglob("c.txt*"))


def test_http_404_is_one_clear_line(server, tmp_path, capsys):
    (server[1] / "origin" / "a.bin").unlink()
    rc, _, err = _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path))
    line = _error_line(err)
    assert rc == 1 and "/origin/a.bin" in line and "HTTP 404" in line
    assert not list(tmp_path.rglob("*.part"))


def test_timeout_is_one_clear_line(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "TIMEOUT_S", 0.2)
    monkeypatch.setenv("NCODEC_DATASETS_MIRROR", f"{server[0]}/slow")
    rc, _, err = _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path))
    assert rc == 1 and "timed out after 0.2 s" in _error_line(err)


def test_unknown_dataset_lists_known_names(server, capsys):
    rc, out, err = _run(capsys, "datasets", "fetch", "nope")
    line = _error_line(err)
    assert rc == 1 and out == "" and "unknown dataset 'nope'" in line
    assert "kodak, librispeech-test-clean, tiny" in line


def test_list_json_reports_status(server, tmp_path, capsys):
    def entry() -> dict:
        rc, out, _ = _run(capsys, "datasets", "list", "--json", "--dest", str(tmp_path))
        assert rc == 0
        return {d["name"]: d for d in json.loads(out)}["tiny"]

    assert entry() == {"name": "tiny", "description": "three small files", "files": 3,
                       "bytes": sum(map(len, FILES.values())), "url": f"{server[0]}/origin",
                       "dest": str((tmp_path / "tiny").resolve()), "status": "missing"}
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "a.bin").write_bytes(FILES["a.bin"])
    assert entry()["status"] == "partial"
    assert _run(capsys, "datasets", "fetch", "tiny", "--dest", str(tmp_path))[0] == 0
    assert entry()["status"] == "fetched"
    rc, out, _ = _run(capsys, "datasets", "list", "--dest", str(tmp_path))
    assert rc == 0 and re.search(r"^tiny\s+3 files .* fetched ", out, re.M)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        root = tarfile.TarInfo(".")  # archives often start with their root folder
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _register_archive(server, monkeypatch, members: dict[str, bytes]) -> None:
    """A "packed" dataset: one tar.gz at /origin/packed.tar.gz holding `members`."""
    url, www, _ = server
    data = _tar_gz(members)
    (www / "origin" / "packed.tar.gz").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    archive = datasets.RemoteFile("packed.tar.gz", f"{url}/origin/packed.tar.gz", sha, len(data), True)
    packed = datasets.Dataset("packed", "one archive", f"{url}/origin", (archive,))
    monkeypatch.setattr(datasets, "DATASETS", {**datasets.DATASETS, "packed": packed})


def test_an_archive_is_verified_unpacked_and_removed(server, tmp_path, capsys, monkeypatch):
    members = {"Speech/test/1-1.flac": b"fLaC" + bytes(300), "Speech/README.TXT": b"about\n"}
    _register_archive(server, monkeypatch, members)
    rc, out, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))
    folder = tmp_path / "packed"
    assert rc == 0 and out == f"{folder.resolve()}\n", err
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")} == members
    assert not (folder / "packed.tar.gz").exists()
    assert _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))[0] == 0
    assert server[2].count("/origin/packed.tar.gz") == 1  # the rerun trusts the marker
    rc, out, _ = _run(capsys, "datasets", "list", "--dest", str(tmp_path))
    assert re.search(r"^packed\s+1 files .* fetched ", out, re.M)


@pytest.mark.parametrize("evil", ["../outside.txt", "/tmp/ncodec-absolute.txt"])
def test_an_archive_member_outside_the_folder_is_refused(server, tmp_path, capsys, monkeypatch, evil):
    _register_archive(server, monkeypatch, {"ok.txt": b"fine", evil: b"escape"})
    rc, _, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path / "data"))
    assert rc == 1 and f"refusing archive member {evil!r}" in _error_line(err)
    assert not (tmp_path / "data" / "outside.txt").exists() and not Path("/tmp/ncodec-absolute.txt").exists()
    assert not list((tmp_path / "data" / "packed").glob(".*.extracted"))


def test_librispeech_is_registered_as_one_verified_archive():
    (f,) = datasets.DATASETS["librispeech-test-clean"].files
    assert f.extract and f.url == "https://www.openslr.org/resources/12/test-clean.tar.gz"
    assert (f.size, len(f.sha256)) == (346663984, 64)


def test_kodak_registry_matches_local_copies():
    kodak = datasets.DATASETS["kodak"]
    assert [f.name for f in kodak.files] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0 for f in kodak.files)
    assert all(f.url == f"http://r0k.us/graphics/kodak/kodak/{f.name}" for f in kodak.files)
    for f in kodak.files:
        data = (KODAK_LOCAL / f.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f.size, f.sha256), f.name
