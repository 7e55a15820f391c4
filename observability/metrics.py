"""Prometheus metrics for every role, served at ``GET /metrics``.

Two kinds of figure, because the code already keeps some of them:

- events the hot path reports as they happen (a message in or out, an ACK's latency, a
  database write's latency, a dead letter, an unmatched code): ``Metrics`` owns counters
  and histograms for them, and the call sites call one small method each;
- counters that components already keep (``bus.worker.WorkerStats``,
  ``devices.mllp.listener.ListenerStats``, the device health board, consumer lag, the
  adapters' tally of unknown codes in ``adapters.codes.unmatched``): a custom collector
  reads them at scrape time, so the hot path pays nothing for them. The process's memory
  by kind (``observability.memory``) is read the same way.

One ``Metrics`` per process, built by the composition root and passed down; its registry
is its own (not ``prometheus_client``'s global one), so tests and several apps in one
process never collide.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as CollectionsCounter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from observability.memory import MemoryCollector

# ACKs are sub-millisecond when the bus is local and seconds when Kafka is slow: buckets
# from 0.5 ms to 10 s cover both without a bucket per figure.
ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class WorkerCounters(Protocol):
    """What the collector reads of ``bus.worker.WorkerStats``."""

    @property
    def batches(self) -> int: ...
    @property
    def handled(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def deadlettered(self) -> int: ...
    @property
    def commit_failures(self) -> int: ...


class ListenerCounters(Protocol):
    """What the collector reads of ``devices.mllp.listener.ListenerStats``."""

    @property
    def connections(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def publish_failures(self) -> int: ...


@dataclass(frozen=True)
class LagSample:
    """Messages a consumer group has still to read on one partition."""

    group: str
    topic: str
    partition: int
    lag: int


LagSource = Callable[[], Iterable[LagSample]]
SilentDevices = Callable[[], int]
# (source, code system, kind) -> count so far, e.g. adapters.codes.unmatched.TALLY.snapshot
UnmatchedSource = Callable[[], Mapping[tuple[str, str, str], int]]

# (metric suffix, attribute, help) read from each watched stats object.
_WORKER_FIELDS = (
    ("batches", "batches", "batches handed to the handler"),
    ("handled", "handled", "messages handled and committed"),
    ("retries", "retries", "batches retried after a transient error"),
    ("deadlettered", "deadlettered", "messages sent to the dead-letter topic"),
    ("commit_failures", "commit_failures", "offset commits that failed (rebalance)"),
)
_LISTENER_FIELDS = (
    ("connections", "connections", "TCP connections accepted"),
    ("frames", "frames", "MLLP frames received"),
    ("accepted", "accepted", "messages made durable and answered AA"),
    ("duplicates", "duplicates", "redelivered messages answered from the ACK cache"),
    ("errors", "errors", "messages answered AE"),
    ("rejected", "rejected", "messages answered AR"),
    ("publish_failures", "publish_failures", "bus publishes that failed"),
    ("held", "held", "accepted messages whose ACK waited for the store writer's backlog"),
)


class _StatsCollector(Collector):
    """Reads the watched stats objects and callables at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.workers: dict[str, WorkerCounters] = {}
        self.listeners: dict[str, ListenerCounters] = {}
        self.lag_sources: list[LagSource] = []
        self.silent_sources: list[SilentDevices] = []
        self.unmatched_sources: list[UnmatchedSource] = []
        self.unmatched: CollectionsCounter[tuple[str, str, str]] = CollectionsCounter()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            workers = dict(self.workers)
            listeners = dict(self.listeners)
            lag_sources = list(self.lag_sources)
            silent_sources = list(self.silent_sources)
            unmatched = CollectionsCounter(self.unmatched)
            unmatched_sources = list(self.unmatched_sources)
        yield from _families("caregraph_worker", "group", workers, _WORKER_FIELDS)
        yield from _families("caregraph_mllp", "listener", listeners, _LISTENER_FIELDS)
        lag = GaugeMetricFamily(
            "caregraph_consumer_lag",
            "messages a consumer group has not yet read, per partition",
            labels=["group", "topic", "partition"],
        )
        for source in lag_sources:
            for s in source():
                lag.add_metric([s.group, s.topic, str(s.partition)], float(s.lag))
        yield lag
        for tally in unmatched_sources:
            unmatched.update(tally())
        family = CounterMetricFamily(
            "caregraph_unmatched_codes",
            "codes and units a translator passed through unmapped, per source, code system"
            " and kind (unknown_code, unknown_unit)",
            labels=["source", "system", "kind"],
        )
        for (source_name, system, kind), count in sorted(unmatched.items()):
            family.add_metric([source_name, system, kind], float(count))
        yield family
        if silent_sources:
            yield GaugeMetricFamily(
                "caregraph_devices_silent",
                "registered serial devices silent beyond the alert threshold",
                value=float(sum(source() for source in silent_sources)),
            )


