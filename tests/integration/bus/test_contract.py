"""The bus contract: every implementation behind ``bus.base.Bus`` passes these tests.

Kafka runs against a real Tansu broker (fixture ``kafka_bootstrap``); the embedded bus on a
fresh SQLite file; the in-memory fake too, so unit tests of other areas can trust it.
Names are unique per test because the broker is shared by the whole session.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.base import Bus, Consumer, Message, Record
from bus.deadletter import decode_deadletter
from bus.embedded import EmbeddedBus
from bus.kafka import KafkaBus
from bus.memory import MemoryBus
from bus.worker import RetryPolicy, WorkerStats, run_consumer

pytestmark = pytest.mark.integration

PARTITIONS = 4
WAIT_S = 30.0


@pytest.fixture(params=["memory", "embedded", "kafka"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bus]:
    made: Bus
    if request.param == "memory":
        made = MemoryBus(partitions=PARTITIONS)
    elif request.param == "embedded":
        made = EmbeddedBus(tmp_path, partitions=PARTITIONS, session_timeout_s=3.0)
    else:
        made = KafkaBus(request.getfixturevalue("kafka_bootstrap"), partitions=PARTITIONS)
    with made:
        yield made


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic(bus: Bus) -> str:
    name = unique("t")
    bus.ensure_topics([name])
    return name


def drain(consumer: Consumer, count: int, timeout_s: float = WAIT_S) -> list[Message]:
    """Poll until ``count`` messages arrived (or fail), then once more to catch extras."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"got {len(got)} of {count} messages"
        got.extend(consumer.poll(timeout_s=0.5))
    got.extend(consumer.poll(timeout_s=0.5))
    return got


