"""Consumer lag on Kafka: how far each caregraph consumer group is behind, per partition.

Lag is what the consumer roles are scaled on (deploy/k8s/hpa.yaml) and what an operator
looks at first when data is late. It is read from the broker, not from the consumers: a
crashed or stuck consumer reports nothing, while the broker still knows the group's last
committed offset and each partition's end.

``KafkaLag`` is a ``LagSource`` for ``Metrics.watch_lag``. A scrape must stay cheap and
must not fail when Kafka is down, so answers are cached for ``ttl_s`` and a broker error
logs once and keeps the last answer (the lag series then stops moving, which the
``CaregraphConsumerLagGrowing`` alert and the readiness probe make visible).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


class KafkaLag:
    """Lag of ``groups`` (group -> the topics it consumes) on the cluster at ``bootstrap``.

    A partition the group has never committed counts from its beginning offset, because
    caregraph's consumers start at the earliest message (``auto_offset_reset=earliest``).
    Clients are opened on the first call, not here, and closed by ``close``.
    """

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, Sequence[str]],
        *,
        ttl_s: float = 5.0,
        request_timeout_ms: int = 5000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.groups = {group: tuple(topics) for group, topics in groups.items()}
        self.ttl_s = ttl_s
        self._timeout_ms = request_timeout_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._admin: Any = None
        self._consumer: Any = None
        self._cached: list[LagSample] = []
        self._cached_at: float | None = None
        self._failing = False

    def __call__(self) -> list[LagSample]:
        with self._lock:
            now = self._clock()
            if self._cached_at is not None and now - self._cached_at < self.ttl_s:
                return list(self._cached)
            try:
                self._cached = self._read()
            except (KafkaError, OSError) as exc:
                if not self._failing:
                    log.warning("consumer lag unavailable from %s: %s", self.bootstrap, exc)
                self._failing = True
                self._close_clients()  # reconnect from scratch next time
            else:
                self._failing = False
            self._cached_at = now
            return list(self._cached)

    def _read(self) -> list[LagSample]:
        admin, consumer = self._clients()
        samples: list[LagSample] = []
        for group, topics in sorted(self.groups.items()):
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

    def _close_clients(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except KafkaError:
                    log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close_clients()


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
