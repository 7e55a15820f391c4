"""Which Observations the graph's handler leaves unparsed: those whose bytes show they make
no edge; every other message is parsed (``edgeless_id`` answers None)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from adapters.hl7v2 import normalize
from linkage.graph.edges import edges_of
from linkage.graph.handler import edgeless_id
from tests.unit.hl7v2.corpus import pcd01

READING = {
    "resourceType": "Observation",
    "id": "r1",
    "subject": {"reference": "Patient/p1"},
    "device": {"reference": "DeviceMetric/m1"},
    "effectiveDateTime": "2026-01-01T00:00:00Z",
    "valueQuantity": {"value": 72, "unit": "/min"},
}


def test_a_monitors_readings_are_told_from_their_bytes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        r
        for r in normalize(pcd01("C1"), received_at=now).resources
        if r["resourceType"] == "Observation"
    ]
    assert len(readings) == 10
    for reading in readings:
        assert edges_of(reading) == []
        assert edgeless_id(orjson.dumps(reading)) == reading["id"]


def test_what_may_make_an_edge_is_parsed() -> None:
    measured = {**READING, "device": {"reference": "Device/d1"}}
    absolute = {**READING, "device": {"reference": "http://x/fhir/Device/d1/_history/2"}}
    performed = {**READING, "performer": [{"reference": "Practitioner/dr1"}]}
    for resource in (measured, absolute, performed):
        assert edges_of(resource)
        assert edgeless_id(orjson.dumps(resource)) is None


def test_only_the_builders_own_spelling_is_read_without_parsing() -> None:
    assert edgeless_id(orjson.dumps(READING)) == "r1"
    # an escape could hide a Device reference or a performer
    escaped = orjson.dumps(READING).replace(b'"DeviceMetric/m1"', b'"Device\\/d1"')
    assert edgeless_id(escaped) is None
    # spaces, another key order, another type: the id is not where this looks
    assert edgeless_id(b'{"resourceType": "Observation", "id": "r1"}') is None
    assert edgeless_id(orjson.dumps({"id": "r1", "resourceType": "Observation"})) is None
    device = orjson.dumps({"resourceType": "Device", "id": "r1"})
    assert edgeless_id(device) is None
    # an id FHIR does not allow is not taken
    assert edgeless_id(b'{"resourceType":"Observation","id":"a/b"}') is None
    assert edgeless_id(b'{"resourceType":"Observation","id":"' + b"a" * 65 + b'"}') is None
