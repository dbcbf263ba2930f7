"""`ncodec datasets`: checksum-verified downloads, exercised only against a local HTTP server."""

import hashlib
import http.server
import io
import json
import re
import stat
import tarfile
import threading
import time
import zipfile
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
        if self.path.startswith("/nolength/"):  # /origin/FILE without Content-Length (ends at close)
            data = (Path(self.directory) / "origin" / self.path.removeprefix("/nolength/")).read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data)
            return
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
    assert "clic-professional-valid, kodak, librispeech-test-clean, tiny" in line


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


def _digests(data: bytes, *algorithms: str) -> tuple[tuple[str, str], ...]:
    return tuple((a, hashlib.new(a, data).hexdigest()) for a in algorithms)


def _register_file(server, monkeypatch, filename: str, data: bytes, digests, size: int | None) -> None:
    """A "packed" dataset: one archive at /origin/FILENAME holding `data`."""
    url, www, _ = server
    (www / "origin" / filename).write_bytes(data)
    archive = datasets.RemoteFile(filename, f"{url}/origin/{filename}", digests, size, True)
    packed = datasets.Dataset("packed", "one archive", f"{url}/origin", (archive,))
    monkeypatch.setattr(datasets, "DATASETS", {**datasets.DATASETS, "packed": packed})


def _register_archive(server, monkeypatch, members: dict[str, bytes]) -> None:
    """A "packed" dataset: one tar.gz at /origin/packed.tar.gz holding `members`."""
    data = _tar_gz(members)
    _register_file(server, monkeypatch, "packed.tar.gz", data, _digests(data, "sha256"), len(data))


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
    assert (f.size, [a for a, _ in f.digests], len(f.digest("sha256"))) == (346663984, ["sha256"], 64)


def test_kodak_registry_matches_local_copies():
    kodak = datasets.DATASETS["kodak"]
    assert [f.name for f in kodak.files] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", f.digest("sha256")) and f.size > 0 for f in kodak.files)
    assert all(f.url == f"http://r0k.us/graphics/kodak/kodak/{f.name}" for f in kodak.files)
    for f in kodak.files:
        data = (KODAK_LOCAL / f.name).read_bytes()
        assert f.digests == (("sha256", hashlib.sha256(data).hexdigest()),) and len(data) == f.size, f.name


def test_an_archive_marker_holding_the_bare_sha256_is_still_trusted(server, tmp_path, capsys, monkeypatch):
    _register_archive(server, monkeypatch, {"a.txt": b"a"})
    (f,) = datasets.DATASETS["packed"].files
    assert _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))[0] == 0
    marker = f.marker(tmp_path / "packed")
    assert marker.read_text() == f"sha256 {f.digest('sha256')}\n"
    marker.write_text(f.digest("sha256") + "\n")  # as written before markers named their algorithms
    assert _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))[0] == 0
    assert server[2].count("/origin/packed.tar.gz") == 1


