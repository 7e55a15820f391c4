from __future__ import annotations

import threading

import pytest

from bus.base import Record
from bus.errors import CommitFailed
from bus.memory import MemoryBus
from caregraph.errors import BusError, BusUnavailable


def test_round_trip_keeps_key_value_headers() -> None:
    bus = MemoryBus(partitions=3)
    bus.publish("t", b"v", key=b"k", headers={"source": "x"})
    with bus.subscribe("g", ["t"]) as consumer:
        [m] = consumer.poll(timeout_s=0.1)
    assert (m.topic, m.key, m.value, dict(m.headers)) == ("t", b"k", b"v", {"source": "x"})


def test_per_key_order_and_fair_batches() -> None:
    bus = MemoryBus(partitions=4)
    bus.publish_many([Record("t", str(i).encode(), key=b"k%d" % (i % 5)) for i in range(100)])
    consumer = bus.subscribe("g", ["t"])
    got = []
    while batch := consumer.poll(timeout_s=0.01, max_records=7):
        assert len(batch) <= 7
        got.extend(batch)
    assert len(got) == 100
    for k in range(5):
        values = [int(m.value) for m in got if m.key == b"k%d" % k]
        assert values == sorted(values)


def test_commit_resume_and_redelivery_of_uncommitted() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish_many([Record("t", b"%d" % i) for i in range(10)])
    first = bus.subscribe("g", ["t"])
    batch = first.poll(timeout_s=0.01, max_records=4)
    first.commit(batch)
    first.poll(timeout_s=0.01, max_records=4)  # read, never committed
    first.close()
    second = bus.subscribe("g", ["t"])
    assert [m.offset for m in second.poll(timeout_s=0.01)] == list(range(4, 10))
    assert bus.committed("g") == {("t", 0): 4}


def test_members_share_partitions_and_groups_see_everything() -> None:
    bus = MemoryBus(partitions=6)
    a, b = bus.subscribe("g", ["t"]), bus.subscribe("g", ["t"])
    other = bus.subscribe("h", ["t"])
    bus.publish_many([Record("t", b"x", key=b"%d" % i) for i in range(60)])
    got_a, got_b = a.poll(timeout_s=0.01), b.poll(timeout_s=0.01)
    assert got_a and got_b
    assert {m.partition for m in got_a}.isdisjoint({m.partition for m in got_b})
    assert len(got_a) + len(got_b) == 60
    assert len(other.poll(timeout_s=0.01)) == 60


def test_commit_after_rebalance_fails_and_new_owner_redelivers() -> None:
    bus = MemoryBus(partitions=2)
    bus.publish_many([Record("t", b"x", key=b"%d" % i) for i in range(20)])
    a = bus.subscribe("g", ["t"])
    batch = a.poll(timeout_s=0.01)
    b = bus.subscribe("g", ["t"])
    with pytest.raises(CommitFailed):
        a.commit(batch)
    assert b.poll(timeout_s=0.01)


def test_poll_wakes_on_publish_from_another_thread() -> None:
    bus = MemoryBus()
    consumer = bus.subscribe("g", ["t"])
    timer = threading.Timer(0.05, lambda: bus.publish("t", b"late"))
    timer.start()
    assert [m.value for m in consumer.poll(timeout_s=5)] == [b"late"]
    timer.join()


def test_closed_bus_refuses() -> None:
    bus = MemoryBus()
    bus.ping()
    bus.close()
    with pytest.raises(BusUnavailable):
        bus.ping()
    with pytest.raises(BusError):
        bus.publish("t", b"x")
