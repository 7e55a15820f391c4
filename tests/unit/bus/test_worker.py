from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from bus.base import Message, Record
from bus.deadletter import decode_deadletter
from bus.headers import MESSAGE_ID, TRACE_ID, derive_trace_id
from bus.memory import MemoryBus
from bus.topics import DEADLETTER
from bus.worker import Handler, RetryPolicy, WorkerStats, run_consumer
from caregraph.errors import StoreUnavailable

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.004)


def run_until(
    bus: MemoryBus,
    handler: Handler,
    done: Callable[[], bool],
    retry: RetryPolicy = FAST,
    *,
    feed: Callable[[], None] | None = None,
    **options: float,
) -> WorkerStats:
    """Run a consumer until ``done()``; ``feed`` runs once the consumer has started, and
    ``options`` override ``run_consumer``'s keyword arguments."""
    stop = threading.Event()
    stats = WorkerStats()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "g", ["t"], handler),
        kwargs={
            "stop": stop,
            "retry": retry,
            "batch_size": 50,
            "poll_timeout_s": 0.01,
            "stats": stats,
            **options,
        },
    )
    worker.start()
    if feed is not None:
        feed()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    worker.join(5)
    assert not worker.is_alive()
    assert done(), "worker did not get there in time"
    return stats


def test_retry_policy_backs_off_exponentially_with_a_cap() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.05, max_delay_s=0.3)
    assert [policy.delay(n) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_handles_everything_and_commits() -> None:
    bus = MemoryBus(partitions=2)
    bus.publish_many([Record("t", b"%d" % i, key=b"%d" % i) for i in range(120)])
    seen: list[Message] = []
    stats = run_until(bus, seen.extend, lambda: sum(bus.committed("g").values()) == 120)
    assert sorted(int(m.value) for m in seen) == list(range(120))
    assert stats.handled == 120 and stats.deadlettered == 0


def test_poison_message_goes_to_deadletter_and_the_rest_flows() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish_many(
        [Record("t", b"%d" % i, key=b"k", headers={"trace-id": f"t{i}"}) for i in range(100)]
    )
    handled: list[bytes] = []

    def handler(batch: list[Message]) -> None:
        if any(m.value == b"42" for m in batch):
            raise ValueError("cannot map \n value 42")
        handled.extend(m.value for m in batch)

    stats = run_until(bus, handler, lambda: bus.committed("g").get(("t", 0)) == 100)
    assert sorted(int(v) for v in handled) == [i for i in range(100) if i != 42]
    [dead] = bus.snapshot(DEADLETTER)
    letter = decode_deadletter(dead.value)
    assert (letter.topic, letter.partition, letter.offset, letter.value) == ("t", 0, 42, b"42")
    assert letter.key == b"k" and letter.headers["trace-id"] == "t42"
    assert letter.error == "ValueError: cannot map value 42"
    assert letter.group == "g" and letter.attempts == FAST.max_attempts
    assert stats.deadlettered == 1 and stats.last_error == letter.error


def test_outage_is_retried_past_max_attempts_not_deadlettered() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish("t", b"x")
    calls = []

    def handler(batch: list[Message]) -> None:
        calls.append(batch)
        if len(calls) <= FAST.max_attempts * 2:
            raise StoreUnavailable("database down")

    stats = run_until(bus, handler, lambda: bus.committed("g").get(("t", 0)) == 1)
    assert len(calls) == FAST.max_attempts * 2 + 1
    assert bus.snapshot(DEADLETTER) == [] and stats.handled == 1


def test_stop_during_backoff_leaves_the_batch_uncommitted() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish("t", b"x")
    calls = []

    def handler(batch: list[Message]) -> None:
        calls.append(batch)
        raise StoreUnavailable("down")

    slow = RetryPolicy(max_attempts=3, base_delay_s=5.0, max_delay_s=5.0)
    run_until(bus, handler, lambda: len(calls) >= 1, retry=slow)
    assert bus.committed("g") == {} and bus.snapshot(DEADLETTER) == []


def test_deadletters_go_to_the_configured_topic() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish("t", b"bad")

    def handler(batch: list[Message]) -> None:
        raise ValueError("no")

    stop = threading.Event()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "g", ["t"], handler),
        kwargs={"stop": stop, "retry": FAST, "poll_timeout_s": 0.01, "deadletter_topic": "dl.x"},
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not bus.snapshot("dl.x") and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    worker.join(5)
    assert [decode_deadletter(m.value).value for m in bus.snapshot("dl.x")] == [b"bad"]
    assert bus.snapshot(DEADLETTER) == []


