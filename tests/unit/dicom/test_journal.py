"""The intake journal: one durable append per object, bulk checkpoints, crash recovery."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from devices.dicom.journal import MAGIC, Journal, records
from devices.dicom.storage import ObjectStore, StorageFailed, digest


def segments(root: Path) -> list[Path]:
    return sorted(p for p in (root / "journal").iterdir() if p.name.startswith("seg-"))


def test_a_journaled_object_is_written_in_place(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True)
    # a torn write left by a crash is found by the replay, which compares the bytes
    stored = store.put(b"complete")
    stored.path.write_bytes(b"comp")
    again = ObjectStore(tmp_path, journal=True)
    assert again.read(stored.sha256) == b"complete"
    again.close()
    store.journal = None
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_object_is_in_the_journal_until_its_checkpoint(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True)
    stored = store.put(b"header", b"data set")
    assert store.read(stored.sha256) == b"headerdata set"
    assert not store.put(b"header", b"data set").path.is_relative_to(tmp_path / "journal")
    (segment,) = segments(tmp_path)
    found = list(records(segment.read_bytes()))
    assert found == [(hashlib.sha256(b"headerdata set").hexdigest(), b"headerdata set")]
    store.close()  # the checkpoint: objects fsynced, the segment dropped
    assert segments(tmp_path) == []
    assert store.read(stored.sha256) == b"headerdata set"


def test_a_crash_before_the_checkpoint_is_repaired_from_the_journal(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True)
    lost = store.put(b"never reached the disk")
    torn = store.put(b"linked, data lost")
    kept = store.put(b"fine")
    # What a power loss can leave: a missing file, and a linked file without its data.
    lost.path.unlink()
    torn.path.write_bytes(b"")
    # ... and a record torn in the middle of its write, never acknowledged
    (segment,) = segments(tmp_path)
    with open(segment, "r+b") as fh:
        data = fh.read()
        pos = sum(44 + len(p) for _, p in records(data))
        fh.seek(pos)
        fh.write(MAGIC + (1000).to_bytes(4, "big") + b"\x01" * 20)
    # the process dies here: no close(); a new store opens the same directory
    again = ObjectStore(tmp_path, journal=True)
    assert again.read(lost.sha256) == b"never reached the disk"
    assert again.read(torn.sha256) == b"linked, data lost"
    assert again.read(kept.sha256) == b"fine"
    assert segments(tmp_path) == []  # replayed, then dropped
    again.close()
    store.journal = None  # the dead process's journal is gone with it


def test_records_stop_at_the_first_record_that_is_not_whole() -> None:
    good = MAGIC + (2).to_bytes(4, "big") + hashlib.sha256(b"ok").digest()
    import zlib

    good += zlib.crc32(b"ok").to_bytes(4, "big") + b"ok"
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    assert list(records(good + good)) == [(hashlib.sha256(b"ok").hexdigest(), b"ok")] * 2
    assert list(records(good + bytes(bad_crc) + good)) == [
        (hashlib.sha256(b"ok").hexdigest(), b"ok")
    ]
    assert list(records(good + bytes(100))) == [(hashlib.sha256(b"ok").hexdigest(), b"ok")]
    assert list(records(good[:-1])) == []


def test_segments_rotate_and_full_ones_are_checkpointed(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True, journal_bytes=1 << 16)
    assert store.journal is not None and store.journal.max_record == 1 << 14
    payloads = [os.urandom(10_000) for _ in range(40)]  # about 6 segments' worth
    stored = [store.put(p) for p in payloads]
    store.journal.wait_idle()
    # full ones were checkpointed in the background: the current one is left, and the
    # next one if it is prepared already
    assert 1 <= len(segments(tmp_path)) <= 2
    store.close()
    assert segments(tmp_path) == []
    assert [store.read(s.sha256) for s in stored] == payloads


def test_concurrent_puts_all_survive_a_crash(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True, journal_bytes=1 << 16)
    payloads = [os.urandom(5_000) for _ in range(60)]
    threads = [
        threading.Thread(target=lambda part=part: [store.put(p) for p in part])
        for part in (payloads[0::3], payloads[1::3], payloads[2::3])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.journal is not None
    store.journal.wait_idle()  # a crash kills these threads; here they must be done first
    # a crash that lost every object file not yet checkpointed
    for segment in segments(tmp_path):
        for sha256, _ in records(segment.read_bytes()):
            store.path_for(sha256).unlink(missing_ok=True)
    again = ObjectStore(tmp_path, journal=True)
    for p in payloads:
        assert again.read(digest(p)[0]) == p
    again.close()


def test_large_objects_bypass_the_journal(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True, journal_bytes=1 << 16)
    big = os.urandom((1 << 14) + 1)
    stored = store.put(big)
    assert store.read(stored.sha256) == big
    assert segments(tmp_path) == []  # nothing appended: written and fsynced directly
    store.close()


def test_a_failed_object_write_releases_its_segment(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, journal=True)
    final = store.path_for(hashlib.sha256(b"x").hexdigest())
    final.parent.rmdir()
    final.parent.write_bytes(b"")  # a file where its directory should be: cannot write
    with pytest.raises(StorageFailed):
        store.put(b"x")
    assert not final.exists()
    done = threading.Event()
    threading.Thread(target=lambda: (store.close(), done.set()), daemon=True).start()
    assert done.wait(10), "the checkpoint waited for an object that will never come"


def test_a_journal_refuses_a_tiny_segment(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Journal(tmp_path / "j", lambda sha, data: False, segment_bytes=1024)
