"""The second stage: ``raw.hl7v2`` messages in, ``fhir.<ResourceType>`` records out.

``records_for`` is pure: bus Messages in, bus Records out, failures returned beside them.
``Hl7v2Normalizer`` is the thin handler the composition root gives to
``bus.worker.run_consumer``; it publishes the records (and dead letters for messages that
no longer map, e.g. after a mapping change) in one batch.

    run_consumer(bus, "hl7v2-normalizer", [RAW_HL7V2], Hl7v2Normalizer(bus), stop=stop)

Every record's value is the compact JSON of one resource, its key the patient key (so a
patient's resources keep their order on every topic), its headers carry the raw message's
trace id and id on. A40 merges go to ``fhir.Parameters`` in the $merge form linkage reads.
Replaying ``raw.hl7v2`` produces the same ids, so the store upserts instead of duplicating.

Enhanced acknowledgement mode: for a message whose MSH-15 and MSH-16 ask for an
application ACK (``adapters.hl7v2.ack.application_ack_wanted``), the normalizer adds the
ACK to the same batch, on ``ack.hl7v2``: AA beside the FHIR records, AE (with the ERR
location) beside the dead letter of a message that does not map. Published in one
``publish_many`` with the resources, so the ACK is never out before what it confirms.
``devices.mllp.returns`` delivers it to the sender's return address; a replay builds the
same ACK control id, which that sender delivers once. Off unless asked for
(``application_acks=True``): the composition root turns it on together with the topic and
the return channel that consumes it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.codes import unmatched
from adapters.hl7v2.ack import AckCode, AckError, application_ack_wanted, build_application_ack
from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.handoff import Handoff
from adapters.hl7v2.header import Header, peek_header
from adapters.hl7v2.normalize import DEFAULT_OPTIONS, normalize
from bus.base import Bus, Message, Record
from bus.deadletter import deadletter_record, describe
from bus.headers import MESSAGE_ID, RECEIVED_AT, SOURCE, TRACE_ID, make_headers
from bus.topics import fhir_topic
from caregraph.errors import MappingError

SOURCE_HL7V2 = "hl7v2"
"""The ``source`` label of the unknown codes counted here."""
CONTENT_TYPE_FHIR = "application/fhir+json"
CONTENT_TYPE_HL7V2 = "application/hl7-v2"
HEADER_RAW_OFFSET = "raw-offset"
ACK_HL7V2 = "ack.hl7v2"
"""Enhanced-mode application ACKs waiting for delivery to their sender (an outbox)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A raw message that could not be normalized, and why."""

    message: Message
    error: MappingError


def _received_at(message: Message) -> datetime:
    stamp = message.headers.get(RECEIVED_AT)
    if stamp:
        try:
            parsed = datetime.fromisoformat(stamp)
            if parsed.tzinfo is not None:
                return parsed
        except ValueError:
            pass
    return datetime.fromtimestamp(message.timestamp_ms / 1000, UTC)


def application_ack_record(
    message: Message, header: Header, code: AckCode, error: AckError | None = None
) -> Record:
    """The ``ack.hl7v2`` record of an application ACK: keyed by the sender (so one
    sender's ACKs keep their order), with the raw message's id and trace id."""
    ack = build_application_ack(header, code, error)
    headers = make_headers(
        "hl7v2-normalizer",
        message.headers.get(MESSAGE_ID, header.control_id),
        CONTENT_TYPE_HL7V2,
        trace_id=message.headers.get(TRACE_ID),
    )
    headers[HEADER_RAW_OFFSET] = f"{message.topic}/{message.partition}/{message.offset}"
    sender = f"{header.sending_application}|{header.sending_facility}"
    return Record(ACK_HL7V2, ack, sender.encode("utf-8"), headers)


def _dumps(resource: object) -> bytes:
    """Compact UTF-8 JSON, by orjson (a tenth of the stage's CPU went to ``json.dumps``);
    ``json`` for what orjson refuses (an integer beyond 64 bits, from an OBX-5 like
    ``123456789012345678901``)."""
    try:
        return orjson.dumps(resource)
    except TypeError:
        return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# Resources that exist once per message; everything else is an entity (Patient, Device...)
# that most messages repeat unchanged.
MESSAGE_SCOPED = frozenset({"Observation", "Provenance"})

Unchanged = Callable[[dict[str, Any]], bool]


def records_for(
    messages: Sequence[Message],
    *,
    options: Options = DEFAULT_OPTIONS,
    unchanged: Unchanged | None = None,
    application_acks: bool = False,
    handoff: Handoff | None = None,
) -> tuple[list[Record], list[Failure], list[dict[str, Any]]]:
    """FHIR records for a batch of ``raw.hl7v2`` messages, in order; the failures; and the
    entity resources the records include.

    ``unchanged`` (optional) says of an entity resource (not an Observation or Provenance)
    that it is known to be on the bus already as it is: it is then left out.
    ``application_acks``: add the enhanced-mode application ACKs (module docstring),
    AA for mapped messages here, AE for failures (their records are the caller's, beside
    the dead letter: ``failure_ack``). ``handoff``: where the intake of this process left
    its mapping of a message, taken instead of mapping it again.
    """
    records: list[Record] = []
    failures: list[Failure] = []
    entities: list[dict[str, Any]] = []
    for message in messages:
        received_at = _received_at(message)
        taken = handoff.take(message.value, received_at, options) if handoff else None
        try:
            result = taken or normalize(message.value, received_at=received_at, options=options)
        except MappingError as exc:
            failures.append(Failure(message, exc))
            continue
        # Counted here, in the normalizer stage, once per message (the gateway also maps
        # each message, to answer AE at once, and must not count it a second time).
        for (system, kind), n in result.unmatched.items():
            unmatched.count(SOURCE_HL7V2, system, kind, n)
        key = (result.patient_key or result.header.control_id).encode("utf-8")
        headers = make_headers(
            message.headers.get(SOURCE, "hl7v2"),
            message.headers.get(MESSAGE_ID, result.header.control_id),
            CONTENT_TYPE_FHIR,
            trace_id=message.headers.get(TRACE_ID),
            received_at=received_at,
        )
        headers[HEADER_RAW_OFFSET] = f"{message.topic}/{message.partition}/{message.offset}"
        for resource in result.resources:
            resource_type = resource["resourceType"]
            if resource_type not in MESSAGE_SCOPED:
                if unchanged is not None and unchanged(resource):
                    continue
                entities.append(resource)
            records.append(Record(fhir_topic(resource_type), _dumps(resource), key, headers))
        for merge in result.merges:
            records.append(
                Record(fhir_topic("Parameters"), _dumps(merge.as_parameters()), key, headers)
            )
        if application_acks and application_ack_wanted(result.header, "AA"):
            records.append(application_ack_record(message, result.header, "AA"))
    return records, failures, entities


def failure_ack(failure: Failure) -> Record | None:
    """The AE application ACK for a message that did not map, if its sender asked."""
    header = peek_header(failure.message.value[:65536])
    if header is None or not application_ack_wanted(header, "AE"):
        return None
    return application_ack_record(
        failure.message, header, "AE", AckError.from_exception(failure.error)
    )


class Hl7v2Normalizer:
    """``run_consumer`` handler: normalize a batch, publish records and dead letters at once,
    ``publish_every`` messages' worth per ``publish_many``.

    A message that does not map is dead-lettered here (original bytes, error with its
    segment/field location) rather than raised, so its neighbours in the batch are not
    retried for nothing; bus errors propagate, so the consume loop retries the batch (what
    earlier publishes of it wrote comes again: the ids are the same, so the store upserts).
    A message's records, dead letter and application ACK always go in one publish.

    Why not the whole batch in one publish: on the embedded bus a publish is one write
    transaction, and every other writer of the log waits for it, the MLLP listener with
    its senders' ACKs among them; 500 messages (some 6,000 records) held the lock for tens
    of milliseconds, 100 for a fifth of that, for a few more commits.

    Entity resources (a monitor's Devices and DeviceMetrics, the Patient, the bed) repeat
    in every message of a feed; one equal to what this handler last published under its
    type and id (for the last ``remember`` entities) is not published again. That only
    saves work downstream: a new handler (restart, replay) publishes each entity once more,
    and the store treats an identical resource as no change anyway.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        group: str = "hl7v2-normalizer",
        options: Options = DEFAULT_OPTIONS,
        remember: int = 50_000,
        application_acks: bool = False,
        publish_every: int = 100,
        handoff: Handoff | None = None,
    ) -> None:
        if publish_every < 1:
            raise ValueError(f"publish_every must be >= 1, not {publish_every}")
        self.bus = bus
        self.publish_every = publish_every
        self.group = group
        self.application_acks = application_acks
        self.handoff = handoff
        self.options = options
        self.remember = remember
        self._published: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.skipped = 0

    def _unchanged(self, resource: dict[str, Any]) -> bool:
        key = (resource["resourceType"], resource["id"])
        same = self._pending.get(key, self._published.get(key)) == resource
        if same:
            self.skipped += 1
        else:
            self._pending[key] = resource  # later copies in this batch are unchanged
        return same

    def __call__(self, messages: list[Message]) -> None:
        step = self.publish_every
        for start in range(0, len(messages), step):
            self._handle(messages[start : start + step])

    def _handle(self, messages: list[Message]) -> None:
        self._pending = {}
        records, failures, entities = records_for(
            messages,
            options=self.options,
            unchanged=self._unchanged if self.remember else None,
            application_acks=self.application_acks,
            handoff=self.handoff,
        )
        for failure in failures:
            error = describe(failure.error)
            if failure.error.location:
                error += f" at {failure.error.location}"
            records.append(deadletter_record(failure.message, self.group, error, attempts=1))
            ack = failure_ack(failure) if self.application_acks else None
            if ack is not None:
                records.append(ack)
        if records:
            self.bus.publish_many(records)
        # only what is durable on the bus may be skipped next time
        for resource in entities:
            key = (resource["resourceType"], resource["id"])
            self._published[key] = resource
            self._published.move_to_end(key)
        while len(self._published) > self.remember:
            self._published.popitem(last=False)
        self._pending = {}


__all__ = [
    "ACK_HL7V2",
    "MESSAGE_SCOPED",
    "Failure",
    "Hl7v2Normalizer",
    "application_ack_record",
    "failure_ack",
    "records_for",
]
