"""Write-then-rename output files: no partial file is ever visible under the target's name, and
the finished file gets the permissions a plain open() would give it (0666 less the umask)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(target: Path) -> str:
    """A new empty temp file in the target's folder, with the target's suffix (format sniffing)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    return tmp


def publish(tmp: str, target: Path) -> None:
    """Give the finished temp file umask permissions and rename it onto the target."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


@contextmanager
def atomic_output(target: str | Path) -> Iterator[str]:
    """Yield a temp path beside `target`; it becomes `target` only if the body succeeds."""
    target = Path(target)
    tmp = temp_beside(target)
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