def _zip(members: dict[str, bytes | None], modes: dict[str, int] | None = None) -> bytes:
    """A zip of `members` (None: a folder entry); `modes` sets a member's Unix mode (st_mode)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: external_attr >> 16 is the mode
            mode = (modes or {}).get(name, stat.S_IFDIR | 0o755 if data is None else stat.S_IFREG | 0o644)
            info.external_attr = mode << 16
            z.writestr(info, b"" if data is None else data)
    return buf.getvalue()


PHOTOS = {"valid/one.png": b"\x89PNG" + bytes(2000), "valid/two.png": b"\x89PNG" + bytes(range(256)) * 9}


def _register_zip(server, monkeypatch, data: bytes, digests=None) -> None:
    """Like the CLIC entry: a zip verified by sha1 and md5, size unknown."""
    _register_file(server, monkeypatch, "packed.zip", data, digests or _digests(data, "sha1", "md5"), None)


def test_a_zip_of_unknown_size_is_verified_by_sha1_and_md5_unpacked_and_removed(server, tmp_path, capsys,
                                                                                 monkeypatch):
    data = _zip({"valid/": None, **PHOTOS}, {"valid/two.png": 0o600})  # a mode without a file type
    _register_zip(server, monkeypatch, data)
    assert datasets.DATASETS["packed"].size is None
    rc, out, _ = _run(capsys, "datasets", "list", "--json", "--dest", str(tmp_path))
    row = {d["name"]: d for d in json.loads(out)}["packed"]
    assert rc == 0 and (row["bytes"], row["status"]) == (None, "missing")
    rc, out, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))
    folder = tmp_path / "packed"
    assert rc == 0 and out == f"{folder.resolve()}\n", err
    assert f"packed 1/1 files, {len(data) / 1e6:.1f} MB" in err and "/ MB" not in err
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")} == PHOTOS
    assert not (folder / "packed.zip").exists() and not list(folder.rglob("*.part"))
    assert (folder / ".packed.zip.extracted").read_text() == "".join(
        f"{a} {d}\n" for a, d in _digests(data, "sha1", "md5"))
    assert _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))[0] == 0
    assert server[2].count("/origin/packed.zip") == 1  # the rerun downloads nothing
    rc, out, _ = _run(capsys, "datasets", "list", "--dest", str(tmp_path))
    assert rc == 0 and re.search(r"^packed\s+1 files\s+\? MB  fetched ", out, re.M), out


def test_a_zip_with_a_wrong_md5_is_refused_though_its_sha1_matches(server, tmp_path, capsys, monkeypatch):
    data = _zip(PHOTOS)
    (sha1,) = _digests(data, "sha1")
    wrong = ("md5", hashlib.md5(b"something else").hexdigest())
    _register_zip(server, monkeypatch, data, (sha1, wrong))
    rc, out, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path / "data"))
    line = _error_line(err)
    assert rc == 1 and out == "" and "checksum mismatch for packed.zip" in line
    got_md5 = hashlib.md5(data).hexdigest()
    assert f"expected sha1 {sha1[1]}, md5 {wrong[1]}, got sha1 {sha1[1]}, md5 {got_md5} " \
           f"({len(data)} bytes); not saved" in line
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]  # no archive, .part or files


@pytest.mark.parametrize("evil, mode", [("../escape", stat.S_IFREG | 0o644), ("valid/a/../../../escape", 0),
                                        ("valid/a/../three.png", 0),  # inside, yet refused: ".."
                                        ("/tmp/ncodec-zip-absolute", stat.S_IFREG | 0o644),
                                        ("valid/link", stat.S_IFLNK | 0o777)])
def test_a_zip_member_outside_the_folder_or_a_symlink_is_refused(server, tmp_path, capsys, monkeypatch,
                                                                 evil, mode):
    data = _zip({**PHOTOS, evil: b"../../outside"}, {evil: mode})  # a symlink's data is its target
    _register_zip(server, monkeypatch, data)
    rc, _, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path / "data"))
    assert rc == 1 and f"refusing archive member {evil!r}" in _error_line(err)
    folder = tmp_path / "data" / "packed"
    assert not (tmp_path / "data" / "escape").exists() and not (tmp_path / "escape").exists()
    assert not Path("/tmp/ncodec-zip-absolute").exists()
    assert [p.name for p in folder.iterdir()] == ["packed.zip"]  # nothing unpacked, no marker


def test_a_zip_entry_whose_mode_contradicts_its_name_is_refused(server, tmp_path, capsys, monkeypatch):
    data = _zip({**PHOTOS, "valid/sub": b""}, {"valid/sub": stat.S_IFDIR | 0o755})  # a folder without "/"
    _register_zip(server, monkeypatch, data)
    rc, _, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path))
    assert rc == 1 and "refusing archive member 'valid/sub'" in _error_line(err)


@pytest.mark.parametrize("source", ["origin", "nolength"])
def test_a_download_of_unknown_size_is_capped(server, tmp_path, capsys, monkeypatch, source):
    data = _zip(PHOTOS)
    _register_zip(server, monkeypatch, data)
    monkeypatch.setenv("NCODEC_DATASETS_MIRROR", f"{server[0]}/{source}")
    monkeypatch.setattr(datasets, "MAX_UNKNOWN_SIZE", len(data) - 1)
    rc, _, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path / "data"))
    line = _error_line(err)
    assert rc == 1 and f"packed.zip from {server[0]}/{source}/packed.zip is larger than {len(data) - 1} " \
                       "bytes" in line and "not saved" in line
    assert server[2] == [f"/{source}/packed.zip"]
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    monkeypatch.setattr(datasets, "MAX_UNKNOWN_SIZE", len(data))  # exactly at the cap: accepted
    rc, _, err = _run(capsys, "datasets", "fetch", "packed", "--dest", str(tmp_path / "data"))
    unpacked = tmp_path / "data" / "packed" / "valid" / "one.png"
    assert rc == 0 and unpacked.read_bytes() == PHOTOS["valid/one.png"], err


def test_a_bad_registered_digest_is_rejected():
    bad = [(), (("sha1", "abc"),), (("sha256", "A" * 64),), (("crc32", "0" * 8),), (("shake_128", ""),),
           (("md5", "0" * 32), ("sha1", "0" * 32))]
    for digests in bad:
        with pytest.raises(ValueError):
            datasets.RemoteFile("x", "http://example.invalid/x", digests, None)


def test_clic_is_registered_as_one_zip_verified_by_sha1_and_md5():
    clic = datasets.DATASETS["clic-professional-valid"]
    (f,) = clic.files
    assert f.extract and f.size is None and clic.size is None
    assert f.url == "https://data.vision.ee.ethz.ch/cvl/clic/professional_valid_2020.zip"
    assert f.name == "professional_valid_2020.zip" and [a for a, _ in f.digests] == ["sha1", "md5"]
    assert re.fullmatch(r"[0-9a-f]{40}", f.digest("sha1")) and re.fullmatch(r"[0-9a-f]{32}", f.digest("md5"))
    assert all(word in clic.description for word in ("41 PNG", "Unsplash", "research use", "valid/"))
