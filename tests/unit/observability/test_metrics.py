"""Scrape ``GET /metrics`` through a real FastAPI app and check the values move."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from bus.base import Message, Record
from bus.memory import MemoryBus
from bus.worker import RetryPolicy, WorkerStats, run_consumer
from devices.mllp.listener import ListenerStats
from observability.metrics import LagSample, Metrics, build_metrics_router
from tests.support.asgi import AsgiClient


def scrape(client: AsgiClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> AsgiClient:
    app = FastAPI()
    app.include_router(build_metrics_router(metrics))
    return AsgiClient(app)


def test_messages_in_and_out_count_per_source_and_topic(
    metrics: Metrics, client: AsgiClient
) -> None:
    metrics.record_in("hl7v2", "raw.hl7v2")
    metrics.record_in("hl7v2", "raw.hl7v2", 4)
    metrics.record_out("normalizer", "fhir.Observation", 10)
    samples = scrape(client)
    assert (
        samples[("caregraph_messages_in_total", (("source", "hl7v2"), ("topic", "raw.hl7v2")))] == 5
    )
    out = (
        "caregraph_messages_out_total",
        (("source", "normalizer"), ("topic", "fhir.Observation")),
    )
    assert samples[out] == 10
    metrics.record_out("normalizer", "fhir.Observation")
    assert scrape(client)[out] == 11


def test_ack_latency_histogram_buckets_the_observations(
    metrics: Metrics, client: AsgiClient
) -> None:
    for seconds in (0.0004, 0.003, 0.003, 2.0):
        metrics.observe_ack("mllp", seconds)
    samples = scrape(client)
    label = (("le", "0.005"), ("source", "mllp"))
    assert samples[("caregraph_ack_latency_seconds_bucket", label)] == 3
    assert samples[("caregraph_ack_latency_seconds_count", (("source", "mllp"),))] == 4
    assert samples[("caregraph_ack_latency_seconds_sum", (("source", "mllp"),))] == pytest.approx(
        2.0064
    )


def test_db_write_timer_observes_even_when_the_write_raises(
    metrics: Metrics, client: AsgiClient
) -> None:
    with metrics.time_db_write("upsert"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError), metrics.time_db_write("upsert"):
        raise RuntimeError("database gone")
    samples = scrape(client)
    op = (("operation", "upsert"),)
    assert samples[("caregraph_db_write_latency_seconds_count", op)] == 2
    assert samples[("caregraph_db_write_latency_seconds_sum", op)] >= 0.01


def test_deadletters_and_unmatched_codes(metrics: Metrics, client: AsgiClient) -> None:
    metrics.record_deadletter("raw.hl7v2", "ParseError")
    metrics.record_unmatched_code("unknown_unit", 3)
    samples = scrape(client)
    dl = (("reason", "ParseError"), ("topic", "raw.hl7v2"))
    assert samples[("caregraph_deadletters_total", dl)] == 1
    code = (("kind", "unknown_unit"), ("source", "unknown"), ("system", "unknown"))
    assert samples[("caregraph_unmatched_codes_total", code)] == 3


def test_worker_stats_of_a_real_consumer_are_scraped(metrics: Metrics, client: AsgiClient) -> None:
    bus = MemoryBus(partitions=2)
    bus.publish_many([Record("t", b"%d" % i, key=b"%d" % i) for i in range(30)])
    stats = WorkerStats()
    metrics.watch_worker("store-writer", stats)

    def handler(batch: list[Message]) -> None:
        if any(m.value == b"7" for m in batch) and len(batch) > 1:
            raise ValueError("poison")  # the worker bisects and dead-letters b"7"
        if batch[0].value == b"7":
            raise ValueError("poison")

    stop = threading.Event()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "store-writer", ["t"], handler),
        kwargs={
            "stop": stop,
            "retry": RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.002),
            "poll_timeout_s": 0.01,
            "stats": stats,
        },
    )
    worker.start()
    deadline = time.monotonic() + 10
    while sum(bus.committed("store-writer").values()) < 30 and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    worker.join(5)
    samples = scrape(client)
    group = (("group", "store-writer"),)
    assert samples[("caregraph_worker_handled_total", group)] == stats.handled == 29
    assert samples[("caregraph_worker_deadlettered_total", group)] == 1


def test_listener_stats_lag_and_silent_devices_are_read_at_scrape_time(
    metrics: Metrics, client: AsgiClient
) -> None:
    listener = ListenerStats()
    metrics.watch_listener("mllp", listener)
    lag = {0: 12, 1: 0}
    metrics.watch_lag(
        lambda: [LagSample("normalizer-hl7v2", "raw.hl7v2", p, n) for p, n in lag.items()]
    )
    silent = [0]
    metrics.watch_silent_devices(lambda: silent[0])
    first = scrape(client)
    assert first[("caregraph_mllp_accepted_total", (("listener", "mllp"),))] == 0
    assert first[("caregraph_devices_silent", ())] == 0
    listener.accepted += 3
    listener.rejected += 1
    lag[0] = 2
    silent[0] = 2
    later = scrape(client)
    assert later[("caregraph_mllp_accepted_total", (("listener", "mllp"),))] == 3
    assert later[("caregraph_mllp_rejected_total", (("listener", "mllp"),))] == 1
    p0 = (("group", "normalizer-hl7v2"), ("partition", "0"), ("topic", "raw.hl7v2"))
    assert later[("caregraph_consumer_lag", p0)] == 2
    assert later[("caregraph_devices_silent", ())] == 2


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()  # the global registry would raise on a duplicate name
    a.record_in("dicom", "raw.dicom")
    assert b"caregraph_messages_in_total{" not in b.render()
    assert b'caregraph_messages_in_total{source="dicom",topic="raw.dicom"} 1.0' in a.render()


def test_memory_is_scraped_by_kind(client: AsgiClient) -> None:
    samples = scrape(client)
    kinds = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "caregraph_memory_bytes"
    }
    # Linux and glibc here; SQLite's own count once a connection has been opened
    assert {"rss_anon", "rss_file", "sqlite", "malloc_free"} <= set(kinds)
    assert kinds["rss_anon"] > 0 and kinds["rss_file"] > 0


def test_sqlite_memory_counts_a_connections_page_cache() -> None:
    import sqlite3

    from observability.memory import MemoryCollector

    collector = MemoryCollector()
    before = collector.values()["sqlite"]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,) for _ in range(4000)])
    assert collector.values()["sqlite"] > before + 2_000_000  # 4 MB of rows, in its cache
    conn.close()


def test_memory_status_off_linux_is_empty() -> None:
    from pathlib import Path

    from observability.memory import read_status

    assert read_status(Path("/nonexistent/status")) == {}
