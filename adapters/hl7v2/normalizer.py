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
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.normalize import DEFAULT_OPTIONS, normalize
from bus.base import Bus, Message, Record
from bus.deadletter import deadletter_record, describe
from bus.headers import MESSAGE_ID, RECEIVED_AT, SOURCE, TRACE_ID, make_headers
from bus.topics import fhir_topic
from caregraph.errors import MappingError

CONTENT_TYPE_FHIR = "application/fhir+json"
HEADER_RAW_OFFSET = "raw-offset"


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


def _dumps(resource: object) -> bytes:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def records_for(
    messages: Sequence[Message], *, options: Options = DEFAULT_OPTIONS
) -> tuple[list[Record], list[Failure]]:
    """FHIR records for a batch of ``raw.hl7v2`` messages, in order, and the failures."""
    records: list[Record] = []
    failures: list[Failure] = []
    for message in messages:
        received_at = _received_at(message)
        try:
            result = normalize(message.value, received_at=received_at, options=options)
        except MappingError as exc:
            failures.append(Failure(message, exc))
            continue
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
            records.append(
                Record(fhir_topic(resource["resourceType"]), _dumps(resource), key, headers)
            )
        for merge in result.merges:
            records.append(
                Record(fhir_topic("Parameters"), _dumps(merge.as_parameters()), key, headers)
            )
    return records, failures


# Resources that exist once per message; everything else is an entity (Patient, Device...)
# that most messages repeat unchanged.
MESSAGE_SCOPED_TOPICS = frozenset(
    {fhir_topic("Observation"), fhir_topic("Provenance"), fhir_topic("Parameters")}
)


class Hl7v2Normalizer:
    """``run_consumer`` handler: normalize a batch, publish records and dead letters at once.

    A message that does not map is dead-lettered here (original bytes, error with its
    segment/field location) rather than raised, so its neighbours in the batch are not
    retried for nothing; bus errors propagate, so the consume loop retries the batch.

    Entity resources (a monitor's Devices and DeviceMetrics, the Patient, the bed) repeat
    in every message of a feed; one byte-identical to a record this handler already
    published (the last ``remember`` distinct ones) is not published again. That only
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
    ) -> None:
        self.bus = bus
        self.group = group
        self.options = options
        self.remember = remember
        self._published: OrderedDict[bytes, None] = OrderedDict()
        self.skipped = 0

    def _digest(self, record: Record) -> bytes:
        return hashlib.blake2b(
            record.topic.encode() + b"\0" + record.value, digest_size=16
        ).digest()

    def __call__(self, messages: list[Message]) -> None:
        records, failures = records_for(messages, options=self.options)
        fresh: list[Record] = []
        digests: dict[bytes, None] = {}
        for record in records:
            if record.topic not in MESSAGE_SCOPED_TOPICS and self.remember:
                digest = self._digest(record)
                if digest in self._published:
                    self._published.move_to_end(digest)
                    self.skipped += 1
                    continue
                if digest in digests:
                    self.skipped += 1
                    continue
                digests[digest] = None
            fresh.append(record)
        for failure in failures:
            error = describe(failure.error)
            if failure.error.location:
                error += f" at {failure.error.location}"
            fresh.append(deadletter_record(failure.message, self.group, error, attempts=1))
        if fresh:
            self.bus.publish_many(fresh)
        # only what is durable on the bus may be skipped next time
        for digest in digests:
            self._published[digest] = None
        while len(self._published) > self.remember:
            self._published.popitem(last=False)


__all__ = ["Failure", "Hl7v2Normalizer", "records_for"]
