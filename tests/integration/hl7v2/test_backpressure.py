"""Flow control over a real socket and the embedded bus: while the store writer's backlog
is above the gate's bound the listener holds the ACK, and answers once the writer has
caught up (``caregraph.backpressure``)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus import RAW_HL7V2
from bus.base import Bus, Record
from bus.embedded import EmbeddedBus
from bus.kafka import KafkaBus
from bus.topics import fhir_topic
from caregraph.backpressure import STORE_WRITER_GROUP, BacklogGate, StoreWriterBacklog
from caregraph.settings import Settings
from devices.feeds.hl7 import HospitalFeed
from devices.mllp.client import MllpClient
from devices.mllp.listener import MllpListener

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
OBSERVATIONS = fhir_topic("Observation")


def _consume(bus: Bus, group: str, topic: str, n: int, timeout_s: float = 30.0) -> int:
    """Read and commit ``n`` messages of ``topic`` as ``group`` (fewer if they do not come
    within ``timeout_s``); how many were read."""
    taken = 0
    deadline = time.monotonic() + timeout_s
    with bus.subscribe(group, [topic]) as consumer:
        while taken < n and time.monotonic() < deadline:
            batch = consumer.poll(timeout_s=0.5)
            consumer.commit(batch)
            taken += len(batch)
    return taken


def test_the_ack_waits_for_the_store_writer_to_catch_up(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus", partitions=1)
    backlog = StoreWriterBacklog(Settings(data_dir=tmp_path))
    gate = BacklogGate(backlog, 10, poll_s=0.05, max_hold_s=30.0)
    try:
        bus.publish_many([Record(OBSERVATIONS, b"{}", b"k", {}) for _ in range(30)])
        assert backlog() == 30
        gate.start()
        deadline = time.monotonic() + 10
        while gate.is_open and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not gate.is_open
        feed = HospitalFeed(1)
        acks: list[bytes] = []
        with MllpListener("127.0.0.1", 0, bus, admit=gate.admit) as listener:
            client = MllpClient(*listener.address)
            sender = threading.Thread(
                target=lambda: acks.append(client.send(feed.admission(feed.patients[0], WHEN)))
            )
            try:
                sender.start()
                sender.join(0.5)
                assert not acks  # held
                assert _consume(bus, STORE_WRITER_GROUP, OBSERVATIONS, 30) == 30
                sender.join(10)
            finally:
                client.close()
            assert listener.stats.held == 1
        assert len(acks) == 1 and b"MSA|CA|" in acks[0]
        with bus.subscribe("check", [RAW_HL7V2]) as check:
            assert len(check.poll(timeout_s=2.0)) == 1  # published once, after the hold
    finally:
        gate.stop()  # closes the backlog's reader too
        bus.close()


def test_the_backlog_is_read_from_kafka_too(kafka_bootstrap: str) -> None:
    topic = f"test.backlog.{uuid.uuid4().hex}"
    group = f"writer-{uuid.uuid4().hex}"
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    backlog = StoreWriterBacklog(settings, group=group, topics=[topic])
    try:
        with KafkaBus(kafka_bootstrap, partitions=1) as bus:
            # one record a batch: Tansu (memory storage) answers ListOffsets "latest" with
            # the last batch's base offset + 1, not the last offset + 1 as Kafka does
            for _ in range(30):
                bus.publish_many([Record(topic, b"{}", b"k", {})])
            assert backlog() == 30
            assert _consume(bus, group, topic, 30) == 30
            assert backlog() == 0
    finally:
        backlog.close()
