"""Standard evaluation datasets: a registry of checksummed files and a verifying downloader.

    from ncodec.datasets import fetch
    folder = fetch("kodak")    # DEST/kodak/, every file sha256-verified

Files land in DEST/NAME/ (DEST: the `dest` argument, else $NCODEC_DATA, else
~/.cache/ncodec/datasets). Each file streams to FILE.part while it is hashed (every registered
digest, e.g. sha256, or sha1 and md5, in one pass) and is renamed into place only when its size, if
known, and every digest match the registry; files already present and matching are skipped, so a
rerun resumes. A file of unknown size is refused once it exceeds MAX_UNKNOWN_SIZE. An archive (a
.tar, .tar.gz, ... or .zip registered with extract=True) is verified the same way, unpacked into
the dataset folder (regular files and folders only, nothing outside it, no links), then deleted; a
`.NAME.extracted` marker holding its digests records that it was.
$NCODEC_DATASETS_MIRROR, when set, replaces a dataset's base URL: files are fetched from
MIRROR/<relative filename>.

Registered: "kodak", "librispeech-test-clean" and "clic-professional-valid" (CLIC 2020
professional validation: its zip's size is not known in advance; it is verified by SHA-1 and MD5
as published by two independent projects).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATASETS", "Dataset", "DatasetError", "RemoteFile", "default_dest", "fetch", "get", "source_url",
           "status"]

TIMEOUT_S = 60.0
CHUNK = 1 << 20
MIRROR_ENV = "NCODEC_DATASETS_MIRROR"
DEST_ENV = "NCODEC_DATA"
MAX_UNKNOWN_SIZE = 4 << 30  # a file registered without a size is refused beyond this many bytes


class DatasetError(Exception):
    """Unknown dataset, download failure or checksum mismatch."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path relative to the dataset folder
    url: str
    digests: tuple[tuple[str, str], ...]  # (hashlib algorithm, lowercase hex): all must match
    size: int | None  # None: unknown, not checked (the download is capped at MAX_UNKNOWN_SIZE)
    extract: bool = False  # a .tar* or .zip archive: unpacked into the dataset folder, then deleted

    def __post_init__(self) -> None:
        if not self.digests:
            raise ValueError(f"{self.name}: no digest registered")
        for algorithm, hexdigest in self.digests:
            known = algorithm in hashlib.algorithms_guaranteed and not algorithm.startswith("shake_")
            hex_digits = 2 * hashlib.new(algorithm).digest_size if known else 0
            if not (known and re.fullmatch(f"[0-9a-f]{{{hex_digits}}}", hexdigest)):
                raise ValueError(f"{self.name}: bad digest {algorithm} {hexdigest!r}")

    def digest(self, algorithm: str) -> str | None:
        """The registered hex digest for `algorithm`, None if there is none."""
        return dict(self.digests).get(algorithm)

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
    def size(self) -> int | None:
        """Total bytes; None if any file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


def _from_base(name: str, description: str, base_url: str,
               files: list[tuple[str, str, int]]) -> Dataset:
    """A dataset whose files (name, sha256, size) all live at BASE_URL/name."""
    return Dataset(name, description, base_url,
                   tuple(RemoteFile(n, f"{base_url}/{n}", (("sha256", s),), size) for n, s, size in files))


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
    (("sha256", "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23"),), 346663984,
    extract=True)

_CLIC_URL = "https://data.vision.ee.ethz.ch/cvl/clic"
# No SHA-256 or size is known offline; two independent projects publish other digests of this zip:
# SHA-1 in a CompressAI-derived CLIC2020 dataset class, MD5 in another project's CLIC2020 loader.
# Both must match.
_CLIC_PROFESSIONAL_VALID = RemoteFile(
    "professional_valid_2020.zip", f"{_CLIC_URL}/professional_valid_2020.zip",
    (("sha1", "196a602548afcc1949e5ec3a5dd0f6e713b34201"), ("md5", "7111ee240435911db04dbc5f40d50272")),
    None, extract=True)

DATASETS: dict[str, Dataset] = {
    "kodak": _from_base("kodak", "Kodak PhotoCD test images kodim01..24, 768x512 PNG (6 portrait)",
                        _KODAK_URL, _KODAK),
    "librispeech-test-clean": Dataset(
        "librispeech-test-clean", "LibriSpeech test-clean: 2620 read English utterances, 5.4 h, "
        "16 kHz FLAC (CC BY 4.0), unpacked to LibriSpeech/test-clean/SPEAKER/CHAPTER/",
        _LIBRISPEECH_URL, (_LIBRISPEECH_TEST_CLEAN,)),
    "clic-professional-valid": Dataset(
        "clic-professional-valid", "CLIC 2020 professional validation set: 41 PNG photos (Unsplash "
        "licence; CLIC terms: research use), unpacked to valid/", _CLIC_URL, (_CLIC_PROFESSIONAL_VALID,)),
}

# progress(files_done, files_total, bytes_done, bytes_total); bytes_total is None when unknown
Progress = Callable[[int, int, int, int | None], None]


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


def _hashers(f: RemoteFile) -> list[tuple[str, hashlib._Hash]]:
    return [(algorithm, hashlib.new(algorithm)) for algorithm, _ in f.digests]


def _matches(f: RemoteFile, hashers: list[tuple[str, hashlib._Hash]]) -> bool:
    return all(h.hexdigest() == expected for (_, h), (_, expected) in zip(hashers, f.digests, strict=True))


def _verified(path: Path, f: RemoteFile) -> bool:
    if not path.is_file() or (f.size is not None and path.stat().st_size != f.size):
        return False
    hashers = _hashers(f)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            for _, h in hashers:
                h.update(chunk)
    return _matches(f, hashers)


def _marker_text(f: RemoteFile) -> str:
    return "".join(f"{algorithm} {hexdigest}\n" for algorithm, hexdigest in f.digests)


def _extracted(folder: Path, f: RemoteFile) -> bool:
    marker = f.marker(folder)
    if not marker.is_file():
        return False
    text = marker.read_text()
    # Markers written before several digests were supported hold the bare sha256.
    return text == _marker_text(f) or (f.digests == (("sha256", text.strip()),))


def _refuse(f: RemoteFile, member: str) -> DatasetError:
    return DatasetError(f"{f.name}: refusing archive member {member!r} (not a plain file or folder inside "
                        f"the dataset folder)")


def _extract(archive: Path, folder: Path, f: RemoteFile) -> None:
    """Unpack a verified archive (.zip, else tar) into `folder`, refusing links, devices and paths
    that leave it; write its marker and delete it."""
    if f.name.lower().endswith(".zip"):
        _extract_zip(archive, folder.resolve(), f)
    else:
        _extract_tar(archive, folder.resolve(), f)
    f.marker(folder).write_text(_marker_text(f))
    archive.unlink()


def _extract_zip(archive: Path, root: Path, f: RemoteFile) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for m in members:
                kind = stat.S_IFMT(m.external_attr >> 16)  # the Unix mode, 0 when not recorded
                expected_kind = stat.S_IFDIR if m.is_dir() else stat.S_IFREG
                target = (root / m.filename).resolve()
                # zipfile would silently drop ".." parts and a leading "/": refuse them instead.
                if kind not in (0, expected_kind) or m.filename.startswith("/") or \
                        ".." in m.filename.replace("\\", "/").split("/") or \
                        not target.is_relative_to(root) or (not m.is_dir() and target == root):
                    raise _refuse(f, m.filename)
            z.extractall(root, members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError,
            EOFError) as err:
        raise DatasetError(f"cannot unpack {archive}: {err}") from None


def _extract_tar(archive: Path, root: Path, f: RemoteFile) -> None:
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                target = (root / m.name).resolve()
                if not (m.isfile() or m.isdir()) or not target.is_relative_to(root) or \
                        (m.isfile() and target == root):
                    raise _refuse(f, m.name)
            tar.extractall(root, members, **safe)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"cannot unpack {archive}: {err}") from None


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


def _too_large(f: RemoteFile, url: str) -> DatasetError:
    return DatasetError(f"{f.name} from {url} is larger than {MAX_UNKNOWN_SIZE} bytes, the limit for a file "
                        f"of unregistered size; not saved")


def _download(url: str, f: RemoteFile, target: Path, on_bytes: Callable[[int], None]) -> int:
    """Stream `url` to TARGET.part while hashing; rename to `target` only if the size (when
    registered) and every registered digest match. Returns the number of bytes.

    `on_bytes` gets the number of bytes of this file received so far.
    """
    part = target.with_name(target.name + ".part")
    hashers, size = _hashers(f), 0
    limit = f.size if f.size is not None else MAX_UNKNOWN_SIZE
    request = urllib.request.Request(url, headers={"User-Agent": "ncodec-datasets"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            announced = response.headers.get("Content-Length", "")
            if f.size is None and announced.isdigit() and int(announced) > limit:
                raise _too_large(f, url)
            with part.open("wb") as out:
                while size <= limit and (chunk := response.read(CHUNK)):
                    for _, h in hashers:
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
    if f.size is None and size > limit:
        part.unlink()
        raise _too_large(f, url)
    if (f.size is not None and size != f.size) or not _matches(f, hashers):
        part.unlink()
        expected = ", ".join(f"{a} {d}" for a, d in f.digests)
        if f.size is not None:
            expected += f" ({f.size} bytes)"
        got = f"{size} bytes" if size <= limit else f"more than {limit} bytes"
        raise DatasetError(f"checksum mismatch for {f.name} from {url}: expected {expected}, got "
                           f"{', '.join(f'{a} {h.hexdigest()}' for a, h in hashers)} ({got}); not saved")
    os.replace(part, target)
    return size


def fetch(name: str, dest: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Download and verify dataset `name` into DEST/NAME; return that folder.

    Files already present with the registered digests are not downloaded again. Progress reports
    bytes_total None when a file's size is unknown; bytes_done then counts what was seen.
    """
    dataset = get(name)
    folder = _folder(dataset, dest)
    files_done = bytes_done = 0
    total = dataset.size

    def report(current: int = 0) -> None:
        if progress:
            progress(files_done, len(dataset.files), bytes_done + current, total)

    for f in dataset.files:
        target = folder / f.name
        size = f.size or 0  # an unknown size counts as what is downloaded or found
        if not (f.extract and _extracted(folder, f)):
            if _verified(target, f):
                size = target.stat().st_size
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                size = _download(_url(f), f, target, report)
            if f.extract:
                _extract(target, folder, f)
        files_done += 1
        bytes_done += size
        report()
    return folder


def status(name: str, dest: str | Path | None = None) -> str:
    """fetched, partial or missing: whether DEST/NAME holds all, some or none of the files.

    Compares sizes only (cheap; existence where the size is unknown); an archive counts when its
    marker is there. `fetch` verifies the hashes.
    """
    dataset = get(name)
    folder = _folder(dataset, dest)
    present = sum(f.marker(folder).is_file() if f.extract else
                  (folder / f.name).is_file() and f.size in (None, (folder / f.name).stat().st_size)
                  for f in dataset.files)
    return "fetched" if present == len(dataset.files) else "partial" if present else "missing"
