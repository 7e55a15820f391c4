"""What only the embedded bus does: files, reopening, groups of processes, expiry, pruning."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bus.base import Message, Record
from bus.embedded import DB_NAME, EmbeddedBus
from bus.errors import CommitFailed
from caregraph.errors import BusError, BusUnavailable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def drain(bus: EmbeddedBus, group: str, topic: str) -> list[Message]:
    got: list[Message] = []
    with bus.subscribe(group, [topic]) as consumer:
        while batch := consumer.poll(timeout_s=0.2):
            got.extend(batch)
    return got


def test_unusable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(BusUnavailable) as caught:
        EmbeddedBus(blocker / "bus")
    assert "\n" not in str(caught.value) and "CAREGRAPH_DATA_DIR" in str(caught.value)


def test_messages_and_commits_survive_reopening(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path) as bus:
        bus.publish_many([Record("t", b"%d" % i, key=b"k") for i in range(5)])
        with bus.subscribe("g", ["t"]) as consumer:
            consumer.commit(consumer.poll(timeout_s=1.0, max_records=2))
    with EmbeddedBus(tmp_path) as bus:
        assert [m.value for m in drain(bus, "g", "t")] == [b"2", b"3", b"4"]
        assert len(drain(bus, "other", "t")) == 5


def test_headers_come_back_as_they_were_given(tmp_path: Path) -> None:
    """Written by orjson, or by json for what orjson refuses (a lone surrogate); one
    mapping shared by several records is written for each of them."""
    shared = {"source": "mllp:Hôpital", "trace-id": "t" * 32}
    odd = {"note": "half a pair \ud800", "empty": ""}
    with EmbeddedBus(tmp_path) as bus:
        records = [Record("t", b"%d" % i, b"k", shared) for i in range(2)]
        bus.publish_many([*records, Record("t", b"3", b"k", odd)])
        assert [dict(m.headers) for m in drain(bus, "g", "t")] == [shared, shared, odd]


def test_a_topic_keeps_the_partition_count_it_was_created_with(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path, partitions=2) as bus:
        bus.ensure_topics(["t"])
    with EmbeddedBus(tmp_path, partitions=5) as bus:
        bus.publish_many([Record("t", b"x", key=b"%d" % i) for i in range(50)])
        assert {m.partition for m in drain(bus, "g", "t")} == {0, 1}


def test_a_silent_member_loses_its_partitions_after_the_session_timeout(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path, partitions=4, session_timeout_s=0.6) as bus:
        bus.publish_many([Record("t", b"x", key=b"%d" % i) for i in range(40)])
        silent = bus.subscribe("g", ["t"])
        taken = silent.poll(timeout_s=1.0)
        assert len(silent.assignment()) == 4
        other = bus.subscribe("g", ["t"])
        other.poll(timeout_s=0.01)
        assert len(other.assignment()) == 2
        deadline = time.monotonic() + 5
        while len(other.assignment()) < 4:
            assert time.monotonic() < deadline, "the silent member was never expired"
            other.poll(timeout_s=0.1)
        with pytest.raises(CommitFailed):
            silent.commit(taken)
        other.close()
        silent.close()


def test_an_idle_consumer_reads_no_partition_until_another_connection_commits(
    tmp_path: Path,
) -> None:
    with EmbeddedBus(tmp_path, partitions=8) as bus:
        bus.ensure_topics(["t"])
        with bus.subscribe("g", ["t"]) as consumer:
            assert consumer.poll(timeout_s=0.05) == []  # joined; found nothing
            reads: list[str] = []
            consumer._conn.set_trace_callback(  # type: ignore[attr-defined]
                lambda sql: reads.append(sql) if "FROM messages" in sql else None
            )
            assert consumer.poll(timeout_s=0.3) == []
            assert reads == []  # polled for 0.3 s: one pragma a time, no partition read
            bus.publish("t", b"x", key=b"k")
            assert [m.value for m in consumer.poll(timeout_s=2.0)] == [b"x"]
            assert reads


def test_prune_drops_only_what_every_group_committed(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path, partitions=1) as bus:
        bus.publish_many([Record("t", b"%d" % i) for i in range(10)])
        with bus.subscribe("g", ["t"]) as consumer:
            consumer.commit(consumer.poll(timeout_s=1.0, max_records=6))
        assert bus.prune(keep_s=3600) == 0  # all too young
        assert bus.prune(keep_s=0) == 6
        assert [m.offset for m in drain(bus, "new", "t")] == [6, 7, 8, 9]
        bus.publish("t", b"10")
        assert [m.offset for m in drain(bus, "g", "t")][-1] == 10
        with bus.subscribe("slow", ["t"]) as slow:
            slow.commit(slow.poll(timeout_s=1.0, max_records=1))  # read 6, commits 7
        assert bus.prune(keep_s=0) == 0  # "g" is still at 6
        with bus.subscribe("g", ["t"]) as consumer:
            consumer.commit(consumer.poll(timeout_s=1.0))  # read 6..10, commits 11
        assert bus.prune(keep_s=0) == 1  # 6: below both; "slow" holds 7 onwards
        assert [m.offset for m in drain(bus, "new2", "t")] == [7, 8, 9, 10]


def test_processes_in_one_group_share_the_partitions(tmp_path: Path) -> None:
    data_dir = tmp_path / "bus"
    with EmbeddedBus(data_dir, partitions=6) as bus:
        bus.ensure_topics(["t"])
        outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.bus_consumer",
                    "--data-dir",
                    str(data_dir),
                    "--group",
                    "g",
                    "--topic",
                    "t",
                    "--out",
                    str(out),
                ],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            for out in outs
        ]
        try:
            members = sqlite3.connect(data_dir / DB_NAME)
            deadline = time.monotonic() + 30
            while members.execute("SELECT count(*) FROM members").fetchone()[0] < 2:
                assert time.monotonic() < deadline, "the consumers never joined"
                time.sleep(0.05)
            members.close()
            time.sleep(0.5)  # let both poll once with both members present
            values = [b"%d" % i for i in range(600)]
            bus.publish_many([Record("t", v, key=v) for v in values])
            deadline = time.monotonic() + 30
            while sum(len(o.read_bytes().splitlines()) for o in outs if o.exists()) < 600:
                assert time.monotonic() < deadline, "not everything was handled"
                time.sleep(0.05)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(15)
        assert [proc.returncode for proc in procs] == [0, 0]
        partition_of = {m.value: m.partition for m in drain(bus, "check", "t")}
    handled = [o.read_bytes().splitlines() for o in outs]
    assert sorted(handled[0] + handled[1]) == sorted(values)
    parts = [{partition_of[v] for v in h} for h in handled]
    assert parts[0] and parts[1] and not parts[0] & parts[1]


def test_concurrent_publishers_share_commits_and_keep_per_key_order(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path, partitions=3) as bus:
        bus.ensure_topics(["t"])

        def publish(thread: int) -> None:
            for i in range(100):
                bus.publish("t", b"%d" % i, key=b"thread-%d" % thread)

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = drain(bus, "g", "t")
    assert len(got) == 800
    for n in range(8):
        assert [int(m.value) for m in got if m.key == b"thread-%d" % n] == list(range(100))


def test_bad_topics_and_a_closed_bus_are_refused(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path)
    with pytest.raises(BusError, match="not a topic name"):
        bus.publish("", b"x")
    with pytest.raises(BusError, match="not a topic name"):
        bus.ensure_topics([""])
    bus.close()
    with pytest.raises(BusError, match="closed"):
        bus.publish("t", b"x")
    with pytest.raises(BusUnavailable):
        bus.ping()


def test_a_poll_is_bounded_in_bytes_but_returns_at_least_one_message(tmp_path: Path) -> None:
    with EmbeddedBus(tmp_path, partitions=1, max_poll_bytes=2500) as bus:
        bus.publish_many([Record("t", b"x" * 1024) for _ in range(5)] + [Record("t", b"y" * 9000)])
        with bus.subscribe("g", ["t"]) as consumer:
            sizes = [len(consumer.poll(timeout_s=1.0)) for _ in range(4)]
    assert sizes == [2, 2, 1, 1]  # 2 x 1 KB fit in 2,500 B; the 9 KB one comes alone


def test_partitions_with_a_backlog_take_turns_among_many_empty_ones(tmp_path: Path) -> None:
    """A consumer of many topics, two of them behind: each poll reads the other one."""
    topics = ["a", "b", *(f"e{i:02d}" for i in range(20))]
    with EmbeddedBus(tmp_path, partitions=1) as bus:
        bus.ensure_topics(topics)
        for topic in ("a", "b"):
            bus.publish_many([Record(topic, f"{topic}{i}".encode()) for i in range(100)])
        got: list[Message] = []
        with bus.subscribe("g", topics) as consumer:
            read = []
            for _ in range(8):
                batch = consumer.poll(timeout_s=1.0, max_records=10)
                read.append({m.topic for m in batch})
                got.extend(batch)
            assert read == [{"a"}, {"b"}] * 4 or read == [{"b"}, {"a"}] * 4
            while batch := consumer.poll(timeout_s=0.2, max_records=10):
                got.extend(batch)
    for topic in ("a", "b"):  # each once, in order
        assert [m.value for m in got if m.topic == topic] == [
            f"{topic}{i}".encode() for i in range(100)
        ]


def test_a_writer_takes_the_write_lock_soon_after_another_connection_frees_it(
    tmp_path: Path,
) -> None:
    """Another process's long transaction (a normalizer's batch) holds the write lock: the
    publish waits for it, then goes through; the busy timeout of other statements stays."""
    with EmbeddedBus(tmp_path) as bus:
        bus.ensure_topics(["t"])
        other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        released = threading.Event()

        def release() -> None:
            time.sleep(0.15)
            other.execute("COMMIT")
            released.set()

        threading.Thread(target=release).start()
        bus.publish_many([Record("t", b"after", b"k")])
        assert released.is_set()
        assert [m.value for m in drain(bus, "g", "t")] == [b"after"]
        assert bus._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        other.close()


def test_a_writer_gives_up_after_the_lock_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bus.embedded

    monkeypatch.setattr(bus.embedded, "_LOCK_WAIT_S", 0.2)
    with EmbeddedBus(tmp_path) as embedded:
        embedded.ensure_topics(["t"])
        other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(BusError, match="locked"):
            embedded.publish_many([Record("t", b"x", b"k")])
        assert 0.2 <= time.monotonic() - started < 10
        other.execute("ROLLBACK")
        other.close()
        embedded.publish_many([Record("t", b"x", b"k")])  # the next one goes through
