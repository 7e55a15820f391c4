"""The intake's mapping handed to the normalizer: taken only for the same bytes, receipt
time and options, and what is taken gives the records the normalizer's own mapping gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.handoff import Handoff
from adapters.hl7v2.intake import judge
from adapters.hl7v2.normalize import DEFAULT_OPTIONS, MAX_MESSAGE_BYTES, Normalized
from adapters.hl7v2.normalizer import records_for
from bus.base import Message
from bus.headers import make_headers
from bus.topics import RAW_HL7V2
from tests.unit.hl7v2 import corpus

AT = datetime(2024, 3, 5, 8, 30, 0, 123456, tzinfo=UTC)


def on_the_bus(raw: bytes, received_at: datetime) -> Message:
    """``raw`` as the listener publishes it: the receipt time in its headers."""
    headers = make_headers("mllp:test", "X", "application/hl7-v2", received_at=received_at)
    return Message(RAW_HL7V2, 0, 0, b"k", raw, headers, 0)


def intake(raw: bytes, received_at: datetime = AT) -> Normalized:
    verdict = judge(raw, received_at=received_at)
    assert verdict.outcome == "AA" and verdict.normalized is not None
    return verdict.normalized


def test_the_normalizer_takes_the_intakes_mapping_and_publishes_the_same_records() -> None:
    raw = corpus.pcd01("H1", 10)
    handoff = Handoff()
    handoff.put(raw, AT, DEFAULT_OPTIONS, intake(raw))
    taken, failures, _ = records_for([on_the_bus(raw, AT)], handoff=handoff)
    mapped, _, _ = records_for([on_the_bus(raw, AT)])
    assert failures == [] and handoff.taken == 1 and len(handoff) == 0
    assert [(r.topic, r.key, r.value, r.headers) for r in taken] == [
        (r.topic, r.key, r.value, r.headers) for r in mapped
    ]


def test_only_the_same_bytes_time_and_options_match() -> None:
    raw = corpus.pcd01("H2", 3)
    handoff = Handoff()
    handoff.put(raw, AT, DEFAULT_OPTIONS, intake(raw))
    same_instant_elsewhere = AT.astimezone(timezone(timedelta(hours=1)))
    assert handoff.take(raw, same_instant_elsewhere, DEFAULT_OPTIONS) is None
    assert handoff.take(raw, AT + timedelta(microseconds=1), DEFAULT_OPTIONS) is None
    assert handoff.take(raw + b"\r", AT, DEFAULT_OPTIONS) is None
    assert handoff.take(raw, AT, Options(default_tz=timezone(timedelta(hours=1)))) is None
    assert handoff.take(raw, AT, DEFAULT_OPTIONS) is not None
    assert handoff.take(raw, AT, DEFAULT_OPTIONS) is None  # taken once


def test_bounded_oldest_first_and_never_larger_than_the_normalizer_reads() -> None:
    handoff = Handoff(capacity=2)
    raws = [corpus.pcd01(f"H3{i}", 1) for i in range(3)]
    for raw in raws:
        handoff.put(raw, AT, DEFAULT_OPTIONS, intake(raw))
    assert len(handoff) == 2
    assert handoff.take(raws[0], AT, DEFAULT_OPTIONS) is None
    assert handoff.take(raws[2], AT, DEFAULT_OPTIONS) is not None
    big = raws[0] + b"NTE|1||" + b"x" * MAX_MESSAGE_BYTES + b"\r"
    handoff.put(big, AT, DEFAULT_OPTIONS, intake(raws[0]))
    assert handoff.take(big, AT, DEFAULT_OPTIONS) is None
