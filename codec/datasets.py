"""Standard evaluation datasets: a registry of checksummed files and a verifying downloader.

    from ncodec.datasets import fetch
    folder = fetch("kodak")    # DEST/kodak/, every file sha256-verified

Files land in DEST/NAME/ (DEST: the `dest` argument, else $NCODEC_DATA, else
~/.cache/ncodec/datasets). Each file streams to FILE.part while it is hashed and is renamed into
place only when its size and sha256 match the registry; files already present with the right hash
are skipped, so a rerun resumes. An archive (a .tar, .tar.gz, ... registered with extract=True) is
verified the same way, unpacked into the dataset folder (regular files and folders only, nothing
outside it), then deleted; a `.NAME.extracted` marker holding its sha256 records that it was.
$NCODEC_DATASETS_MIRROR, when set, replaces a dataset's base URL: files are fetched from
MIRROR/<relative filename>.

Registered: "kodak" and "librispeech-test-clean". CLIC is not: no SHA-256 and size of its
validation archive could be confirmed from independent sources offline.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATASETS", "Dataset", "DatasetError", "RemoteFile", "default_dest", "fetch", "get", "source_url",
           "status"]

TIMEOUT_S = 60.0
CHUNK = 1 << 20
MIRROR_ENV = "NCODEC_DATASETS_MIRROR"
DEST_ENV = "NCODEC_DATA"


class DatasetError(Exception):
    """Unknown dataset, download failure or checksum mismatch."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path relative to the dataset folder
    url: str
    sha256: str
    size: int
    extract: bool = False  # a tar archive: unpacked into the dataset folder, then deleted

    def marker(self, folder: Path) -> Path:
        """The file recording that this archive was unpacked into `folder`."""
        return folder / f".{self.name}.extracted"


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    base_url: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _from_base(name: str, description: str, base_url: str,
               files: list[tuple[str, str, int]]) -> Dataset:
    """A dataset whose files (name, sha256, size) all live at BASE_URL/name."""
    return Dataset(name, description, base_url,
                   tuple(RemoteFile(n, f"{base_url}/{n}", sha, size) for n, sha, size in files))


_KODAK_URL = "http://r0k.us/graphics/kodak/kodak"
# sha256 and size of the canonical originals (verified against byte-identical local copies).
_KODAK = [
    ("kodim01.png", "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd", 736501),
    ("kodim02.png", "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd", 617995),
    ("kodim03.png", "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db", 502888),
    ("kodim04.png", "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa", 637432),
    ("kodim05.png", "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53", 785610),
    ("kodim06.png", "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18", 618959),
    ("kodim07.png", "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4", 566322),
    ("kodim08.png", "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7", 788470),
    ("kodim09.png", "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d", 582899),
    ("kodim10.png", "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23", 593463),
    ("kodim11.png", "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6", 621023),
    ("kodim12.png", "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980", 531024),
    ("kodim13.png", "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08", 822712),
    ("kodim14.png", "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e", 692201),
    ("kodim15.png", "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683", 612582),
    ("kodim16.png", "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54", 534247),
    ("kodim17.png", "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b", 602078),
    ("kodim18.png", "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa", 780947),
    ("kodim19.png", "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc", 671476),
    ("kodim20.png", "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a", 492462),
    ("kodim21.png", "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b", 637051),
    ("kodim22.png", "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29", 701970),
    ("kodim23.png", "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf", 557596),
    ("kodim24.png", "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96", 706397),
]

_LIBRISPEECH_URL = "https://www.openslr.org/resources/12"
# sha256 and size as published by torchaudio's and OpenSLR-mirroring checksum tables (the archive's
# OpenSLR md5 is 32fa31d27d2e1cad72775fee3f4849a9).
_LIBRISPEECH_TEST_CLEAN = RemoteFile(
    "test-clean.tar.gz", f"{_LIBRISPEECH_URL}/test-clean.tar.gz",
    "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23", 346663984, extract=True)

DATASETS: dict[str, Dataset] = {
    "kodak": _from_base("kodak", "Kodak PhotoCD test images kodim01..24, 768x512 PNG (6 portrait)",
                        _KODAK_URL, _KODAK),
    "librispeech-test-clean": Dataset(
        "librispeech-test-clean", "LibriSpeech test-clean: 2620 read English utterances, 5.4 h, "
        "16 kHz FLAC (CC BY 4.0), unpacked to LibriSpeech/test-clean/SPEAKER/CHAPTER/",
        _LIBRISPEECH_URL, (_LIBRISPEECH_TEST_CLEAN,)),
}

