"""Content-addressed, durable file storage for received instances.

A file's name is the SHA-256 of its bytes (``objects/ab/abcd...``; 256 directories, so
after warm-up no store creates a directory); nothing from the
data set ever becomes part of a path, so ``../`` in a UID or PatientID cannot escape the
data dir, and the same file sent twice is stored once.

Durability: bytes go to a fresh temporary file in ``tmp/`` (same file system), which is
fsynced and then hard-linked into place, and the directory is fsynced: after ``put``
returns the file survives a crash, and a crash before that leaves at most a stray file in
``tmp/`` (swept by the next start), never a half-written object. With ``fsync=False`` (as
``EmbeddedBus(fsync=False)``) a stored file survives the death of the process but not a
power loss; the rename still keeps half-written files out of ``objects/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devices.dicom.status import GatewayError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class StorageFailed(GatewayError):
    """The instance could not be made durable (disk full, permissions, I/O error)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """Where an instance's bytes are, and whether they were there already."""

    sha256: str
    size: int
    path: Path
    existed: bool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObjectStore:
    """Files by content hash under ``root``; safe to use from many threads."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._objects = root / "objects"
        self._tmp = root / "tmp"
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            # All 256 fan-out directories up front, made durable once: a store then never
            # creates a directory (and never pays for the extra fsyncs) on the hot path.
            missing = [
                d for d in (self._objects / f"{i:02x}" for i in range(256)) if not d.is_dir()
            ]
            for directory in missing:
                directory.mkdir()
            if missing:
                _fsync_dir(self._objects)
            for stray in self._tmp.iterdir():  # left by a crash mid-write
                stray.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageFailed(f"cannot prepare {root}: {exc}") from exc

    def path_for(self, sha256: str) -> Path:
        """The path of an object; ``ValueError`` unless ``sha256`` is 64 lowercase hex."""
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return self._objects / sha256[:2] / sha256

    def put(self, *parts: bytes | bytearray) -> StoredObject:
        """Store the concatenation of ``parts`` durably; raises ``StorageFailed`` (and
        leaves nothing behind). Parts, so a large data set is never copied just to put a
        file header in front of it."""
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        sha256 = digest.hexdigest()
        size = sum(len(part) for part in parts)
        final = self.path_for(sha256)
        if final.exists():
            return StoredObject(sha256, size, final, existed=True)
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="in-")
            with os.fdopen(fd, "wb") as fh:
                for part in parts:
                    fh.write(part)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            try:
                os.link(tmp_name, final)
                existed = False
            except FileExistsError:  # another association stored the same bytes
                existed = True
            if self.fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            raise StorageFailed(f"cannot store object {sha256[:12]}: {exc}") from exc
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
        return StoredObject(sha256, size, final, existed=existed)

    def read(self, sha256: str) -> bytes:
        """The bytes of a stored object; ``FileNotFoundError`` if there is none."""
        return self.path_for(sha256).read_bytes()