def rest_after_join(consumer: Consumer, timeout_s: float = WAIT_S) -> list[Message]:
    """Everything a new member reads once it owns partitions (a Kafka join takes seconds)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        assert time.monotonic() < deadline, "the member never got partitions"
        got.extend(consumer.poll(timeout_s=0.5))
    got.extend(consumer.poll(timeout_s=1.0))
    return got


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Member(threading.Thread):
    """A group member polling in its own thread, as a real role does."""

    def __init__(self, bus: Bus, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = bus.subscribe(group, [topic])
        self.messages: list[Message] = []
        self.owned: frozenset[tuple[str, int]] = frozenset()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.consumer.poll(timeout_s=0.2)
                with self.lock:
                    self.messages.extend(batch)
                    self.owned = self.consumer.assignment()
                if batch:
                    self.consumer.commit(batch)
        finally:
            self.consumer.close()


def test_round_trip_keeps_key_value_and_headers(bus: Bus, topic: str) -> None:
    headers = {"source": "lab-1", "message-id": "m1", "trace-id": "abc"}
    bus.publish(topic, b"\x00\xffpayload", key=b"patient-1", headers=headers)
    with bus.subscribe(unique("g"), [topic]) as consumer:
        [message] = drain(consumer, 1)
    assert (message.topic, message.key, message.value) == (topic, b"patient-1", b"\x00\xffpayload")
    assert dict(message.headers) == headers
    assert 0 <= message.partition < PARTITIONS and message.offset == 0
    assert abs(message.timestamp_ms - time.time() * 1000) < 60_000


def test_per_key_order_holds(bus: Bus, topic: str) -> None:
    for start in range(0, 300, 100):
        bus.publish_many(
            [Record(topic, b"%d" % i, key=b"k%d" % (i % 7)) for i in range(start, start + 100)]
        )
    with bus.subscribe(unique("g"), [topic]) as consumer:
        got = drain(consumer, 300)
    assert sorted(int(m.value) for m in got) == list(range(300))
    for k in range(7):
        mine = [m for m in got if m.key == b"k%d" % k]
        assert len({m.partition for m in mine}) == 1
        values = [int(m.value) for m in mine]
        assert values == sorted(values)


def test_members_of_a_group_share_partitions(bus: Bus, topic: str) -> None:
    group = unique("g")
    a, b = Member(bus, group, topic), Member(bus, group, topic)
    a.start()
    b.start()
    try:
        every = frozenset((topic, p) for p in range(PARTITIONS))
        # Each member reports after its own poll, so wait for a consistent picture: both
        # have partitions, none has one twice, all are owned. It never comes if sharing
        # is broken, and the wait fails.
        wait_for(
            lambda: (
                bool(a.owned and b.owned) and not a.owned & b.owned and a.owned | b.owned == every
            ),
            "the two members to split the partitions between them",
        )
        bus.publish_many([Record(topic, b"%d" % i, key=b"%d" % i) for i in range(80)])
        wait_for(lambda: len(a.messages) + len(b.messages) >= 80, "all messages")
        # Look before stopping: a member leaving hands its partitions to the other.
        with a.lock, b.lock:
            seen_a, seen_b = list(a.messages), list(b.messages)
            owned_a, owned_b = a.owned, b.owned
    finally:
        a.stop.set()
        b.stop.set()
        a.join(10)
        b.join(10)
    assert seen_a and seen_b
    assert {(m.topic, m.partition) for m in seen_a} <= owned_a
    assert {(m.topic, m.partition) for m in seen_b} <= owned_b
    assert sorted(int(m.value) for m in seen_a + seen_b) == list(range(80))


def test_two_groups_each_see_everything(bus: Bus, topic: str) -> None:
    bus.publish_many([Record(topic, b"%d" % i, key=b"%d" % i) for i in range(50)])
    for group in (unique("g"), unique("h")):
        with bus.subscribe(group, [topic]) as consumer:
            assert sorted(int(m.value) for m in drain(consumer, 50)) == list(range(50))


def test_commit_then_resubscribe_resumes_after_the_commit(bus: Bus, topic: str) -> None:
    group = unique("g")
    bus.publish_many([Record(topic, b"%d" % i, key=b"one-key") for i in range(10)])
    with bus.subscribe(group, [topic]) as first:
        got = sorted(drain(first, 10), key=lambda m: m.offset)
        first.commit(got[:4])
    with bus.subscribe(group, [topic]) as second:
        again = drain(second, 6)
    assert [m.offset for m in again] == list(range(4, 10))
    assert [m.value for m in again] == [b"%d" % i for i in range(4, 10)]


def test_uncommitted_messages_are_redelivered(bus: Bus, topic: str) -> None:
    group = unique("g")
    bus.publish_many([Record(topic, b"%d" % i, key=b"%d" % i) for i in range(10)])
    with bus.subscribe(group, [topic]) as first:
        assert len(drain(first, 10)) == 10
    with bus.subscribe(group, [topic]) as second:
        assert sorted(int(m.value) for m in drain(second, 10)) == list(range(10))


def test_ensure_topics_is_idempotent(bus: Bus) -> None:
    names = [unique("t"), unique("t")]
    bus.ensure_topics(names)
    bus.ensure_topics(names)
    bus.ensure_topics(names[:1])
    bus.publish(names[1], b"x", key=b"k")
    with bus.subscribe(unique("g"), names) as consumer:
        assert [m.value for m in drain(consumer, 1)] == [b"x"]
    bus.ping()


def test_deadletter_after_bounded_retries_and_the_stream_goes_on(bus: Bus, topic: str) -> None:
    group, deadletter = unique("g"), unique("dead")
    bus.ensure_topics([deadletter])
    bus.publish_many([Record(topic, b"%d" % i, key=b"patient") for i in range(20)])
    handled: list[bytes] = []
    attempts: list[int] = []

    def handler(batch: list[Message]) -> None:
        if any(m.value == b"5" for m in batch):
            attempts.append(len(batch))
            raise ValueError("cannot map message 5")
        handled.extend(m.value for m in batch)

    stop, stats = threading.Event(), WorkerStats()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, group, [topic], handler),
        kwargs={
            "stop": stop,
            "retry": RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05),
            "deadletter_topic": deadletter,
            "stats": stats,
        },
    )
    worker.start()
    try:
        wait_for(lambda: len(handled) == 19 and stats.deadlettered == 1, "the stream to pass")
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive()
    assert sorted(int(v) for v in handled) == [i for i in range(20) if i != 5]
    # 3 attempts with the batch it arrived in, one with each ever smaller half holding
    # it (the batch is split in halves after its attempts), then 3 on its own: bounded.
    first = attempts[0]
    halves = attempts[3:-3]
    assert attempts[:3] == [first] * 3 and attempts[-3:] == [1, 1, 1]
    assert all(0 < b <= (a + 1) // 2 for a, b in zip([first, *halves], halves, strict=False))
    assert len(halves) <= max(0, math.ceil(math.log2(first)) - 1)
    with bus.subscribe(unique("ops"), [deadletter]) as reader:
        [record] = drain(reader, 1)
    letter = decode_deadletter(record.value)
    assert (letter.topic, letter.value, letter.group) == (topic, b"5", group)
    assert letter.error == "ValueError: cannot map message 5" and letter.attempts == 3
    # Everything was committed: the group has nothing left to read.
    with bus.subscribe(group, [topic]) as again:
        assert rest_after_join(again) == []
