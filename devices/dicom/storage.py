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

With ``journal=True`` (the gateway's default) an instance is made durable by one append to
the intake journal (``devices.dicom.journal``) instead: the object file is then written
straight to its name without its two fsyncs, which the journal's checkpoint does later in
bulk; a crash in between (a missing or torn file) is repaired from the journal when the
store opens again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devices.dicom.journal import Journal, fsync_dir
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


_fsync_dir = fsync_dir


def digest(*parts: bytes | bytearray) -> tuple[str, int]:
    """(SHA-256 hex, size) of the concatenation of ``parts``: an object's name and size."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest(), sum(len(part) for part in parts)


class ObjectStore:
    """Files by content hash under ``root``; safe to use from many threads."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        journal: bool = False,
        journal_bytes: int | None = None,
    ) -> None:
        self.root = root
        self.fsync = fsync
        self.journal: Journal | None = None
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
            if journal and fsync:
                kwargs = {"segment_bytes": journal_bytes} if journal_bytes else {}
                self.journal = Journal(root / "journal", self._restore, **kwargs)
        except OSError as exc:
            raise StorageFailed(f"cannot prepare {root}: {exc}") from exc

    def _restore(self, sha256: str, payload: bytes) -> bool:
        """Recovery: write an object from the journal unless it is there, whole."""
        final = self.path_for(sha256)
        try:
            if final.stat().st_size == len(payload) and final.read_bytes() == payload:
                return False
            final.unlink()  # linked before a crash, its data never reached the disk
        except FileNotFoundError:
            pass
        self._write(sha256, (payload,), durable=True)
        return True

    def close(self) -> None:
        """Make everything durable that the journal still holds (checkpoint)."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def path_for(self, sha256: str) -> Path:
        """The path of an object; ``ValueError`` unless ``sha256`` is 64 lowercase hex."""
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return self._objects / sha256[:2] / sha256

    def put(self, *parts: bytes | bytearray, known: tuple[str, int] | None = None) -> StoredObject:
        """Store the concatenation of ``parts`` durably; raises ``StorageFailed`` (and
        leaves nothing behind). Parts, so a large data set is never copied just to put a
        file header in front of it. ``known`` is their ``digest``, when the caller has it."""
        sha256, size = known if known is not None else digest(*parts)
        final = self.path_for(sha256)
        if final.exists():
            return StoredObject(sha256, size, final, existed=True)
        journal = self.journal
        if journal is None or size > journal.max_record:
            existed = self._write(sha256, parts, durable=self.fsync)
            return StoredObject(sha256, size, final, existed=existed)
        try:
            segment = journal.append(sha256, parts, size)
        except OSError as exc:
            raise StorageFailed(f"cannot journal object {sha256[:12]}: {exc}") from exc
        try:
            existed = self._write_in_place(final, parts)
        except BaseException:
            journal.abandon(segment)
            raise
        journal.written(segment, final)
        return StoredObject(sha256, size, final, existed=existed)

    def _write_in_place(self, final: Path, parts: tuple[bytes | bytearray, ...]) -> bool:
        """Write a journaled object straight to its name (no temporary file, no link): a
        crash mid-write leaves a torn file, which the journal's replay finds (it compares
        the bytes) and rewrites; nothing reads an object before ``put`` returns (C-GET and
        C-MOVE go through the index, written after). True if it was there already."""
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another association is storing the same bytes
            return True
        except OSError as exc:
            raise StorageFailed(f"cannot store object {final.name[:12]}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                for part in parts:
                    fh.write(part)
        except OSError as exc:
            final.unlink(missing_ok=True)
            raise StorageFailed(f"cannot store object {final.name[:12]}: {exc}") from exc
        return False

    def _write(self, sha256: str, parts: tuple[bytes | bytearray, ...], *, durable: bool) -> bool:
        """Write an object through ``tmp/``; True if it was there already."""
        final = self.path_for(sha256)
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="in-")
            with os.fdopen(fd, "wb") as fh:
                for part in parts:
                    fh.write(part)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            try:
                os.link(tmp_name, final)
                existed = False
            except FileExistsError:  # another association stored the same bytes
                existed = True
            if durable:
                _fsync_dir(final.parent)
        except OSError as exc:
            raise StorageFailed(f"cannot store object {sha256[:12]}: {exc}") from exc
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
        return existed

    def read(self, sha256: str) -> bytes:
        """The bytes of a stored object; ``FileNotFoundError`` if there is none."""
        return self.path_for(sha256).read_bytes()
