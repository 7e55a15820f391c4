"""The intake journal: one durable write per stored instance instead of three.

Making a new file durable costs an fsync of the file and one of its directory, two journal
commits of the file system (about 8-11 ms on this machine kind's shared disk, see
``bench/dicom.py``), for every instance. The journal makes an instance durable with one
``fdatasync`` of a segment file that was zero-filled in advance: appending inside its
existing size changes no metadata, so the flush writes the data and nothing else (about
3-5 ms here). The object file is then written without fsync; it becomes durable in bulk
when its segment is checkpointed, and until then the journal holds its bytes.

Segments: ``journal/seg-<n>`` of ``segment_bytes`` (8 MiB) each, the next one zero-filled
by a background thread once the current one is half full. A full segment is checkpointed in the
background: each object it names is fsynced, then each directory, then the segment is
deleted. ``close`` checkpoints the current one.

Record: ``CGJ1`` | length (4 bytes, big endian) | SHA-256 (32 bytes) | CRC-32 of the
payload (4 bytes) | payload. Recovery (``replay``, run when the store opens) reads each
segment left by a crash up to the first record that is not whole, rewrites (durably) each
object whose file is missing or differs from its record, and deletes the segment: a crash
at any point loses nothing that was acknowledged, and what was not acknowledged is at most
written again.

Instances larger than a quarter of a segment bypass the journal (the file and its
directory are fsynced as before): they are rare and their own write dominates.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"CGJ1"
_HEAD = struct.Struct(">4sI32sI")
SEGMENT_BYTES = 8 << 20
_ZEROS = bytes(1 << 20)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare(path: Path, size: int) -> int:
    """A zero-filled, fsynced segment file of ``size`` bytes; returns its open fd."""
    tmp = path.with_suffix(".new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < size:
            written += os.write(fd, _ZEROS[: min(len(_ZEROS), size - written)])
        os.fsync(fd)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def records(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(sha256 hex, payload) of each whole, intact record, in order, up to the first one
    that is not (a torn write at a crash, or the zeros after the last record)."""
    pos = 0
    while pos + _HEAD.size <= len(data):
        magic, length, digest, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if magic != MAGIC or end > len(data):
            return
        payload = data[pos + _HEAD.size : end]
        if zlib.crc32(payload) != crc or hashlib.sha256(payload).digest() != digest:
            return
        yield digest.hex(), payload
        pos = end


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    pos: int = 0
    objects: list[Path] = field(default_factory=list)
    pending: int = 0
    """Records appended whose object file is not written yet: a checkpoint waits for 0."""
    done: threading.Condition = field(default_factory=threading.Condition)


