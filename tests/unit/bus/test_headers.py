"""Headers and the trace id rule: carried on, else derived from the message, never random."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bus.base import Message, Record
from bus.headers import (
    MESSAGE_ID,
    SOURCE,
    TRACE_ID,
    derive_trace_id,
    make_headers,
    trace_id_of,
    traced,
    with_trace_ids,
)

T0 = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)


def test_make_headers_carries_a_given_trace_id_and_invents_none() -> None:
    carried = make_headers("mllp:h:1", "C1", "x", trace_id="a" * 32, received_at=T0)
    assert carried[TRACE_ID] == "a" * 32
    assert carried["received-at"] == "2026-01-05T08:00:00.000000+00:00"
    fresh = make_headers("mllp:h:1", "C1", "x", received_at=T0)
    assert TRACE_ID not in fresh
    assert fresh[SOURCE] == "mllp:h:1" and fresh[MESSAGE_ID] == "C1"


def test_the_derived_trace_id_is_a_stable_function_of_topic_id_and_bytes() -> None:
    one = derive_trace_id("raw.hl7v2", "C1", b"MSH|^~\\&|A")
    assert re.fullmatch(r"[0-9a-f]{32}", one)
    assert derive_trace_id("raw.hl7v2", "C1", b"MSH|^~\\&|A") == one
    others = {
        derive_trace_id("raw.device", "C1", b"MSH|^~\\&|A"),
        derive_trace_id("raw.hl7v2", "C2", b"MSH|^~\\&|A"),
        derive_trace_id("raw.hl7v2", "C1", b"MSH|^~\\&|B"),
        derive_trace_id("raw.hl7v2", None, b"MSH|^~\\&|A"),
    }
    assert one not in others and len(others) == 4
    # the parts are length-prefixed: moving a character across a boundary changes the id
    assert derive_trace_id("ab", "c", b"") != derive_trace_id("a", "bc", b"")
    assert derive_trace_id("a", "b", b"c") != derive_trace_id("a", "bc", b"")


def test_trace_id_of_prefers_the_header_and_derives_when_absent_or_empty() -> None:
    assert trace_id_of("t", {TRACE_ID: "given"}, b"x") == "given"
    derived = derive_trace_id("t", "m", b"x")
    assert trace_id_of("t", {MESSAGE_ID: "m"}, b"x") == derived
    assert trace_id_of("t", {MESSAGE_ID: "m", TRACE_ID: ""}, b"x") == derived


def test_with_trace_ids_fills_only_what_is_missing() -> None:
    traced_already = [Record("t", b"1", headers={TRACE_ID: "x"})]
    assert with_trace_ids(traced_already) is traced_already
    mixed = [
        Record("t", b"1", b"k", {TRACE_ID: "x", MESSAGE_ID: "m1"}),
        Record("t", b"2", b"k", {MESSAGE_ID: "m2"}),
    ]
    out = with_trace_ids(mixed)
    assert out[0] is mixed[0]
    assert out[1].headers == {MESSAGE_ID: "m2", TRACE_ID: derive_trace_id("t", "m2", b"2")}
    assert (out[1].topic, out[1].value, out[1].key) == ("t", b"2", b"k")
    assert TRACE_ID not in mixed[1].headers  # the caller's record is not touched


def test_traced_gives_a_consumed_message_its_trace_id() -> None:
    bare = Message("raw.device", 1, 7, b"k", b"frame", {MESSAGE_ID: "dev/1/7"}, 1000)
    stamped = traced(bare)
    assert stamped.headers[TRACE_ID] == derive_trace_id("raw.device", "dev/1/7", b"frame")
    assert (stamped.topic, stamped.partition, stamped.offset) == ("raw.device", 1, 7)
    assert traced(bare).headers == stamped.headers  # a redelivery gets the same one
    assert traced(stamped) is stamped
