"""Consumer lag: how far each caregraph consumer group is behind, per partition, on Kafka
(``KafkaLag``) and on the embedded bus (``EmbeddedLag``).

Lag is what the consumer roles are scaled on (deploy/k8s/hpa.yaml) and what an operator
looks at first when data is late. It is read from the broker, not from the consumers: a
crashed or stuck consumer reports nothing, while the broker still knows the group's last
committed offset and each partition's end.

Both are ``LagReader``s: a ``LagSource`` for ``Metrics.watch_lag`` (read at scrape time)
whose ``watch(group, topics)`` the composition root hands to ``MeteredBus`` as its
``on_subscribe``, so every consumer group a process runs is reported without a list kept by
hand. The embedded bus also reports every group other processes have committed or joined
(its file holds them all); Kafka reports the groups watched in this process.

A scrape must stay cheap and must not fail when the bus is down, so answers are cached for
``ttl_s`` and an error logs once and keeps the last answer (the lag series then stops
moving, which the ``CaregraphConsumerLagGrowing`` alert and the readiness probe make
visible).
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bus.kafka import parse_address
from observability.metrics import LagSample

with warnings.catch_warnings():  # kafka-python's import-time DeprecationWarning, as in bus.kafka
    warnings.filterwarnings(
        "ignore", message=r"\w+ is deprecated\. Use files\(\) instead", category=DeprecationWarning
    )
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.errors import KafkaError
    from kafka.structs import TopicPartition

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class LagReader(Protocol):
    """What the composition root needs of a lag source."""

    def __call__(self) -> list[LagSample]: ...
    def watch(self, group: str, topics: Iterable[str]) -> None: ...
    def close(self) -> None: ...


class _CachedLag(ABC):
    """What both readers share: one read per ``ttl_s`` (sooner once ``watch`` added a
    group), a failed read logged once, its connection dropped, the last answer kept."""

    #: The failures of a read that mean the bus is unreachable, not a bug.
    unreachable: tuple[type[Exception], ...]

    def __init__(self, source: str, ttl_s: float, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()  # one scrape at a time (it may wait on the bus)
        self._watch_lock = threading.Lock()  # so watch never waits for a slow scrape
        self._stale = False
        self._cached: list[LagSample] = []
        self._cached_at: float | None = None
        self._failing = False

    def __call__(self) -> list[LagSample]:
        with self._lock:
            now = self._clock()
            with self._watch_lock:
                stale, self._stale = self._stale, False
            fresh = self._cached_at is not None and now - self._cached_at < self.ttl_s
            if fresh and not stale:
                return list(self._cached)
            try:
                self._cached = self._read()
            except self.unreachable as exc:
                if not self._failing:
                    log.warning("consumer lag unavailable from %s: %s", self._source, exc)
                self._failing = True
                self._disconnect()  # reconnect from scratch next time
            else:
                self._failing = False
            self._cached_at = now
            return list(self._cached)

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    @abstractmethod
    def _read(self) -> list[LagSample]: ...

    @abstractmethod
    def _disconnect(self) -> None: ...


class KafkaLag(_CachedLag):
    """Lag of ``groups`` (group -> the topics it consumes) on the cluster at ``bootstrap``.

    A partition the group has never committed counts from its beginning offset, because
    caregraph's consumers start at the earliest message (``auto_offset_reset=earliest``).
    Clients are opened on the first call, not here, and closed by ``close``.
    """

    unreachable = (KafkaError, OSError)

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, Sequence[str]],
        *,
        ttl_s: float = 5.0,
        request_timeout_ms: int = 5000,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(bootstrap, ttl_s, clock)
        self.bootstrap = bootstrap
        self.groups = {group: tuple(topics) for group, topics in groups.items()}
        self._timeout_ms = request_timeout_ms
        self._admin: Any = None
        self._consumer: Any = None

    def watch(self, group: str, topics: Iterable[str]) -> None:
        """Report ``group`` on ``topics`` too (from the next scrape on, not the cached one)."""
        with self._watch_lock:
            known = self.groups.get(group, ())
            added = tuple(t for t in dict.fromkeys(topics) if t not in known)
            if added:
                self.groups = {**self.groups, group: known + added}
                self._stale = True

    def _read(self) -> list[LagSample]:
        with self._watch_lock:
            groups = self.groups  # replaced, never changed in place, by watch
        if not groups:
            return []  # a process without consumers opens no client
        admin, consumer = self._clients()
        samples: list[LagSample] = []
        for group, topics in sorted(groups.items()):
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                continue
            committed = _committed(admin, group, partitions)
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            for tp in partitions:
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                samples.append(
                    LagSample(group, tp.topic, tp.partition, max(0, ends[tp] - position))
                )
        return samples

    def _clients(self) -> tuple[Any, Any]:
        if self._admin is None or self._consumer is None:
            # A kafka-python 3 client whose constructor cannot bootstrap leaves its sockets
            # and I/O thread behind (see bus.kafka); a plain TCP connect fails first, fast.
            _reachable(self.bootstrap)
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="caregraph-lag",
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
            )
        if self._consumer is None:
            # no group_id: this consumer only asks for offsets, it joins nothing
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="caregraph-lag",
                enable_auto_commit=False,
                bootstrap_timeout_ms=self._timeout_ms,
            )
        return self._admin, self._consumer

    def _disconnect(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except KafkaError:
                    log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None


def _committed(admin: Any, group: str, partitions: list[TopicPartition]) -> dict[Any, Any]:
    """The group's committed offsets: kafka-python 3 renamed the admin call."""
    if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3.0
        return dict(admin.list_group_offsets({group: partitions}).get(group, {}))
    return dict(admin.list_consumer_group_offsets(group, partitions=partitions))


