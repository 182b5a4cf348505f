"""Blob storage for image files and feature pyramids, behind a small interface.

``BlobStore`` is what the app needs: put / get / exists / delete of bytes under a key, and,
where the store is a local folder, the file's path (so that Flask can send it with ranges and
ETags). ``LocalBlobStore`` (the default, ``DATA_DIR/blobs``) is the only implementation today;
an object store (S3 and the like) can implement the same protocol later.

Keys are relative, '/'-separated paths of safe components, e.g.
``images/3/<sha256>.png`` or ``pyramids/<model cache key>/<sha256>.ifpyr``; anything else is
refused (``ValueError``), so a key can never leave the store.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not parts or any(not _COMPONENT.fullmatch(p) or ".." in p for p in parts):
        raise ValueError(f"bad blob key {key!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (readers see the old or the new bytes)."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``KeyError`` if there are none."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, when the store has one (else None)."""


class LocalBlobStore:
    """Blobs as files under ``root`` (written to a temporary file, fsynced, then renamed)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    part (temporary file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
