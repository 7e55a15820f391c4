"""The ACK cache: bounded, least recently used out first, optionally kept in a file."""

from __future__ import annotations

from pathlib import Path

from devices.mllp.dedup import AckCache


def test_bounded_lru() -> None:
    cache = AckCache(capacity=3)
    cache.put_many([("a", b"1"), ("b", b"2"), ("c", b"3")])
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.put_many([("d", b"4")])
    assert cache.get("b") is None and cache.get("a") == b"1" and len(cache) == 3


def test_file_backed_cache_survives_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "acks.sqlite3"
    cache = AckCache(capacity=100, path=path)
    for i in range(250):
        cache.put_many([(f"k{i}", f"ack{i}".encode())])
    cache.close()
    reopened = AckCache(capacity=100, path=path)
    assert reopened.get("k249") == b"ack249"
    assert reopened.get("k0") is None
    assert len(reopened) == 100
    reopened.close()


def test_the_file_is_pruned_in_steps_and_stays_near_the_capacity(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "acks.sqlite3"
    cache = AckCache(capacity=100, path=path)
    sizes = []
    for i in range(500):
        cache.put_many([(f"k{i}", b"ack")])
        sizes.append(sqlite3.connect(path).execute("SELECT count(*) FROM acks").fetchone()[0])
    cache.close()
    assert max(sizes) <= 100 + 10  # the capacity and a slack of a tenth
    assert sizes.count(max(sizes)) < 100  # pruned now and then, not after every put
    reopened = AckCache(capacity=100, path=path)
    assert len(reopened) == 100 and reopened.get("k499") == b"ack" and reopened.get("k399") is None
    reopened.close()


def test_backed_by_a_file_only_the_most_recent_stay_in_memory(tmp_path: Path) -> None:
    cache = AckCache(capacity=100, path=tmp_path / "acks.sqlite3", memory_capacity=10)
    for i in range(50):
        cache.put_many([(f"k{i}", f"ack{i}".encode())])
    assert len(cache) == 10  # k40..k49
    assert cache.get("k5") == b"ack5"  # from the file
    assert len(cache) == 10 and cache.get("k5") == b"ack5"  # now among the recent ones
    assert cache.get("nope") is None
    cache.close()
    reopened = AckCache(capacity=100, path=tmp_path / "acks.sqlite3", memory_capacity=10)
    assert len(reopened) == 10 and reopened.get("k0") == b"ack0"
    reopened.close()


def test_without_a_file_all_entries_stay_in_memory() -> None:
    cache = AckCache(capacity=100, memory_capacity=10)
    cache.put_many([(f"k{i}", b"ack") for i in range(50)])
    assert len(cache) == 50 and cache.get("k0") == b"ack"
