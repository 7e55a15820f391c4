"""Counting at the bus seam: published records, ACK latency of raw.*, handled messages."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bus.base import Message, Record
from bus.deadletter import deadletter_record
from bus.headers import TRACE_ID, derive_trace_id, make_headers
from bus.memory import MemoryBus
from bus.topics import DEADLETTER
from caregraph.errors import BusUnavailable
from observability.instrument import MeteredBus, instrument_handler, source_label
from observability.logging import configure
from observability.metrics import Metrics

T0 = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class DownBus(MemoryBus):
    def publish_many(self, records: object) -> None:
        raise BusUnavailable("cannot reach Kafka at k:9092")


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("mllp:10.0.0.5:41000", "mllp"),
        ("dicom:CT1", "dicom"),
        ("serial/intellivue", "serial/intellivue"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_source_label_keeps_the_kind_not_the_peer(source: str | None, label: str) -> None:
    assert source_label(source) == label


def test_published_records_count_out_and_raw_ones_time_the_ack() -> None:
    metrics = Metrics()
    inner = MemoryBus(partitions=1)
    bus = MeteredBus(inner, metrics, clock=lambda: T0.timestamp() + 0.004)
    raw = make_headers("mllp:10.0.0.5:41000", "C1", "x-application/hl7-v2+er7", received_at=T0)
    fhir = make_headers("mllp:10.0.0.5:41000", "C1", "application/fhir+json", received_at=T0)
    bus.publish_many(
        [
            Record("raw.hl7v2", b"MSH|1", b"k", raw),
            Record("raw.hl7v2", b"MSH|2", b"k", raw),
            Record("fhir.Observation", b"{}", b"k", fhir),
        ]
    )
    assert value(metrics, "caregraph_messages_out_total", source="mllp", topic="raw.hl7v2") == 2
    out_fhir = value(
        metrics, "caregraph_messages_out_total", source="mllp", topic="fhir.Observation"
    )
    assert out_fhir == 1
    # only the raw records are ACK latencies, 4 ms each
    assert value(metrics, "caregraph_ack_latency_seconds_count", source="mllp") == 2
    ack_sum = value(metrics, "caregraph_ack_latency_seconds_sum", source="mllp")
    assert ack_sum == pytest.approx(0.008, abs=1e-5)
    consumer = inner.subscribe("g", ["raw.hl7v2"])
    assert [m.value for m in consumer.poll(timeout_s=1)] == [b"MSH|1", b"MSH|2"]


def test_a_failed_publish_counts_nothing_and_raises() -> None:
    metrics = Metrics()
    bus = MeteredBus(DownBus(), metrics)
    with pytest.raises(BusUnavailable):
        bus.publish("raw.dicom", b"x", headers=make_headers("dicom:CT1", "1", "application/dicom"))
    assert value(metrics, "caregraph_messages_out_total", source="dicom", topic="raw.dicom") is None


def test_the_metered_bus_still_delivers_and_exposes_what_the_inner_bus_has() -> None:
    inner = MemoryBus(partitions=1)
    bus = MeteredBus(inner, Metrics())
    bus.ensure_topics(["t"])
    bus.publish("t", b"v", key=b"k")
    consumer = bus.subscribe("g", ["t"])
    (message,) = consumer.poll(timeout_s=1)
    consumer.commit([message])
    assert bus.committed("g") == inner.committed("g")  # delegated to MemoryBus
    bus.ping()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure(json=True, stream=stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)


def message(offset: int, source: str, trace: str) -> Message:
    headers = make_headers(source, f"m{offset}", "x", trace_id=trace)
    return Message("raw.hl7v2", 0, offset, b"k", b"v", headers, 0)


def test_handled_messages_count_in_and_a_single_message_logs_its_trace_id(
    json_log: io.StringIO,
) -> None:
    metrics = Metrics()
    log = logging.getLogger("adapters.hl7v2")
    failing = {"m1"}

    def handler(batch: list[Message]) -> None:
        log.info("handling %d", len(batch))
        if any(m.headers["message-id"] in failing for m in batch):
            raise ValueError("bad segment")

    handle = instrument_handler(handler, metrics)
    batch = [message(0, "mllp:10.0.0.5:4100", "t0"), message(1, "mllp:10.0.0.6:4100", "t1")]
    with pytest.raises(ValueError):
        handle(batch)
    assert value(metrics, "caregraph_messages_in_total", source="mllp", topic="raw.hl7v2") is None
    handle([batch[0]])
    with pytest.raises(ValueError):
        handle([batch[1]])
    failing.clear()
    handle(batch)
    assert value(metrics, "caregraph_messages_in_total", source="mllp", topic="raw.hl7v2") == 3
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert [line.get("trace_id") for line in lines] == [None, "t0", "t1", None]


def test_dead_letters_count_per_original_topic_and_error_type() -> None:
    metrics = Metrics()
    bus = MeteredBus(MemoryBus(partitions=1), metrics)
    poison = message(7, "mllp:10.0.0.5:4100", "t7")
    bus.publish_many(
        [
            deadletter_record(poison, "normalizer-hl7v2", "MappingError: OBX-3 has no code", 3),
            deadletter_record(poison, "normalizer-hl7v2", "MappingError: PID-3 is empty", 3),
            Record(DEADLETTER, b"not json", None, {}),
        ]
    )
    mapping = value(
        metrics, "caregraph_deadletters_total", topic="raw.hl7v2", reason="MappingError"
    )
    assert mapping == 2
    assert value(metrics, "caregraph_deadletters_total", topic="unknown", reason="unreadable") == 1


def test_every_published_record_leaves_traced_and_raw_ones_log_their_trace_id(
    json_log: io.StringIO,
) -> None:
    inner = MemoryBus(partitions=1)
    bus = MeteredBus(inner, Metrics())
    raw = make_headers("mllp:10.0.0.5:41000", "C1", "x-application/hl7-v2+er7", received_at=T0)
    carried = make_headers("mllp:10.0.0.5:41000", "C1", "application/fhir+json", trace_id="t9")
    bus.publish_many(
        [Record("raw.hl7v2", b"MSH|1", b"k", raw), Record("fhir.Observation", b"{}", b"k", carried)]
    )
    derived = derive_trace_id("raw.hl7v2", "C1", b"MSH|1")
    assert [m.headers[TRACE_ID] for m in inner.snapshot("raw.hl7v2")] == [derived]
    assert [m.headers[TRACE_ID] for m in inner.snapshot("fhir.Observation")] == ["t9"]
    # the sender resends the same bytes: the same trace id, so the same stored resources
    bus.publish("raw.hl7v2", b"MSH|1", key=b"k", headers=raw)
    assert [m.headers[TRACE_ID] for m in inner.snapshot("raw.hl7v2")] == [derived, derived]

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert len(lines) == 2  # raw.* records only: the gateway's end of the trace
    for line in lines:
        assert line["logger"] == "observability.trace"
        assert line["trace_id"] == derived
        assert line["message_id"] == "C1" and line["topic"] == "raw.hl7v2"
        assert derived in line["message"]


def test_subscriptions_are_reported_with_their_topics() -> None:
    seen: list[tuple[str, list[str]]] = []
    bus = MeteredBus(
        MemoryBus(partitions=1), Metrics(), on_subscribe=lambda g, t: seen.append((g, list(t)))
    )
    with bus.subscribe("store-writer", iter(["fhir.Observation", "fhir.Patient"])) as consumer:
        consumer.poll(0.01)
    assert seen == [("store-writer", ["fhir.Observation", "fhir.Patient"])]
