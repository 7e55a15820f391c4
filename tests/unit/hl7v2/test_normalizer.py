"""The raw.hl7v2 -> fhir.* stage: records, keys, headers, dead letters, replay."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

from adapters.hl7v2.normalizer import Hl7v2Normalizer, records_for
from bus.base import Message, Record
from bus.deadletter import decode_deadletter
from bus.headers import MESSAGE_ID, TRACE_ID, make_headers
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, RAW_HL7V2, fhir_topic
from bus.worker import run_consumer
from tests.unit.hl7v2 import corpus
from tests.unit.hl7v2.fhir_valid import assert_valid


def raw_message(value: bytes, offset: int = 0) -> Message:
    headers = make_headers("mllp:test", "X", "application/hl7-v2", trace_id="t" * 32)
    return Message(RAW_HL7V2, 0, offset, b"k", value, headers, 1_709_625_000_000)


def test_records_per_resource_type_with_patient_key_and_trace() -> None:
    records, failures, _ = records_for([raw_message(corpus.pcd01("N1", 10))])
    assert failures == []
    topics = [r.topic for r in records]
    assert topics.count("fhir.Observation") == 10
    assert topics.count("fhir.DeviceMetric") == 10
    assert {"fhir.Patient", "fhir.Device", "fhir.Provenance", "fhir.Location"} <= set(topics)
    assert {r.key for r in records} == {b"NORTH&1.2.840.99999.1.2&ISO|MRN12345"}
    for record in records:
        assert record.headers[TRACE_ID] == "t" * 32
        resource = json.loads(record.value)
        assert record.topic == fhir_topic(resource["resourceType"])
        assert_valid(resource)
        assert b" " not in record.value.split(b'"')[0]  # compact JSON


def test_replay_gives_identical_records() -> None:
    original = raw_message(corpus.ORU_LAB, 1)
    first, _, _ = records_for([original])
    time.sleep(0.01)
    again, _, _ = records_for([original])  # a replay reads the same raw message again
    assert [(r.topic, r.value) for r in first] == [(r.topic, r.value) for r in again]
    # a resend of the same message (new receipt time) upserts the same resources
    resent, _, _ = records_for([raw_message(corpus.ORU_LAB, 9)])
    ids = [json.loads(r.value)["id"] for r in first]
    assert ids == [json.loads(r.value)["id"] for r in resent]


def test_a40_goes_to_parameters_for_linkage() -> None:
    records, _, _ = records_for([raw_message(corpus.ADT_A40)])
    (merge,) = [r for r in records if r.topic == "fhir.Parameters"]
    names = [p["name"] for p in json.loads(merge.value)["parameter"]]
    assert "source-patient" in names and "target-patient" in names


def test_handler_dead_letters_what_does_not_map_and_publishes_the_rest() -> None:
    bus = MemoryBus()
    bad = corpus.ORU_LAB.replace(b"|105|", b"|x|")
    Hl7v2Normalizer(bus)([raw_message(bad, 0), raw_message(corpus.ADT_A01, 1)])
    (dead,) = bus.snapshot(DEADLETTER)
    letter = decode_deadletter(dead.value)
    assert letter.value == bad and letter.offset == 0
    assert "OBX[1]-5" in letter.error
    assert len(bus.snapshot("fhir.Patient")) == 1
    bus.close()


def test_in_the_consume_loop() -> None:
    bus = MemoryBus(partitions=2)
    for i in range(5):
        bus.publish(RAW_HL7V2, corpus.pcd01(f"LOOP{i}", 10), key=b"p", headers={MESSAGE_ID: str(i)})
    stop = threading.Event()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "hl7v2-normalizer", [RAW_HL7V2], Hl7v2Normalizer(bus)),
        kwargs={"stop": stop, "poll_timeout_s": 0.05},
    )
    worker.start()
    deadline = time.monotonic() + 10
    while len(bus.snapshot("fhir.Observation")) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    worker.join(5)
    assert len(bus.snapshot("fhir.Observation")) == 50
    assert bus.snapshot(DEADLETTER) == []
    bus.close()


def test_unchanged_entities_are_published_once_per_handler() -> None:
    bus = MemoryBus()
    handler = Hl7v2Normalizer(bus)
    handler([raw_message(corpus.pcd01("E1", 10), 0)])
    handler([raw_message(corpus.pcd01("E2", 10), 1), raw_message(corpus.pcd01("E3", 10), 2)])
    assert len(bus.snapshot("fhir.Observation")) == 30
    assert len(bus.snapshot("fhir.Provenance")) == 3
    assert len(bus.snapshot("fhir.DeviceMetric")) == 10  # the same monitor three times
    assert len(bus.snapshot("fhir.Device")) == 3
    assert len(bus.snapshot("fhir.Patient")) == 1
    assert handler.skipped == 2 * 18  # Organization, Patient, 3 Locations, 13 devices
    # a changed entity is published again
    moved = corpus.pcd01("E4", 10).replace(b"PV1||I|ICU^101^B", b"PV1||I|ICU^102^A")
    handler([raw_message(moved, 3)])
    assert len(bus.snapshot("fhir.Device")) == 4  # the MDS now has another location
    assert len(bus.snapshot("fhir.Location")) == 5  # room 102 and its bed A are new
    # a new handler (restart, replay) publishes each entity once more
    Hl7v2Normalizer(bus)([raw_message(corpus.pcd01("E5", 10), 4)])
    assert len(bus.snapshot("fhir.DeviceMetric")) == 20
    bus.close()


def test_an_integer_beyond_64_bits_is_written_exactly() -> None:
    """Records are serialized by orjson, which refuses such integers: json takes them."""
    big = 123456789012345678901234
    records, failures, _ = records_for(
        [raw_message(corpus.ORU_LAB.replace(b"|105|", f"|{big}|".encode()))]
    )
    assert failures == []
    values = [
        json.loads(r.value)["valueQuantity"]["value"]
        for r in records
        if r.topic == "fhir.Observation" and b"valueQuantity" in r.value
    ]
    assert big in values


def test_a_batch_is_published_in_steps_each_message_whole() -> None:
    """``publish_every`` messages per publish (the embedded bus's write lock is held for
    one publish); a message's records never straddle two publishes."""
    publishes: list[list[str]] = []

    class Spy(MemoryBus):
        def publish_many(self, records: Sequence[Record]) -> None:
            publishes.append([r.headers[MESSAGE_ID] for r in records])
            super().publish_many(records)

    bus = Spy()
    batch = [
        Message(
            RAW_HL7V2,
            0,
            i,
            b"k",
            corpus.pcd01(f"STEP{i}", 3),
            make_headers("mllp:test", f"m{i}", "application/hl7-v2"),
            0,
        )
        for i in range(7)
    ]
    Hl7v2Normalizer(bus, publish_every=3)(batch)
    assert [sorted(set(ids)) for ids in publishes] == [
        ["m0", "m1", "m2"],
        ["m3", "m4", "m5"],
        ["m6"],
    ]
    assert len(bus.snapshot("fhir.Observation")) == 7 * 3
    bus.close()