def _reachable(bootstrap: str) -> None:
    """Raises ``OSError`` (the last one) when no bootstrap address accepts a TCP connection."""
    error: OSError = OSError(f"no bootstrap address in {bootstrap!r}")
    for address in bootstrap.split(","):
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            error = OSError(str(exc))
            continue
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as exc:
            error = exc
    raise error


class EmbeddedLag(_CachedLag):
    """Lag of the consumer groups of the embedded bus whose file is ``path``
    (``data_dir/bus.sqlite3``), read on its own read-only connection.

    Every group with a committed offset or a live member is reported, whichever process
    runs it, plus the groups ``watch`` names; a group's partitions are all partitions of the
    topics it reads. A partition the group never committed counts from its first message
    still in the log. Reads use the log's primary key (max and min offset per partition),
    so a scrape costs two index lookups per partition, however long the log.
    """

    unreachable = (sqlite3.Error,)

    def __init__(self, path: Path, *, ttl_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        super().__init__(str(path), ttl_s, clock)
        self.path = Path(path)
        self._watched: dict[str, set[str]] = {}
        self._conn: sqlite3.Connection | None = None

    def watch(self, group: str, topics: Iterable[str]) -> None:
        with self._watch_lock:
            self._watched.setdefault(group, set()).update(topics)
            self._stale = True

    def _read(self) -> list[LagSample]:
        conn = self._connection()
        topics = {
            str(name): (int(topic_id), int(parts))
            for topic_id, name, parts in conn.execute("SELECT id, name, partitions FROM topics")
        }
        names = {topic_id: name for name, (topic_id, _) in topics.items()}
        with self._watch_lock:
            groups: dict[str, set[str]] = {g: set(t) for g, t in self._watched.items()}
        committed: dict[tuple[str, int, int], int] = {}
        for group, topic_id, part, off in conn.execute(
            "SELECT grp, topic_id, part, off FROM offsets"
        ):
            committed[(group, topic_id, part)] = int(off)
            if topic_id in names:
                groups.setdefault(group, set()).add(names[topic_id])
        for group, member_topics in conn.execute("SELECT grp, topics FROM members"):
            groups.setdefault(group, set()).update(json.loads(member_topics))
        bounds: dict[tuple[int, int], tuple[int, int]] = {}
        samples: list[LagSample] = []
        for group in sorted(groups):
            for topic in sorted(groups[group]):
                if topic not in topics:
                    continue  # watched before anyone created it
                topic_id, parts = topics[topic]
                for part in range(parts):
                    if (topic_id, part) not in bounds:
                        bounds[(topic_id, part)] = _bounds(conn, topic_id, part)
                    start, end = bounds[(topic_id, part)]
                    position = committed.get((group, topic_id, part), start)
                    samples.append(LagSample(group, topic, part, max(0, end - position)))
        return samples

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():  # mode=ro would not create it, but say so plainly
                raise sqlite3.OperationalError(f"no embedded bus file at {self.path}")
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=2.0, check_same_thread=False
            )
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _bounds(conn: sqlite3.Connection, topic_id: int, part: int) -> tuple[int, int]:
    """(first offset still in the log, offset after the last) of one partition; (0, 0) empty."""
    row = conn.execute(
        "SELECT (SELECT min(off) FROM messages WHERE topic_id = ?1 AND part = ?2),"
        " (SELECT max(off) FROM messages WHERE topic_id = ?1 AND part = ?2)",
        (topic_id, part),
    ).fetchone()
    if row is None or row[1] is None:
        return 0, 0
    return int(row[0]), int(row[1]) + 1
