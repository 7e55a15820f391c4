"""The Kafka bus, on kafka-python: for deployments that outgrow one machine.

Durability: the producer is idempotent with ``acks="all"`` (set explicitly, not left to
library defaults that changed between versions), and ``publish_many`` returns only after
every record of the batch was acknowledged, so a returned publish is on every in-sync
replica. Consumers never auto-commit: ``commit`` is called by the worker after the handler
finished, so a crash redelivers the uncommitted tail (at-least-once).

Partitioning is kafka-python's default (murmur2 of the key, as the Java client): one key,
one partition, one order. Threads: the producer is shared and thread-safe; each consumer
belongs to the thread that polls it.
"""

from __future__ import annotations

import socket
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text,
# deprecated since Python 3.11; the warning is the library's, raised at import, and would fail any
# run with -W error (our tests). Silence exactly that one, here, where the library enters.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"\w+ is deprecated\. Use files\(\) instead", category=DeprecationWarning
    )
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.errors import (
        CommitFailedError,
        IllegalGenerationError,
        KafkaError,
        RebalanceInProgressError,
        UnknownMemberIdError,
    )
    from kafka.structs import OffsetAndMetadata, TopicPartition

from bus.base import Bus, Consumer, Message, Record
from bus.errors import CommitFailed
from caregraph.errors import BusError, BusUnavailable

_TOPIC_ALREADY_EXISTS = 36
_REBALANCED = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


class KafkaBus(Bus):
    """A bus on a Kafka cluster (or anything speaking its protocol, such as Tansu).

    ``bootstrap`` is ``host:port[,host:port...]``. ``partitions`` and ``replication_factor``
    apply to topics created by ``ensure_topics``. The group timeouts are Kafka's own; the
    defaults (6 s session, 1 s heartbeat) move a dead member's partitions on within 6 s;
    a live member may spend up to ``max_poll_interval_ms`` (120 s) on one batch: a store
    writer behind a slow database must not be evicted and handed the same batch again.
    ``producer_config`` and ``consumer_config`` pass further kafka-python settings through
    (e.g. SASL/TLS).
    Nothing connects until first use.
    """

    def __init__(
        self,
        bootstrap: str,
        partitions: int = 6,
        client_id: str = "caregraph",
        *,
        replication_factor: int = 1,
        max_poll_interval_ms: int = 120_000,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        request_timeout_ms: int = 10000,
        max_message_bytes: int = 16 * 1024 * 1024,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {partitions}")
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.client_id = client_id
        self.replication_factor = replication_factor
        self._request_timeout_ms = request_timeout_ms
        self._producer_config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "max_request_size": max_message_bytes,
            "max_block_ms": request_timeout_ms,
            "request_timeout_ms": request_timeout_ms,
            "bootstrap_timeout_ms": request_timeout_ms,
            **(producer_config or {}),
        }
        self._consumer_config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_interval_ms": max_poll_interval_ms,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "bootstrap_timeout_ms": request_timeout_ms,
            # A fetch finding nothing waits at the broker for up to this long. Kafka answers
            # it as soon as data arrives; Tansu did not (a scratch run: a message published
            # while the consumer waited took 134 ms at p50 to arrive at the default 500,
            # 18 ms at 100; `python bench/bus.py` prints the "one hop" figure of this
            # setting), and a reading crosses two hops.
            # The price: an idle consumer asks ten times a second instead of twice.
            "fetch_max_wait_ms": 100,
            "fetch_max_bytes": max(52428800, max_message_bytes),
            "max_partition_fetch_bytes": max(1048576, max_message_bytes),
            **(consumer_config or {}),
        }
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._tracked: set[str] = set()
        self._closed = False

    # -- Bus ---------------------------------------------------------------------------

    def publish_many(self, records: Sequence[Record]) -> None:
        if not records:
            return
        producer = self._get_producer()
        self._track_topics(producer, records)
        try:
            futures = [
                producer.send(
                    r.topic,
                    value=r.value,
                    key=r.key,
                    headers=[(k, v.encode()) for k, v in r.headers.items()],
                )
                for r in records
            ]
            producer.flush(timeout=self._request_timeout_ms / 1000)
            for future in futures:
                # flush() returns when everything was sent or failed; get() surfaces failures.
                future.get(timeout=self._request_timeout_ms / 1000)
        except KafkaError as exc:
            raise BusError(f"Kafka publish failed: {exc}") from exc

    def subscribe(self, group: str, topics: Iterable[str]) -> KafkaBusConsumer:
        wanted = sorted(set(topics))
        if not wanted:
            raise ValueError("subscribe needs at least one topic")
        self._check_open()
        self._reachable()
        try:
            consumer = KafkaConsumer(*wanted, group_id=group, **self._consumer_config)
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        return KafkaBusConsumer(consumer)

    def ensure_topics(self, topics: Iterable[str]) -> None:
        wanted = sorted(set(topics))
        if not wanted:
            return
        spec = {
            t: {"num_partitions": self.partitions, "replication_factor": self.replication_factor}
            for t in wanted
        }
        admin = self._admin()
        try:
            result = admin.create_topics(spec, raise_errors=False, wait_for_metadata=False)
            failed = [
                f"{t['name']}: {t.get('error_message') or t['error_code']}"
                for t in result["topics"]
                if t["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if failed:
                raise BusError(f"cannot create Kafka topics: {'; '.join(failed)}")
            admin.wait_for_topics(wanted, timeout_ms=self._request_timeout_ms)
        except KafkaError as exc:
            raise BusError(f"cannot create Kafka topics {wanted}: {exc}") from exc
        finally:
            admin.close()

    def ping(self) -> None:
        self._check_open()
        self._admin(bootstrap_timeout_ms=3000).close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=self._request_timeout_ms / 1000)
            except KafkaError as exc:
                raise BusError(f"closing the Kafka producer failed: {exc}") from exc

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the Kafka bus is closed")

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            self._check_open()
            if self._producer is None:
                self._reachable()
                try:
                    self._producer = KafkaProducer(**self._producer_config)
                except KafkaError as exc:
                    raise self._unavailable(exc) from exc
            return self._producer

    def _track_topics(self, producer: KafkaProducer, records: Sequence[Record]) -> None:
        """Make the producer track, in its metadata, every topic it publishes to.

        kafka-python 3.0 adds a topic to its tracked set only when its partitions are not
        yet known. Tansu answers a metadata request for no topics with every topic, so the
        first topics look known and are never tracked; the first really new topic then
        narrows the metadata to itself, the earlier topics lose their leaders, and the
        producer's I/O thread spins at 100% CPU ("Unknown leaders exist") for good.
        ``test_kafka.py::test_producer_does_not_spin_after_new_topics`` guards this.
        """
        new = {r.topic for r in records} - self._tracked
        if not new:
            return
        sender = getattr(producer, "_sender", None)
        add_topic = getattr(sender, "add_topic", None)
        if add_topic is not None:
            for topic in sorted(new):
                add_topic(topic)
        self._tracked |= new

    def _admin(self, bootstrap_timeout_ms: int | None = None) -> KafkaAdminClient:
        self._reachable()
        try:
            return KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                request_timeout_ms=self._request_timeout_ms,
                bootstrap_timeout_ms=bootstrap_timeout_ms or self._request_timeout_ms,
            )
        except KafkaError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> BusUnavailable:
        return BusUnavailable(
            f"cannot reach Kafka at {self.bootstrap}: {exc}; check CAREGRAPH_KAFKA_BOOTSTRAP"
        )

    def _reachable(self) -> None:
        """A TCP connect to the bootstrap addresses before any kafka-python client is built.

        It gives the clearest reason in the least time (kafka-python retries, logging each
        attempt, until its bootstrap timeout), and it avoids a leak: a kafka-python 3.0
        client whose constructor fails to bootstrap leaves its sockets and I/O thread open.
        """
        reasons = []
        addresses = self.bootstrap.split(",")
        for address in addresses:
            try:
                host, port = parse_address(address)
            except ValueError as exc:
                reasons.append(str(exc))
                continue
            try:
                with socket.create_connection((host, port), timeout=2.0):
                    return
            except OSError as exc:
                where = f"{address.strip()}: " if len(addresses) > 1 else ""
                reasons.append(f"{where}{exc}")
        raise BusUnavailable(
            f"cannot reach Kafka at {self.bootstrap}: {'; '.join(reasons)}; "
            "check CAREGRAPH_KAFKA_BOOTSTRAP"
        )


