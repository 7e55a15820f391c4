"""raw.device -> fhir.Observation: every protocol, deterministic on replay, dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B.observation import Observation

from adapters.serial import astm, datex, medibus
from adapters.serial import headers as dh
from adapters.serial import intellivue as iv
from adapters.serial.errors import UnknownProtocol, WireError
from adapters.serial.normalize import OBSERVATION_TOPIC, observation_records
from bus import headers as bh
from bus.base import Message
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, RAW_DEVICE
from devices.serial.normalizer import normalize_batch

T0 = datetime(2026, 8, 1, 10, 0, tzinfo=UTC)


def _message(protocol: str, raw: bytes, extra: dict[str, str] | None = None) -> Message:
    headers = bh.make_headers(f"serial/{protocol}", f"{protocol}-dev/1/7", "x", received_at=T0)
    headers[dh.PROTOCOL] = protocol
    headers[dh.DEVICE_ID] = f"{protocol}-dev"
    headers.update(extra or {})
    return Message(RAW_DEVICE, 0, 7, f"{protocol}-dev".encode(), raw, headers, 0)


def _samples() -> list[Message]:
    obj = iv.NumericObject(1, 0x24182, (iv.NuObs(0x4182, 0, 0x0AA0, iv.encode_float(Decimal(61))),))
    anchor = iv.TimeAnchor(0, T0)
    on = datex.GROUP_EXISTS | datex.GROUP_ACTIVE
    return [
        _message(
            "astm", b"".join(astm.encode_message([b"H|\\^&|||X", b"R|1|^^^K|4.2|mmol/L", b"L|1"]))
        ),
        _message(
            "intellivue",
            iv.encode_frame(iv.poll_reply(1, 1, 8000, None, [obj])),
            {dh.TIME_ANCHOR: anchor.header()},
        ),
        _message(
            "datex",
            datex.encode_frame(datex.encode_phdb_record(1_780_000_000, {"ecg.hr": 61}, {0: on})),
        ),
        _message(
            "medibus",
            medibus.encode_response(medibus.MEASURED_CP1, medibus.encode_measured([(0xD6, "12")])),
            {dh.DEVICE_TIME: T0.isoformat()},
        ),
    ]


@pytest.mark.parametrize("msg", _samples(), ids=lambda m: m.headers[dh.PROTOCOL])
def test_each_protocol_normalizes_to_valid_observations(msg: Message) -> None:
    records = observation_records(msg)
    assert records and all(r.topic == OBSERVATION_TOPIC for r in records)
    for r in records:
        obs = json.loads(r.value)
        Observation.model_validate(obs)
        assert r.key == msg.key and r.headers[bh.MESSAGE_ID] == obs["id"]
        assert obs["issued"] == "2026-08-01T10:00:00.000Z"
    # Replaying the same raw message gives the same resources, byte for byte.
    assert [r.value for r in observation_records(msg)] == [r.value for r in records]


def test_intellivue_device_time_comes_from_the_anchor() -> None:
    msg = _samples()[1]
    (record,) = observation_records(msg)
    assert json.loads(record.value)["effectiveDateTime"] == "2026-08-01T10:00:01.000Z"


def test_unknown_protocol_and_broken_bytes_raise() -> None:
    with pytest.raises(UnknownProtocol):
        observation_records(_message("telepathy", b"x"))
    with pytest.raises(WireError):
        observation_records(_message("intellivue", b"\xc0\x11\x01garbage\xc1"))


def test_batch_dead_letters_bad_messages_and_keeps_good_ones() -> None:
    bus = MemoryBus()
    good = _samples()
    bad = _message("datex", b"\x7e\x00\x7e")
    sent = normalize_batch(bus, [good[0], bad, good[3]])
    assert sent == 2
    assert len(bus.snapshot(OBSERVATION_TOPIC)) == 2
    (dead,) = bus.snapshot(DEADLETTER)
    body = json.loads(dead.value)
    assert body["topic"] == RAW_DEVICE and "WireError" in body["error"]


def _astm_with_patient(pid: str, test: bytes = b"K") -> Message:
    result = b"R|1|^^^" + test + b"|4.2|mmol/L"
    records = [b"H|\\^&|||X", b"P|1|" + pid.encode(), result, b"L|1"]
    return _message("astm", b"".join(astm.encode_message(records)))


def test_a_patient_id_the_analyzer_reports_names_the_patient() -> None:
    asked: list[str] = []

    def by_hint(hint: str) -> dict[str, str] | None:
        asked.append(hint)
        return {"reference": "Patient/p7"} if hint == "MRN7" else None

    def attached(device_id: str, when: datetime) -> dict[str, str]:
        return {"reference": "Patient/bed-occupant"}

    [found] = observation_records(_astm_with_patient("MRN7"), attached, by_hint)
    assert json.loads(found.value)["subject"] == {"reference": "Patient/p7"}
    # an id no single Patient has: the device's attachment decides
    [other] = observation_records(_astm_with_patient("NOPE"), attached, by_hint)
    assert json.loads(other.value)["subject"] == {"reference": "Patient/bed-occupant"}
    assert asked == ["MRN7", "NOPE"]


def test_an_unresolved_patient_id_stays_on_the_unassigned_reading() -> None:
    [rec] = observation_records(_astm_with_patient("MRN9"), None, lambda hint: None)
    obs = json.loads(rec.value)
    assert obs["meta"]["tag"][0]["code"] == "unassigned"
    assert obs["subject"]["identifier"] == {"value": "MRN9"}
    assert "reference" not in obs["subject"]
    Observation.model_validate(obs)


def test_a_registered_patient_id_system_narrows_the_lookup_and_the_logical_reference() -> None:
    asked: list[tuple[str, ...]] = []

    def by_hint(hint: str, *system: str | None) -> dict[str, str] | None:
        asked.append((hint, *system))
        return None

    mrn = {dh.PATIENT_ID_SYSTEM: "urn:oid:1.2.3"}
    [rec] = observation_records(_with_headers(_astm_with_patient("MRN9"), mrn), None, by_hint)
    obs = json.loads(rec.value)
    # the system the driver stamped reaches the lookup and the unassigned reading
    assert obs["subject"]["identifier"] == {"system": "urn:oid:1.2.3", "value": "MRN9"}
    Observation.model_validate(obs)
    # without the header (a device with no system registered): the value alone, as before
    observation_records(_astm_with_patient("MRN9"), None, by_hint)
    assert asked == [("MRN9", "urn:oid:1.2.3"), ("MRN9",)]


def _with_headers(msg: Message, extra: dict[str, str]) -> Message:
    return Message(
        msg.topic, msg.partition, msg.offset, msg.key, msg.value, {**msg.headers, **extra}, 0
    )


def test_a_reading_with_only_a_vendor_code_is_counted_as_unmatched() -> None:
    from adapters.codes import unmatched

    key = ("serial/astm", "vendor", unmatched.UNKNOWN_CODE)
    before = unmatched.TALLY.snapshot().get(key, 0)
    [rec] = observation_records(_astm_with_patient("MRN1", b"ZZ9"))  # no table knows ZZ9
    codings = json.loads(rec.value)["code"]["coding"]
    assert [c["system"] for c in codings] == ["urn:caregraph:device-code:astm"]
    assert unmatched.TALLY.snapshot()[key] == before + 1
