"""Consumer lag read from a real Kafka-protocol broker, and served at /metrics."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.base import Message
from bus.kafka import KafkaBus
from caregraph.settings import Settings
from caregraph.wiring import open_context
from observability.lag import KafkaLag
from observability.metrics import Metrics
from tests.support.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def total(lag: KafkaLag) -> int:
    return sum(s.lag for s in lag())


def test_lag_counts_what_the_group_has_not_committed_and_moves(kafka_bootstrap: str) -> None:
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    with KafkaBus(kafka_bootstrap, partitions=2) as bus:
        bus.ensure_topics([topic])
        # one publish per message: Tansu reports a partition's end as the last *batch*
        # offset + 1 (Apache Kafka: the last record's), so batches of one agree on both
        for i in range(10):
            bus.publish(topic, b"%d" % i, key=b"%d" % i)
        lag = KafkaLag(kafka_bootstrap, {group: [topic]}, ttl_s=0)
        try:
            samples = lag()
            assert sorted(s.partition for s in samples) == [0, 1]
            assert {(s.group, s.topic) for s in samples} == {(group, topic)}
            assert total(lag) == 10  # never committed: counted from the beginning

            consumer = bus.subscribe(group, [topic])
            seen: list[Message] = []
            deadline = time.monotonic() + 30
            while len(seen) < 10 and time.monotonic() < deadline:
                seen += consumer.poll(timeout_s=0.5)
            assert len(seen) == 10
            consumer.commit(seen)
            consumer.close()
            assert total(lag) == 0

            for _ in range(3):
                bus.publish(topic, b"late", key=b"k")
            assert total(lag) == 3

            metrics = Metrics()
            metrics.watch_lag(lag)
            text = metrics.render().decode()
            assert f'caregraph_consumer_lag{{group="{group}"' in text
        finally:
            lag.close()


def test_answers_are_cached_for_the_ttl(kafka_bootstrap: str) -> None:
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    now = [0.0]
    with KafkaBus(kafka_bootstrap, partitions=1) as bus:
        bus.ensure_topics([topic])
        bus.publish(topic, b"one")
        lag = KafkaLag(kafka_bootstrap, {group: [topic]}, ttl_s=5, clock=lambda: now[0])
        try:
            assert total(lag) == 1
            bus.publish(topic, b"two")
            now[0] = 4.9
            assert total(lag) == 1
            now[0] = 5.0
            assert total(lag) == 2
        finally:
            lag.close()


def test_an_unreachable_broker_yields_no_samples_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lag = KafkaLag(f"127.0.0.1:{free_port()}", {"g": ["t"]}, ttl_s=0, request_timeout_ms=1000)
    with caplog.at_level(logging.WARNING, logger="observability.lag"):
        started = time.monotonic()
        assert lag() == []
        assert lag() == []
    assert time.monotonic() - started < 20
    warnings = [r for r in caplog.records if r.name == "observability.lag"]
    assert len(warnings) == 1 and "consumer lag unavailable" in warnings[0].getMessage()
    lag.close()


def test_a_process_without_groups_opens_no_client_and_watch_adds_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lag = KafkaLag(f"127.0.0.1:{free_port()}", {}, ttl_s=60, request_timeout_ms=1000)
    with caplog.at_level(logging.WARNING, logger="observability.lag"):
        assert lag() == []  # nothing to ask: no connection attempted, nothing logged
        assert not [r for r in caplog.records if r.name == "observability.lag"]
        lag.watch("g", ["t1", "t2"])
        lag.watch("g", ["t2", "t3"])
        assert lag.groups == {"g": ("t1", "t2", "t3")}
        assert lag() == []  # the watch dropped the cached answer: this one asked, and failed
    assert len([r for r in caplog.records if r.name == "observability.lag"]) == 1
    lag.close()


def test_groups_subscribed_through_the_wired_bus_show_their_lag_on_kafka(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = f"lagw-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ctx = open_context(Settings(data_dir=tmp_path, kafka_bootstrap=kafka_bootstrap))
    try:
        ctx.bus.ensure_topics([topic])
        for i in range(4):
            ctx.bus.publish(topic, b"%d" % i, key=b"%d" % i)
        assert f'group="{group}"' not in ctx.metrics.render().decode()
        consumer = ctx.bus.subscribe(group, [topic])
        consumer.close()
        lagging = _lag_samples(ctx.metrics.render().decode(), group)
        assert sum(lagging.values()) == 4
        assert {t for t, _ in lagging} == {topic}
    finally:
        ctx.close()


def _lag_samples(text: str, group: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "caregraph_consumer_lag"
        for s in family.samples
        if s.labels["group"] == group
    }


def test_watching_a_group_does_not_wait_for_a_slow_scrape() -> None:
    """A consumer subscribing (MeteredBus -> watch) while a scrape waits on a broker that
    accepts connections and never answers is not held up by it."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        lag = KafkaLag(f"127.0.0.1:{port}", {"g": ["t"]}, ttl_s=0, request_timeout_ms=3000)
        scrape = threading.Thread(target=lag)
        scrape.start()
        try:
            time.sleep(0.3)  # the scrape is now waiting on the silent broker
            assert scrape.is_alive()
            started = time.monotonic()
            lag.watch("late", ["t2"])
            assert time.monotonic() - started < 0.2
            assert scrape.is_alive()
            assert lag.groups == {"g": ("t",), "late": ("t2",)}
        finally:
            scrape.join(30)
            lag.close()
