"""The second stage for devices: consume ``raw.device``, publish ``fhir.Observation``.

Runs on ``bus.worker.run_consumer`` (retries, commit after handling, at-least-once). A
message that cannot be decoded is content, not an outage: retrying cannot fix it, so it goes
to ``deadletter`` at once (``bus.deadletter`` format, original bytes, reason) in the same
publish as the batch's Observations, and the partition moves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from adapters.serial.normalize import PatientByHint, SubjectAt, observation_records
from bus.base import Bus, Message, Record
from bus.deadletter import deadletter_record, describe
from bus.topics import RAW_DEVICE
from bus.worker import WorkerStats, run_consumer
from caregraph.errors import MappingError

log = logging.getLogger(__name__)

GROUP = "device-normalizer"


# Called once per batch for the current association index (the composition root caches it
# and refreshes it every few seconds), so resolving a reading's patient costs no query.
SubjectResolver = Callable[[], SubjectAt]


def normalize_batch(
    bus: Bus,
    batch: list[Message],
    group: str = GROUP,
    resolver: SubjectResolver | None = None,
    patient_by_hint: PatientByHint | None = None,
) -> int:
    """Publish the Observations (and dead letters) for ``batch``; returns Observations sent.

    ``resolver`` gives the patient lookup for this batch and ``patient_by_hint`` the lookup
    of patient ids devices report themselves; without them readings are unassigned."""
    out: list[Record] = []
    observations = 0
    subject_at = resolver() if resolver is not None else None
    for msg in batch:
        try:
            records = observation_records(msg, subject_at, patient_by_hint)
        except MappingError as exc:
            log.warning("raw.device offset %d dead-lettered: %s", msg.offset, exc)
            out.append(deadletter_record(msg, group, describe(exc), 1))
            continue
        observations += len(records)
        out.extend(records)
    if out:
        bus.publish_many(out)
    return observations


def run_normalizer(
    bus: Bus,
    stop: threading.Event,
    *,
    group: str = GROUP,
    stats: WorkerStats | None = None,
    poll_timeout_s: float = 0.2,
    resolver: SubjectResolver | None = None,
    patient_by_hint: PatientByHint | None = None,
) -> None:
    """Normalize ``raw.device`` into ``fhir.Observation`` until ``stop``; blocks the thread."""
    bus.ensure_topics([RAW_DEVICE])

    def handle(batch: list[Message]) -> None:
        normalize_batch(bus, batch, group, resolver, patient_by_hint)

    run_consumer(
        bus,
        group,
        [RAW_DEVICE],
        handle,
        stop=stop,
        stats=stats,
        poll_timeout_s=poll_timeout_s,
    )
