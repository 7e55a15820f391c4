"""The linkage service's bus handler: FHIR Patients (and A40 merges) in, links out.

Wire it with the consume loop, one consumer per database (the MPI is a single writer):

    handler = PatientHandler(mpi)
    run_consumer(bus, "linkage", [fhir_topic("Patient"), fhir_topic("Parameters")],
                 handler, stop=stop)

A ``Patient`` is ingested (idempotent: a redelivery changes nothing). A ``Parameters`` in
the form of ``adapters.hl7v2.normalize.PatientMerge.as_parameters()`` (``source-patient``,
``target-patient``) merges the golden records of the two source Patients; other Parameters
are not for us and are skipped, and so are golden Patients (the MPI's own output, if it is
published on the same topic for the store). Content that is not JSON or not a resource raises
``InvalidPatient`` (a ``MappingError``), so the loop dead-letters it with its bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from bus.base import Bus, Message, Record
from bus.headers import SOURCE, make_headers
from bus.topics import fhir_topic
from fhir_store.records import loads
from linkage.errors import InvalidPatient
from linkage.identity import RESOURCE_TYPES as IDENTITY_TYPES
from linkage.identity import EntityOutcome, IdentityIndex
from linkage.links import Golden, LinkOutcome
from linkage.mpi import GoldenListener, Mpi
from linkage.survivorship import is_golden

__all__ = [
    "IDENTITY_TYPES",
    "IdentityHandler",
    "PatientHandler",
    "merge_request",
    "publish_goldens",
]

FHIR_JSON = "application/fhir+json"

log = logging.getLogger(__name__)

OutcomeListener = Callable[[LinkOutcome], None]


def _reference_id(reference: str) -> str:
    """``Patient/123`` (or an absolute URL, or ``.../_history/n``) -> ``123``."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1]


def merge_request(resource: dict[str, Any]) -> tuple[str, str] | None:
    """(merged source id, surviving source id) of a $merge-style Parameters, else None."""
    refs: dict[str, str] = {}
    for param in resource.get("parameter") or ():
        ref = (param.get("valueReference") or {}).get("reference")
        if param.get("name") in ("source-patient", "target-patient") and ref:
            refs[param["name"]] = _reference_id(ref)
    if "source-patient" in refs and "target-patient" in refs:
        return refs["source-patient"], refs["target-patient"]
    return None


#: How long one write transaction of a batch may go on before it commits and the next
#: begins. The MPI and the identity index share the store's database: a transaction per
#: resource queued each one behind the store writer's batches (5-7 Patients/s at 1,000
#: beds), while one transaction for a whole batch of 500 would hold the writers of the
#: store and the graph for seconds.
TRANSACTION_BUDGET_S = 0.2


def in_transactions(
    messages: Sequence[Message],
    transaction: Callable[[], AbstractContextManager[None]],
    handle: Callable[[Message], object],
    budget_s: float,
) -> None:
    """``handle`` each message in order, in ``transaction()``s of up to ``budget_s`` each:
    a message sees the writes of those before it, and a failure rolls back its
    transaction, which the consume loop delivers again (handlers here are idempotent)."""
    pending = iter(messages)
    for first in pending:
        deadline = time.monotonic() + budget_s
        with transaction():
            handle(first)
            while time.monotonic() < deadline:
                message = next(pending, None)
                if message is None:
                    break
                handle(message)


@dataclass
class PatientHandler:
    """Handles a batch in order, in MPI transactions of up to ``transaction_budget_s``
    each (``Mpi.batch``, ``in_transactions``).

    ``on_outcome`` (optional) hears every changed link outcome, e.g. to publish the golden
    Patient to the store; its errors propagate, so the batch is retried.
    """

    mpi: Mpi
    on_outcome: OutcomeListener | None = None
    transaction_budget_s: float = TRANSACTION_BUDGET_S

    def __call__(self, messages: Sequence[Message]) -> None:
        in_transactions(messages, self.mpi.batch, self.handle, self.transaction_budget_s)

    def handle(self, message: Message) -> LinkOutcome | None:
        try:
            resource = loads(message.value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidPatient(f"not JSON: {exc}", location=message.topic) from exc
        if not isinstance(resource, dict):
            raise InvalidPatient("not a FHIR resource", location=message.topic)
        kind = resource.get("resourceType")
        if kind == "Parameters":
            pair = merge_request(resource)
            if pair is not None:
                self.mpi.merge_sources(pair[0], pair[1], actor=f"bus:{message.topic}")
            return None
        if kind != "Patient":
            raise InvalidPatient(f"{kind!r} on {message.topic}", location="resourceType")
        if is_golden(resource):
            return None  # our own output, published for the store: not a source
        outcome = self.mpi.ingest(
            resource, source=message.headers.get(SOURCE), actor=f"bus:{message.topic}"
        )
        if outcome.changed and self.on_outcome is not None:
            self.on_outcome(outcome)
        log.debug(
            "Patient/%s -> %s (%s)", outcome.source_id, outcome.golden_id, outcome.state.value
        )
        return outcome


@dataclass
class IdentityHandler:
    """Handles ``fhir.Practitioner``, ``fhir.Organization`` and ``fhir.Device`` messages:

        run_consumer(bus, "linkage-identity",
                     [fhir_topic(t) for t in IDENTITY_TYPES], IdentityHandler(index), stop=stop)

    A batch is resolved in transactions of up to ``transaction_budget_s`` each
    (``in_transactions``), as ``PatientHandler`` links Patients: at 1,000 beds a
    transaction per resource fell behind the store writer's (the group's lag grew all
    along the start of a hospital's feeds, when each monitor's Devices are new).
    Raises InvalidPatient (a MappingError: dead-lettered) for content it cannot resolve.
    """

    index: IdentityIndex
    transaction_budget_s: float = TRANSACTION_BUDGET_S

    def __call__(self, messages: Sequence[Message]) -> None:
        in_transactions(messages, self.index.batch, self.handle, self.transaction_budget_s)

    def handle(self, message: Message) -> EntityOutcome:
        try:
            resource = loads(message.value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidPatient(f"not JSON: {exc}", location=message.topic) from exc
        if not isinstance(resource, dict):
            raise InvalidPatient("not a FHIR resource", location=message.topic)
        return self.index.ingest(resource, actor=f"bus:{message.topic}")


def publish_goldens(bus: Bus, topic: str = fhir_topic("Patient")) -> GoldenListener:
    """A golden listener that publishes each changed golden Patient on ``fhir.Patient``,
    keyed by its id, so the store writer keeps it beside the sources (``Mpi(...,
    golden_listeners=[publish_goldens(bus)])``). ``PatientHandler`` skips them when they
    come back. Errors are ``BusError`` and propagate: the change is committed, and the
    next delivery of the source Patient publishes again."""

    def listener(goldens: list[Golden]) -> None:
        records = []
        for golden in goldens:
            body = json.dumps(golden.resource, separators=(",", ":")).encode()
            digest = hashlib.sha256(body).hexdigest()[:16]
            headers = make_headers(
                "caregraph:linkage", f"golden:{golden.golden_id}:{digest}", FHIR_JSON
            )
            records.append(Record(topic, body, golden.golden_id.encode(), headers))
        bus.publish_many(records)

    return listener
