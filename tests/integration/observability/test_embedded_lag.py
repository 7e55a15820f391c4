"""Consumer lag on the embedded bus, read from its file, and served at /metrics by the
composition root's wiring."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.base import Message, Record
from bus.embedded import DB_NAME, EmbeddedBus
from caregraph.settings import Settings
from caregraph.wiring import open_context
from observability.lag import EmbeddedLag

pytestmark = pytest.mark.integration


def _lag_samples(text: str, group: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "caregraph_consumer_lag"
        for s in family.samples
        if s.labels["group"] == group
    }


def test_embedded_lag_reports_every_group_in_the_file_and_moves_with_commits(
    tmp_path: Path,
) -> None:
    with EmbeddedBus(tmp_path, partitions=2, fsync=False) as bus:
        bus.ensure_topics(["a", "b"])
        bus.publish_many([Record("a", b"%d" % i, b"%d" % i) for i in range(10)])
        bus.publish_many([Record("b", b"x", b"k") for _ in range(3)])
        lag = EmbeddedLag(tmp_path / DB_NAME, ttl_s=0)
        try:
            assert lag() == []  # no group yet
            lag.watch("idle", ["a", "not-created"])
            assert sum(s.lag for s in lag() if s.group == "idle") == 10
            assert {(s.topic, s.partition) for s in lag()} == {("a", 0), ("a", 1)}

            # a group of another process: known from its member row and its commits
            other = EmbeddedBus(tmp_path, partitions=2, fsync=False)
            consumer = other.subscribe("worker", ["a", "b"])
            seen: list[Message] = []
            deadline = time.monotonic() + 10
            while len(seen) < 13 and time.monotonic() < deadline:
                seen += consumer.poll(0.1)
            assert len(seen) == 13
            assert sum(s.lag for s in lag() if s.group == "worker") == 13
            consumer.commit([m for m in seen if m.topic == "a"])
            by_topic = {
                t: sum(s.lag for s in lag() if s.group == "worker" and s.topic == t)
                for t in ("a", "b")
            }
            assert by_topic == {"a": 0, "b": 3}
            consumer.close()
            other.close()
            # the member left: its commits still name the group, on the topic it committed
            worker = [(s.topic, s.lag) for s in lag() if s.group == "worker"]
            assert sorted(worker) == [("a", 0), ("a", 0)]
            bus.publish("a", b"late", key=b"0")
            assert sum(s.lag for s in lag() if s.group == "worker" and s.topic == "a") == 1
        finally:
            lag.close()


def test_embedded_lag_caches_and_survives_a_missing_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    lag = EmbeddedLag(tmp_path / "nowhere" / DB_NAME, ttl_s=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="observability.lag"):
        assert lag() == []
        now[0] = 10
        assert lag() == []
    assert len([r for r in caplog.records if r.name == "observability.lag"]) == 1
    with EmbeddedBus(tmp_path / "nowhere", partitions=1, fsync=False) as bus:
        bus.publish("t", b"1")
        lag.watch("g", ["t"])  # drops the cache
        assert [s.lag for s in lag()] == [1]
        bus.publish("t", b"2")
        now[0] = 14.9
        assert [s.lag for s in lag()] == [1]  # cached
        now[0] = 15.0
        assert [s.lag for s in lag()] == [2]
    lag.close()


def test_the_wired_embedded_bus_serves_lag_at_metrics(tmp_path: Path) -> None:
    ctx = open_context(Settings(data_dir=tmp_path))
    try:
        ctx.bus.ensure_topics(["raw.hl7v2"])
        for i in range(5):
            ctx.bus.publish("raw.hl7v2", b"MSH|%d" % i, key=b"%d" % i)
        ctx.bus.subscribe("normalizer-hl7v2", ["raw.hl7v2"]).close()
        lagging = _lag_samples(ctx.metrics.render().decode(), "normalizer-hl7v2")
        assert sum(lagging.values()) == 5
    finally:
        ctx.close()