class Journal:
    """Append-and-fdatasync records into zero-filled segments (module docstring).

    ``write_object(sha256, payload)`` writes an object durably and says whether it had to
    (False: it was there, whole); recovery calls it for what a crash left only in the
    journal. Thread-safe. Nothing is written until the first ``append``.
    """

    def __init__(
        self,
        directory: Path,
        write_object: Callable[[str, bytes], bool],
        *,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        if segment_bytes < 1 << 16:
            raise ValueError("a journal segment must hold at least 64 KiB")
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_record = segment_bytes // 4
        self._write_object = write_object
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self._number = 0
        self._next: threading.Thread | None = None
        self._next_fd: int | None = None
        self._checkpoints: list[threading.Thread] = []
        self.failed_checkpoints = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.replay()

    # -- recovery ------------------------------------------------------------------------

    def replay(self) -> int:
        """Restore what a crash left only in the journal; returns how many objects were
        rewritten. Deletes the segments once their objects are durable."""
        rewritten = 0
        for stray in self.directory.glob("seg-*.new"):
            stray.unlink(missing_ok=True)
        for path in sorted(self.directory.glob("seg-*")):
            data = path.read_bytes()
            for sha256, payload in records(data):
                rewritten += self._write_object(sha256, payload)
            path.unlink()
        fsync_dir(self.directory)
        if rewritten:
            log.warning("journal: restored %d objects after a crash", rewritten)
        return rewritten

    # -- segments ------------------------------------------------------------------------

    def _path(self, number: int) -> Path:
        return self.directory / f"seg-{number:08d}"

    def _prepare_next(self) -> None:
        """Zero-fill the next segment in the background (called with the lock held)."""
        number = self._number + 1

        def work() -> None:
            try:
                self._next_fd = _prepare(self._path(number), self.segment_bytes)
            except OSError:
                log.exception("journal: cannot prepare segment %d", number)

        self._next_fd = None
        self._next = threading.Thread(target=work, name="dicom-journal-prepare", daemon=True)
        self._next.start()

    def _rotate(self) -> _Segment:
        """Switch to the next segment and checkpoint the full one in the background.
        Called with the lock held."""
        full = self._current
        self._number += 1
        fd: int | None = None
        if self._next is not None:
            self._next.join()
            self._next = None
            fd, self._next_fd = self._next_fd, None
        if fd is None:
            fd = _prepare(self._path(self._number), self.segment_bytes)
        self._current = _Segment(self._number, self._path(self._number), fd)
        if full is not None:
            self._checkpoints = [t for t in self._checkpoints if t.is_alive()]
            thread = threading.Thread(
                target=self._checkpoint, args=(full,), name="dicom-journal-checkpoint"
            )
            thread.daemon = True
            self._checkpoints.append(thread)
            thread.start()
        return self._current

    def _checkpoint(self, segment: _Segment) -> None:
        """Make the segment's objects durable, then drop the segment."""
        with segment.done:
            segment.done.wait_for(lambda: segment.pending == 0)
        try:
            os.close(segment.fd)
            directories = set()
            for path in segment.objects:
                _fsync_path(path)
                directories.add(path.parent)
            for directory in directories:
                fsync_dir(directory)
            segment.path.unlink()
            fsync_dir(self.directory)
        except OSError:
            # The segment stays; the next start replays it, so nothing is lost.
            self.failed_checkpoints += 1
            log.exception("journal: checkpoint of %s failed", segment.path.name)

    # -- writing -------------------------------------------------------------------------

    def append(self, sha256: str, parts: Sequence[bytes | bytearray], size: int) -> _Segment:
        """Make ``parts`` (whose SHA-256 is ``sha256``) durable in the journal; the caller
        then writes the object and calls ``written`` (or ``abandon``) with the segment
        returned.

        Raises ``OSError`` if it cannot; ``ValueError`` if the record is too large (the
        caller writes such objects durably itself).
        """
        if size > self.max_record:
            raise ValueError(f"{size} bytes is more than a journal record takes")
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        head = _HEAD.pack(MAGIC, size, bytes.fromhex(sha256), crc)
        with self._lock:
            segment = self._current
            if segment is None or segment.pos + _HEAD.size + size > self.segment_bytes:
                segment = self._rotate()
            written = os.pwritev(segment.fd, [head, *parts], segment.pos)
            if written != _HEAD.size + size:
                raise OSError(f"short journal write: {written} of {_HEAD.size + size}")
            os.fdatasync(segment.fd)
            segment.pos += written
            with segment.done:
                segment.pending += 1
            if self._next is None and segment.pos > self.segment_bytes // 2:
                self._prepare_next()
            return segment

    def written(self, segment: _Segment, path: Path) -> None:
        """The object of an ``append`` is in place at ``path`` (not yet fsynced): the
        checkpoint of its segment will make it durable."""
        with segment.done:
            segment.objects.append(path)
            segment.pending -= 1
            segment.done.notify_all()

    def abandon(self, segment: _Segment) -> None:
        """The object of an ``append`` could not be written (its record stays, and a
        restart writes it: harmless, objects are content-addressed)."""
        with segment.done:
            segment.pending -= 1
            segment.done.notify_all()

    def wait_idle(self) -> None:
        """Wait for the background work started so far (segment preparation, checkpoints
        of full segments); the current segment stays as it is."""
        with self._lock:
            if self._next is not None:
                self._next.join()
            for thread in self._checkpoints:
                thread.join()

    def close(self) -> None:
        """Checkpoint the current segment; wait for the background work."""
        with self._lock:
            if self._next is not None:
                self._next.join()
                self._next = None
            if self._next_fd is not None:
                os.close(self._next_fd)
                self._path(self._number + 1).unlink(missing_ok=True)
                self._next_fd = None
            for thread in self._checkpoints:
                thread.join()
            if self._current is not None:
                self._checkpoint(self._current)
                self._current = None


__all__ = ["MAGIC", "SEGMENT_BYTES", "Journal", "fsync_dir", "records"]
