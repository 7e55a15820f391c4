"""Each reading's patient: resolved at device time by the device normalizer, one index per
batch; readings with no attachment are kept, linked to the device, tagged unassigned."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings

from adapters.registry.associations import AssociationIndex, Attachment
from adapters.serial import datex
from adapters.serial import headers as dh
from adapters.serial.measurement import Measurement
from adapters.serial.normalize import OBSERVATION_TOPIC, SubjectAt, observation_records
from adapters.serial.observation import (
    TAG_SYSTEM,
    UNASSIGNED,
    device_resource_id,
    observation_from_measurement,
)
from bus import headers as bh
from bus.base import Message
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE
from devices.serial.normalizer import normalize_batch
from tests.unit.serial.test_observation import measurements

ARRIVAL = datetime(2026, 8, 1, 10, 0, tzinfo=UTC)
DEVICE_TIME = 1_780_000_000  # 2026-05-28T20:26:40Z: the device's clock, long before arrival
DEVICE_DT = datetime.fromtimestamp(DEVICE_TIME, UTC)
A = {"reference": "Patient/a"}
B = {"reference": "Patient/b"}


def _datex(device_id: str, seq: int) -> Message:
    on = datex.GROUP_EXISTS | datex.GROUP_ACTIVE
    raw = datex.encode_frame(datex.encode_phdb_record(DEVICE_TIME, {"ecg.hr": 61}, {0: on}))
    headers = bh.make_headers("serial/datex", f"{device_id}/1/{seq}", "x", received_at=ARRIVAL)
    headers[dh.PROTOCOL] = "datex"
    headers[dh.DEVICE_ID] = device_id
    return Message(RAW_DEVICE, 0, seq, device_id.encode(), raw, headers, 0)


@settings(max_examples=100, deadline=None)
@given(measurements())
def test_assigned_and_unassigned_observations_are_valid_r4(m: Measurement) -> None:
    assigned = observation_from_measurement(m, {"reference": "Patient/p1", "display": "Jo"})
    Observation.model_validate(assigned)
    assert assigned["subject"] == {"reference": "Patient/p1", "display": "Jo"}
    assert "meta" not in assigned
    unassigned = observation_from_measurement(m)
    Observation.model_validate(unassigned)
    assert "subject" not in unassigned
    assert unassigned["meta"]["tag"][0]["system"] == TAG_SYSTEM
    assert unassigned["meta"]["tag"][0]["code"] == UNASSIGNED
    assert unassigned["device"] == assigned["device"]


def test_patient_comes_from_the_device_time_not_arrival() -> None:
    # A attached around the device time; B attached when the frame arrived.
    index = AssociationIndex(
        [
            Attachment(
                "mon-1", A, DEVICE_DT - timedelta(hours=1), ARRIVAL - timedelta(days=1), "1"
            ),
            Attachment("mon-1", B, ARRIVAL - timedelta(days=1), None, "2"),
        ]
    )
    (record,) = observation_records(_datex("mon-1", 1), index.subject_at)
    obs = json.loads(record.value)
    assert obs["effectiveDateTime"] == "2026-05-28T20:26:40.000Z"
    assert obs["subject"] == A
    (other,) = observation_records(_datex("mon-2", 2), index.subject_at)
    obs2 = json.loads(other.value)
    assert "subject" not in obs2
    assert obs2["meta"]["tag"][0]["code"] == UNASSIGNED
    assert obs2["device"]["reference"] == f"Device/{device_resource_id('mon-2')}"


def test_the_resolver_is_asked_once_per_batch_not_per_reading() -> None:
    calls: list[int] = []
    seen: list[tuple[str, datetime]] = []

    def lookup(device_id: str, when: datetime) -> Mapping[str, Any] | None:
        seen.append((device_id, when))
        return A

    def resolver() -> SubjectAt:
        calls.append(1)
        return lookup

    bus = MemoryBus(partitions=1)
    batch = [_datex("mon-1", i) for i in range(25)]
    assert normalize_batch(bus, batch, resolver=resolver) == 25
    assert len(calls) == 1
    assert len(seen) == 25 and {w for _, w in seen} == {DEVICE_DT}
    stored = [json.loads(m.value) for m in bus.snapshot(OBSERVATION_TOPIC)]
    assert {o["subject"]["reference"] for o in stored} == {"Patient/a"}
    assert Decimal(str(stored[0]["valueQuantity"]["value"])) == 61