# progress(files_done, files_total, bytes_done, bytes_total)
Progress = Callable[[int, int, int, int], None]


def get(name: str) -> Dataset:
    """The registered dataset `name`; DatasetError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})") from None


def default_dest() -> Path:
    """$NCODEC_DATA, else ~/.cache/ncodec/datasets."""
    return Path(os.environ.get(DEST_ENV) or Path.home() / ".cache" / "ncodec" / "datasets").expanduser()


def source_url(dataset: Dataset) -> str:
    """The base URL files are fetched from: $NCODEC_DATASETS_MIRROR if set, else the dataset's own."""
    return os.environ.get(MIRROR_ENV, "").rstrip("/") or dataset.base_url


def _url(f: RemoteFile) -> str:
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return f"{mirror}/{f.name}" if mirror else f.url


def _folder(dataset: Dataset, dest: str | Path | None) -> Path:
    return (Path(dest).expanduser() if dest is not None else default_dest()) / dataset.name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, f: RemoteFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size and _sha256(path) == f.sha256


def _extracted(folder: Path, f: RemoteFile) -> bool:
    marker = f.marker(folder)
    return marker.is_file() and marker.read_text().strip() == f.sha256


def _extract(archive: Path, folder: Path, f: RemoteFile) -> None:
    """Unpack a verified tar archive into `folder` (refusing links, devices and paths that leave
    it), write its marker and delete it."""
    root = folder.resolve()
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                target = (root / m.name).resolve()
                if not (m.isfile() or m.isdir()) or not target.is_relative_to(root) or \
                        (m.isfile() and target == root):
                    raise DatasetError(f"{f.name}: refusing archive member {m.name!r} (not a plain file "
                                       f"or folder inside the dataset folder)")
            tar.extractall(root, members, **safe)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"cannot unpack {archive}: {err}") from None
    f.marker(folder).write_text(f.sha256 + "\n")
    archive.unlink()


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, Exception):
        err = err.reason
    if isinstance(err, TimeoutError):
        return f"timed out after {TIMEOUT_S:g} s"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _download(url: str, f: RemoteFile, target: Path, on_bytes: Callable[[int], None]) -> None:
    """Stream `url` to TARGET.part while hashing; rename to `target` only if size and sha256 match.

    `on_bytes` gets the number of bytes of this file received so far.
    """
    part = target.with_name(target.name + ".part")
    h, size = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "ncodec-datasets"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, part.open("wb") as out:
            while size <= f.size and (chunk := response.read(CHUNK)):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
                on_bytes(size)
    except (OSError, http.client.HTTPException) as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"cannot download {url}: {_reason(err)}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if size != f.size or h.hexdigest() != f.sha256:
        part.unlink()
        got = f"{size} bytes" if size <= f.size else f"more than {f.size} bytes"
        raise DatasetError(f"checksum mismatch for {f.name} from {url}: expected sha256 {f.sha256} "
                           f"({f.size} bytes), got sha256 {h.hexdigest()} ({got}); not saved")
    os.replace(part, target)


def fetch(name: str, dest: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Download and verify dataset `name` into DEST/NAME; return that folder.

    Files already present with the registered sha256 are not downloaded again.
    """
    dataset = get(name)
    folder = _folder(dataset, dest)
    files_done = bytes_done = 0

    def report(current: int = 0) -> None:
        if progress:
            progress(files_done, len(dataset.files), bytes_done + current, dataset.size)

    for f in dataset.files:
        target = folder / f.name
        if not (f.extract and _extracted(folder, f)):
            if not _verified(target, f):
                target.parent.mkdir(parents=True, exist_ok=True)
                _download(_url(f), f, target, report)
            if f.extract:
                _extract(target, folder, f)
        files_done += 1
        bytes_done += f.size
        report()
    return folder


def status(name: str, dest: str | Path | None = None) -> str:
    """fetched, partial or missing: whether DEST/NAME holds all, some or none of the files.

    Compares sizes only (cheap); `fetch` verifies the hashes.
    """
    dataset = get(name)
    folder = _folder(dataset, dest)
    present = sum(f.marker(folder).is_file() if f.extract else
                  (folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size
                  for f in dataset.files)
    return "fetched" if present == len(dataset.files) else "partial" if present else "missing"