def _families(
    prefix: str, label: str, objects: Mapping[str, object], fields: tuple[tuple[str, str, str], ...]
) -> Iterator[Metric]:
    for suffix, attribute, help_text in fields:
        family = CounterMetricFamily(f"{prefix}_{suffix}", help_text, labels=[label])
        for name, stats in sorted(objects.items()):
            family.add_metric([name], float(getattr(stats, attribute)))
        yield family


class Metrics:
    """The process's metrics: call the ``record_*``/``observe_*`` methods from the hot
    path, ``watch_*`` once at wiring time, and serve ``render()`` (or the router)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.messages_in = Counter(
            "caregraph_messages_in",
            "messages received, per source (hl7v2, dicom, device, ...) and topic",
            ["source", "topic"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "caregraph_messages_out",
            "messages published, per source and topic",
            ["source", "topic"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "caregraph_ack_latency_seconds",
            "receipt of a message to the acknowledgement sent to its sender",
            ["source"],
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.db_write_latency = Histogram(
            "caregraph_db_write_latency_seconds",
            "one database write transaction",
            ["operation"],
            buckets=DB_BUCKETS,
            registry=self.registry,
        )
        self.deadletters = Counter(
            "caregraph_deadletters",
            "messages sent to the dead-letter topic, per original topic and reason",
            ["topic", "reason"],
            registry=self.registry,
        )
        self._stats = _StatsCollector()
        self.registry.register(self._stats)
        self.registry.register(MemoryCollector())

    def record_in(self, source: str, topic: str, count: int = 1) -> None:
        self.messages_in.labels(source, topic).inc(count)

    def record_out(self, source: str, topic: str, count: int = 1) -> None:
        self.messages_out.labels(source, topic).inc(count)

    def observe_ack(self, source: str, seconds: float) -> None:
        self.ack_latency.labels(source).observe(seconds)

    def observe_db_write(self, operation: str, seconds: float) -> None:
        self.db_write_latency.labels(operation).observe(seconds)

    @contextmanager
    def time_db_write(self, operation: str) -> Iterator[None]:
        """Times the block as one database write, whether it succeeds or raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_db_write(operation, time.perf_counter() - started)

    def record_deadletter(self, topic: str, reason: str, count: int = 1) -> None:
        self.deadletters.labels(topic, reason).inc(count)

    def record_unmatched_code(
        self, kind: str, count: int = 1, *, source: str = "unknown", system: str = "unknown"
    ) -> None:
        """Count unknown codes directly (adapters count in ``adapters.codes.unmatched``)."""
        with self._stats._lock:
            self._stats.unmatched[(source, system, kind)] += count

    def watch_worker(self, group: str, stats: WorkerCounters) -> None:
        """Expose a consumer's ``WorkerStats`` as ``caregraph_worker_*{group=...}``."""
        with self._stats._lock:
            self._stats.workers[group] = stats

    def watch_listener(self, name: str, stats: ListenerCounters) -> None:
        """Expose an MLLP listener's ``ListenerStats`` as ``caregraph_mllp_*``."""
        with self._stats._lock:
            self._stats.listeners[name] = stats

    def watch_lag(self, source: LagSource) -> None:
        """Read consumer lag from ``source`` at each scrape (it should answer quickly)."""
        with self._stats._lock:
            self._stats.lag_sources.append(source)

    def watch_silent_devices(self, source: SilentDevices) -> None:
        """Count silent devices with ``source`` at each scrape (e.g. from the health board)."""
        with self._stats._lock:
            self._stats.silent_sources.append(source)

    def watch_unmatched(self, source: UnmatchedSource) -> None:
        """Add the counts ``source`` holds to ``caregraph_unmatched_codes`` at each scrape
        (the composition root passes ``adapters.codes.unmatched.TALLY.snapshot``)."""
        with self._stats._lock:
            self._stats.unmatched_sources.append(source)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def build_metrics_router(metrics: Metrics) -> APIRouter:
    """``GET /metrics`` in the Prometheus text format (scraped without a token: mount it
    among the public paths, or on a port only the monitoring network reaches)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
