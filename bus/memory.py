"""An in-process bus for unit tests: Kafka's semantics, none of its durability.

Topics have partitions, keys pick partitions (per-key order holds), groups share partitions
among their members and keep committed offsets, uncommitted messages are redelivered to the
next owner of a partition. Everything lives in one Python object guarded by one lock, so it
is thread-safe but dies with the process; use ``EmbeddedBus`` when that matters.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bus.base import Bus, Consumer, Message, Record
from bus.errors import CommitFailed
from bus.partitioning import TopicPartition, assign, partition_for
from caregraph.errors import BusError, BusUnavailable


@dataclass
class _Group:
    subscriptions: dict[str, frozenset[str]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    assignment: dict[str, frozenset[TopicPartition]] = field(default_factory=dict)
    generation: int = 0


class MemoryBus(Bus):
    """A fake bus in memory. ``partitions`` is the count for topics created implicitly.

    Publishing to or subscribing to a topic that does not exist creates it, as Kafka does
    with ``auto.create.topics.enable``. ``snapshot(topic)`` shows everything published, for
    assertions in tests.
    """

    def __init__(self, partitions: int = 6) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {partitions}")
        self.partitions = partitions
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[Message]]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._member_ids = itertools.count()
        self._closed = False

    # -- Bus ---------------------------------------------------------------------------

    def publish_many(self, records: Sequence[Record]) -> None:
        now_ms = int(time.time() * 1000)
        with self._cond:
            self._check_open()
            for record in records:
                log = self._topic(record.topic)
                if record.key is None:
                    p = next(self._round_robin[record.topic]) % len(log)
                else:
                    p = partition_for(record.key, len(log))
                part = log[p]
                part.append(
                    Message(
                        record.topic,
                        p,
                        len(part),
                        record.key,
                        record.value,
                        dict(record.headers),
                        now_ms,
                    )
                )
            self._cond.notify_all()

    def subscribe(self, group: str, topics: Iterable[str]) -> MemoryConsumer:
        wanted = frozenset(topics)
        if not wanted:
            raise ValueError("subscribe needs at least one topic")
        with self._cond:
            self._check_open()
            for topic in wanted:
                self._topic(topic)
            member = f"member-{next(self._member_ids)}"
            state = self._groups.setdefault(group, _Group())
            state.subscriptions[member] = wanted
            self._rebalance(state)
        return MemoryConsumer(self, group, member)

    def ensure_topics(self, topics: Iterable[str]) -> None:
        with self._cond:
            self._check_open()
            for topic in topics:
                self._topic(topic)

    def ping(self) -> None:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- for tests ---------------------------------------------------------------------

    def snapshot(self, topic: str) -> list[Message]:
        """Every message published to ``topic`` so far, partition by partition."""
        with self._cond:
            return [m for part in self._logs.get(topic, []) for m in part]

    def committed(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed positions (next offset to read) per partition."""
        with self._cond:
            return dict(self._groups[group].committed) if group in self._groups else {}

    # -- internals (called with the lock held) -------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the in-memory bus is closed")

    def _topic(self, topic: str) -> list[list[Message]]:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = [[] for _ in range(self.partitions)]
            self._round_robin[topic] = itertools.count()
            for state in self._groups.values():
                self._rebalance(state)
        return log

    def _rebalance(self, state: _Group) -> None:
        counts = {t: len(log) for t, log in self._logs.items()}
        state.assignment = assign(state.subscriptions, counts)
        state.generation += 1


class MemoryConsumer(Consumer):
    """One member of a group on a ``MemoryBus``; use it from one thread at a time."""

    def __init__(self, bus: MemoryBus, group: str, member: str) -> None:
        self._bus = bus
        self._group = group
        self._member = member
        self._generation = -1
        self._positions: dict[TopicPartition, int] = {}
        self._closed = False

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        cond = self._bus._cond
        with cond:
            while True:
                if self._closed or self._bus._closed:
                    raise BusError("poll on a closed consumer or bus")
                self._sync_assignment()
                batch = self._take(max_records)
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0:
                    return batch
                cond.wait(remaining)

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        upto: dict[TopicPartition, int] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            upto[tp] = max(upto.get(tp, 0), m.offset + 1)
        with self._bus._cond:
            state = self._bus._groups[self._group]
            owned = state.assignment.get(self._member, frozenset())
            lost = sorted(tp for tp in upto if tp not in owned)
            if lost:
                raise CommitFailed(f"group {self._group!r} was rebalanced; {lost} moved away")
            state.committed.update(upto)

    def close(self) -> None:
        with self._bus._cond:
            if self._closed:
                return
            self._closed = True
            state = self._bus._groups.get(self._group)
            if state is not None and state.subscriptions.pop(self._member, None) is not None:
                self._bus._rebalance(state)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def _sync_assignment(self) -> None:
        """After a rebalance, start new partitions at the group's committed position."""
        state = self._bus._groups[self._group]
        if state.generation == self._generation:
            return
        self._generation = state.generation
        owned = state.assignment.get(self._member, frozenset())
        self._positions = {
            tp: self._positions.get(tp, state.committed.get(tp, 0)) for tp in sorted(owned)
        }

    def _take(self, max_records: int) -> list[Message]:
        # Fair across partitions: no partition can starve the others of a batch.
        batch: list[Message] = []
        logs = self._bus._logs
        pending = [tp for tp, pos in self._positions.items() if pos < len(logs[tp[0]][tp[1]])]
        while pending and len(batch) < max_records:
            share = max(1, (max_records - len(batch)) // len(pending))
            still: list[TopicPartition] = []
            for tp in pending:
                part = logs[tp[0]][tp[1]]
                pos = self._positions[tp]
                room = min(share, max_records - len(batch))
                chunk = part[pos : pos + room]
                batch.extend(chunk)
                self._positions[tp] = pos + len(chunk)
                if self._positions[tp] < len(part):
                    still.append(tp)
                if len(batch) >= max_records:
                    break
            pending = still
        return batch
