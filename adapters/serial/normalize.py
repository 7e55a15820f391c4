"""raw.device message -> measurements -> ``fhir.Observation`` records. Pure: the same raw
message (replayed after a mapping fix) always gives the same Observations with the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.codes import unmatched
from adapters.serial import astm, datex, intellivue, medibus
from adapters.serial import headers as dh
from adapters.serial.errors import UnknownProtocol, WireError
from adapters.serial.measurement import Measurement, local_zone
from adapters.serial.observation import observation_from_measurement, reading_time
from bus import headers as bh
from bus.base import Message, Record
from bus.topics import fhir_topic

OBSERVATION_TOPIC = fhir_topic("Observation")

Decoder = Callable[[bytes, Mapping[str, str], str, str, datetime], list[Measurement]]
# (device id, device time) -> the patient Reference valid then, or None: unassigned.
SubjectAt = Callable[[str, datetime], Mapping[str, Any] | None]


class PatientByHint(Protocol):
    """A patient id the device itself reported (ASTM P record) -> the one Patient with that
    identifier (of ``system`` when given, else of any system), or None when no Patient or
    several have it. Called with ``system`` only when the device's registration names one,
    so a plain ``hint -> Reference`` function serves devices without one."""

    def __call__(self, hint: str, system: str | None = ..., /) -> Mapping[str, Any] | None: ...


def _astm(
    raw: bytes, headers: Mapping[str, str], device_id: str, message_id: str, received: datetime
) -> list[Measurement]:
    tz = local_zone(int(headers.get(dh.UTC_OFFSET, "0") or 0))
    frames = _split_astm_frames(raw)
    return astm.measurements(frames, device_id, message_id, received, tz)


def _split_astm_frames(raw: bytes) -> list[bytes]:
    events = astm.Framer().feed(raw)
    frames = [e.raw for e in events if isinstance(e, astm.Frame)]
    if len(frames) != len(events):
        raise WireError("stored ASTM message holds bytes that are not good frames")
    return frames


def _intellivue(
    raw: bytes, headers: Mapping[str, str], device_id: str, message_id: str, received: datetime
) -> list[Measurement]:
    events = intellivue.Framer().feed(raw)
    if len(events) != 1 or not isinstance(events[0], intellivue.Frame):
        raise WireError("stored IntelliVue message is not one good frame")
    anchor_text = headers.get(dh.TIME_ANCHOR)
    anchor = intellivue.TimeAnchor.parse(anchor_text) if anchor_text else None
    return intellivue.measurements(
        events[0].user_data, device_id, message_id, received, anchor, raw
    )


def _datex(
    raw: bytes, headers: Mapping[str, str], device_id: str, message_id: str, received: datetime
) -> list[Measurement]:
    events = datex.Framer().feed(raw)
    if len(events) != 1 or not isinstance(events[0], datex.Frame):
        raise WireError("stored Datex message is not one good frame")
    tz = local_zone(int(headers.get(dh.UTC_OFFSET, "0") or 0))
    return datex.measurements(events[0].record, device_id, message_id, received, tz, raw)


def _medibus(
    raw: bytes, headers: Mapping[str, str], device_id: str, message_id: str, received: datetime
) -> list[Measurement]:
    events = medibus.Framer().feed(raw)
    if len(events) != 1 or not isinstance(events[0], medibus.Message):
        raise WireError("stored Medibus message is not one good message")
    device_text = headers.get(dh.DEVICE_TIME)
    device_time = datetime.fromisoformat(device_text) if device_text else None
    return medibus.measurements(events[0], device_id, message_id, received, device_time)


DECODERS: dict[str, Decoder] = {
    medibus.PROTOCOL: _medibus,
    astm.PROTOCOL: _astm,
    intellivue.PROTOCOL: _intellivue,
    datex.PROTOCOL: _datex,
}


def register(protocol: str, decoder: Decoder) -> None:
    """Add a protocol's decoder (each protocol module registers itself below)."""
    DECODERS[protocol] = decoder


def measurements_from_message(msg: Message) -> list[Measurement]:
    """Decode one raw.device message.

    Raises:
        UnknownProtocol: no decoder for the message's protocol header.
        WireError: the bytes break the protocol.
    """
    protocol = msg.headers.get(dh.PROTOCOL, "")
    decoder = DECODERS.get(protocol)
    if decoder is None:
        raise UnknownProtocol(f"no decoder for device protocol {protocol!r}", dh.PROTOCOL)
    device_id = msg.headers.get(dh.DEVICE_ID) or (msg.key or b"").decode()
    message_id = msg.headers.get(bh.MESSAGE_ID) or f"{msg.topic}/{msg.partition}/{msg.offset}"
    received_text = msg.headers.get(bh.RECEIVED_AT)
    received = (
        datetime.fromisoformat(received_text)
        if received_text
        else datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC)
    )
    found = decoder(msg.value, msg.headers, device_id, message_id, received)
    system = msg.headers.get(dh.PATIENT_ID_SYSTEM)
    if system:
        found = [replace(m, patient_id_system=system) if m.patient_hint else m for m in found]
    return found


def observation_records(
    msg: Message,
    subject_at: SubjectAt | None = None,
    patient_by_hint: PatientByHint | None = None,
) -> list[Record]:
    """The ``fhir.Observation`` records for one raw.device message, keyed by device.

    A patient id the device reported itself (a lab analyzer's patient record) names the
    patient when ``patient_by_hint`` finds exactly one Patient with it (an identifier of the
    system the device's registration names, stamped by its driver in the
    ``device-patient-id-system`` header; of any system without one): an analyzer on a lab
    bench is attached to no patient, and its sample's patient beats a bed's attachment.
    Otherwise ``subject_at`` resolves each reading's patient at its device time (an in-memory
    index: it is called once per reading); without either, the reading is unassigned (and
    keeps an unresolved hint as a logical reference). A replay with a newer index
    re-assigns readings to attachments registered after they arrived.

    Raises:
        UnknownProtocol, WireError: as ``measurements_from_message``.
    """
    out: list[Record] = []
    trace = msg.headers.get(bh.TRACE_ID, "")
    for m in measurements_from_message(msg):
        subject = None
        if m.patient_hint and patient_by_hint is not None:
            subject = (
                patient_by_hint(m.patient_hint, m.patient_id_system)
                if m.patient_id_system
                else patient_by_hint(m.patient_hint)
            )
        if subject is None and subject_at is not None:
            subject = subject_at(m.device_id, reading_time(m))
        if m.mdc_code is None and m.loinc is None:
            # kept with its vendor code only; counted so someone extends the code tables
            unmatched.count(f"serial/{m.protocol}", "vendor")
        obs = observation_from_measurement(m, subject)
        headers = {
            bh.SOURCE: msg.headers.get(bh.SOURCE, "serial"),
            bh.MESSAGE_ID: obs["id"],
            bh.RECEIVED_AT: m.received_at.isoformat(timespec="microseconds"),
            bh.CONTENT_TYPE: "application/fhir+json",
            bh.TRACE_ID: trace,
            dh.DEVICE_ID: m.device_id,
        }
        value = json.dumps(obs, separators=(",", ":")).encode()
        out.append(Record(OBSERVATION_TOPIC, value, m.device_id.encode(), headers))
    return out