def parse_address(address: str) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) -> (host, port); Kafka's port 9092 if none given.

    Raises ``ValueError`` naming the address when it is not of that form.
    """
    text = address.strip()
    bad = ValueError(f"{text!r} is not host:port")
    port_text: str | None
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise bad
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise bad  # a bare IPv6 address needs brackets
    else:
        host, sep, port_text = text.partition(":")
        port_text = port_text if sep else None
    if not host:
        raise bad
    if port_text is None:
        return host, 9092
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad
    return host, int(port_text)


class KafkaBusConsumer(Consumer):
    """A group member on Kafka; kafka-python consumers are not thread-safe, so one thread."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        try:
            fetched = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            if exc.retriable:
                # a broker restarting or a connection cut: the next poll reconnects
                raise BusUnavailable(f"Kafka poll failed: {exc}") from exc
            raise BusError(f"Kafka poll failed: {exc}") from exc
        return [
            Message(
                r.topic,
                r.partition,
                r.offset,
                r.key,
                r.value,
                _headers(r.headers),
                r.timestamp,
            )
            for records in fetched.values()
            for r in records
        ]

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        upto: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            upto[tp] = max(upto.get(tp, 0), m.offset + 1)
        try:
            self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in upto.items()})
        except _REBALANCED as exc:
            raise CommitFailed(f"the group was rebalanced; commit refused: {exc}") from exc
        except KafkaError as exc:
            raise BusError(f"Kafka commit failed: {exc}") from exc

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            raise BusError(f"closing the Kafka consumer failed: {exc}") from exc

    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())


def _headers(raw: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers are bytes (or null); ours are text. Bytes that are not UTF-8 come from
    a foreign producer and are kept readable with replacement characters."""
    if not raw:
        return {}
    return {k: "" if v is None else v.decode("utf-8", "replace") for k, v in raw}
