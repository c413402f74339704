"""Atomic file writes: a reader sees the old file or the complete new one, never half of either.

Also the one file checksum (`file_sha256`) that checkpoints and vocabularies record in their JSON,
so a torn or tampered weights file is refused instead of loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = ".tmp", mode: int | None = None) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    `suffix` matters to writers that pick a format by extension (e.g. ".mp4"); `mode` sets the
    permissions (temporary files are created owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