def test_a_commit_refused_after_a_rebalance_is_counted_and_the_loop_goes_on() -> None:
    bus = MemoryBus(partitions=2)
    bus.publish_many([Record("t", b"%d" % i, key=b"%d" % i) for i in range(10)])
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def handler(batch: list[Message]) -> None:
        calls.append(len(batch))
        entered.set()
        release.wait(5)

    stop, stats = threading.Event(), WorkerStats()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "g", ["t"], handler),
        kwargs={"stop": stop, "retry": FAST, "poll_timeout_s": 0.01, "stats": stats},
    )
    worker.start()
    assert entered.wait(5)
    newcomer = bus.subscribe("g", ["t"])  # takes a partition while the batch is in hand
    release.set()
    deadline = time.monotonic() + 10
    while stats.commit_failures == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    stop.set()
    worker.join(5)
    assert not worker.is_alive()
    assert stats.commit_failures == 1
    assert len(newcomer.poll(timeout_s=0.01)) > 0  # the newcomer gets its share again


def test_every_message_reaches_the_handler_traced_and_keeps_its_trace_on_retry() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish_many(
        [
            Record("t", b"carried", b"k", {TRACE_ID: "c" * 32}),
            Record("t", b"bare", b"k", {MESSAGE_ID: "m-1"}),
        ]
    )
    seen: list[dict[bytes, str]] = []

    def flaky(batch: list[Message]) -> None:
        seen.append({m.value: m.headers[TRACE_ID] for m in batch})
        if len(seen) == 1:
            raise RuntimeError("once")

    run_until(bus, flaky, lambda: sum(bus.committed("g").values()) == 2)
    expected = {b"carried": "c" * 32, b"bare": derive_trace_id("t", "m-1", b"bare")}
    assert seen[0] == expected
    assert seen[1] == expected  # the retried delivery carries the same trace ids


def test_linger_gathers_what_trickles_in_into_one_batch_and_commits_it_all() -> None:
    bus = MemoryBus(partitions=2)
    batches: list[list[Message]] = []

    def trickle() -> None:
        for i in range(5):  # one message every 20 ms: well inside one linger
            bus.publish_many([Record("t", b"%d" % i, key=b"%d" % i)])
            time.sleep(0.02)

    run_until(
        bus,
        batches.append,
        lambda: sum(bus.committed("g").values()) == 5,
        feed=trickle,
        linger_s=2.0,
    )
    assert sorted(int(m.value) for b in batches for m in b) == list(range(5))
    assert len(batches) == 1


def test_linger_ends_when_the_batch_is_full() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish_many([Record("t", b"%d" % i, key=b"k") for i in range(30)])
    batches: list[list[Message]] = []
    started = time.monotonic()
    run_until(
        bus,
        batches.append,
        lambda: sum(bus.committed("g").values()) == 30,
        batch_size=10,
        linger_s=30.0,
    )
    assert [len(b) for b in batches] == [10, 10, 10]
    assert time.monotonic() - started < 10  # never waited out the 30 s linger


def test_a_failed_batch_is_split_in_halves_not_tried_one_message_at_a_time() -> None:
    bus = MemoryBus(partitions=1)
    bus.publish_many([Record("t", b"%d" % i, key=b"k") for i in range(1024)])
    calls: list[int] = []
    handled: list[bytes] = []

    def handler(batch: list[Message]) -> None:
        calls.append(len(batch))
        if any(m.value in (b"100", b"900") for m in batch):
            raise ValueError("poison")
        handled.extend(m.value for m in batch)

    stats = run_until(
        bus, handler, lambda: bus.committed("g").get(("t", 0)) == 1024, batch_size=1024
    )
    assert [int(v) for v in handled] == [i for i in range(1024) if i not in (100, 900)]
    assert sorted(
        letter.offset
        for letter in map(decode_deadletter, (d.value for d in bus.snapshot(DEADLETTER)))
    ) == [100, 900]
    assert stats.handled == 1022 and stats.deadlettered == 2
    # the batch's tries; then, for each poison, its half (512), both halves of each part
    # of it that failed (256 down to 1: nine levels), and itself alone with the policy's
    # tries: 45 calls for 1,024 messages, not one per message
    assert len(calls) == FAST.max_attempts + 2 * (1 + 2 * 9 + FAST.max_attempts - 1)
