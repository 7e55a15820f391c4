"""The events caregraph processes from partners, as a table, and the one processor.

Each event names the resource types it may carry, the type it must carry, and what it does
beyond storing them (``link``: patient link/unlink through the MPI). Processing a message:

    1. every resource's type is one the event carries, and the partner may write it;
    2. all resources are upserted in one transaction under their local ids;
    3. each Patient is ingested by the MPI (so it links to the hospital's own record);
    4. patient-link / patient-unlink change the MPI's links between the two focus Patients.

Each step is idempotent, so a message processed again (a retry after a transient error)
ends in the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fhir_store.store import FhirStore
from linkage.errors import InvalidPatient, LinkageError
from linkage.links import LinkOutcome
from linkage.mpi import Mpi
from linkage.survivorship import GOLDEN_TAG_SYSTEM
from messaging.envelope import InboundMessage
from messaging.errors import InvalidContent, MessageRefused, UnsupportedEvent
from messaging.identity import localize

#: FHIR's own message events (R4 CodeSystem message-events).
FHIR_EVENTS = "http://hl7.org/fhir/message-events"
#: HL7 v2 trigger events, for ADT admit/transfer/discharge (table 0003).
V2_EVENTS = "http://terminology.hl7.org/CodeSystem/v2-0003"
#: caregraph's own events (device notices have no standard FHIR message event).
CAREGRAPH_EVENTS = "urn:caregraph:message-events"


class LinkAction(StrEnum):
    LINK = "link"
    UNLINK = "unlink"


@dataclass(frozen=True, slots=True)
class Event:
    """What one event may carry and must carry, and its MPI action if any."""

    name: str
    carries: frozenset[str]
    requires: str | None = None
    link: LinkAction | None = None


_ADT = frozenset({"Patient", "Encounter", "Location", "Organization", "Practitioner"})
_OBSERVATIONS = frozenset({"Patient", "Encounter", "Observation", "Device", "DeviceMetric"})
_DEVICES = frozenset({"Device", "DeviceMetric", "DeviceUseStatement", "Location", "Patient"})

EVENTS: Mapping[tuple[str, str], Event] = {
    (V2_EVENTS, "A01"): Event("admit", _ADT, "Encounter"),
    (V2_EVENTS, "A02"): Event("transfer", _ADT | _OBSERVATIONS, "Encounter"),
    (V2_EVENTS, "A03"): Event("discharge", _ADT, "Encounter"),
    (CAREGRAPH_EVENTS, "patient-admit"): Event("admit", _ADT, "Encounter"),
    (CAREGRAPH_EVENTS, "patient-transfer"): Event("transfer", _ADT | _OBSERVATIONS, "Encounter"),
    (CAREGRAPH_EVENTS, "patient-discharge"): Event("discharge", _ADT, "Encounter"),
    (FHIR_EVENTS, "observation-provide"): Event("observations", _OBSERVATIONS, "Observation"),
    (FHIR_EVENTS, "patient-link"): Event(
        "patient-link", frozenset({"Patient"}), None, LinkAction.LINK
    ),
    (FHIR_EVENTS, "patient-unlink"): Event(
        "patient-unlink", frozenset({"Patient"}), None, LinkAction.UNLINK
    ),
    (CAREGRAPH_EVENTS, "device-notify"): Event("device notice", _DEVICES, "Device"),
}


@dataclass(frozen=True, slots=True)
class Processed:
    """What a message did: the references stored, and each Patient's golden record."""

    stored: tuple[str, ...]
    goldens: Mapping[str, str] = field(default_factory=dict)
    linked: tuple[str, ...] = ()


MayWrite = Callable[[str], bool]
"""Whether the partner's token lets it create and update resources of a type."""


class MessageProcessor:
    """Carries out partner messages against the store and the MPI."""

    def __init__(self, store: FhirStore, mpi: Mpi) -> None:
        self._store = store
        self._mpi = mpi

    def process(
        self,
        message: InboundMessage,
        may_write: MayWrite,
        actor: str,
        own_base: str | None = None,
    ) -> Processed:
        """Store the message's resources and apply its event. ``own_base``: caregraph's FHIR
        base, under which a reference names the hospital's own resource (see ``localize``).

        Raises:
            UnsupportedEvent: not an event in ``EVENTS``.
            MessageRefused: the partner may not write a type the message carries.
            InvalidContent: a type the event does not carry, a missing required type, or
                focus Patients the MPI cannot link as asked.
            StoreError: the database failed (a ``StoreUnavailable`` is worth a retry).
        """
        event = EVENTS.get(message.event)
        if event is None:
            system, code = message.event
            raise UnsupportedEvent(
                f"event {code!r} of {system or 'eventUri'!r} is not one caregraph processes",
                location="MessageHeader.event[x]",
            )
        local = localize(message, own_base)
        resources = [_as_source(r) for r in local.resources]
        types = {str(r["resourceType"]) for r in resources}
        stray = sorted(types - event.carries)
        if stray:
            raise InvalidContent(
                f"a {event.name} message does not carry {', '.join(stray)}", location="Bundle.entry"
            )
        if event.requires and event.requires not in types:
            raise InvalidContent(
                f"a {event.name} message needs a {event.requires}", location="Bundle.entry"
            )
        refused = sorted(t for t in types if not may_write(t))
        if refused:
            raise MessageRefused(
                f"this client may not create and update {', '.join(refused)}"
                " (it needs system/<type>.cu scopes)"
            )
        self._store.upsert_many(resources)
        goldens: dict[str, str] = {}
        for resource in resources:
            if resource["resourceType"] == "Patient":
                try:
                    outcome: LinkOutcome = self._mpi.ingest(resource, source=message.source)
                except InvalidPatient as exc:
                    raise InvalidContent(f"Patient/{resource['id']}: {exc}") from exc
                goldens[f"Patient/{outcome.source_id}"] = outcome.golden_id
        linked: tuple[str, ...] = ()
        if event.link is not None:
            linked = self._link(event.link, local.focus, actor)
            for ref in linked:
                goldens[ref] = self._mpi.golden_of(ref.removeprefix("Patient/")).golden_id
        stored = tuple(f"{r['resourceType']}/{r['id']}" for r in resources)
        return Processed(stored, goldens, linked)

    def _link(self, action: LinkAction, focus: tuple[str, ...], actor: str) -> tuple[str, ...]:
        """Link (or unlink) the second focus Patient to (from) the first one's golden record."""
        patients = [f for f in focus if f.startswith("Patient/")]
        if len(patients) != 2:
            raise InvalidContent(
                f"patient-{action} needs two Patients in MessageHeader.focus",
                location="MessageHeader.focus",
            )
        first, second = (p.removeprefix("Patient/") for p in patients)
        try:
            golden = self._mpi.golden_of(first).golden_id
            current = self._mpi.golden_of(second).golden_id
            if action is LinkAction.LINK and current != golden:
                self._mpi.link(second, golden, actor, reason="partner patient-link message")
            elif action is LinkAction.UNLINK and current == golden:
                self._mpi.unlink(second, golden, actor, reason="partner patient-unlink message")
        except LinkageError as exc:
            raise InvalidContent(
                f"patient-{action}: {exc}", location="MessageHeader.focus"
            ) from exc
        return tuple(patients)


def _as_source(resource: dict[str, Any]) -> dict[str, Any]:
    """A partner's golden record (another caregraph's, tagged so) is, here, one source
    record of that partner: the tag goes, or the MPI would refuse to match it and our own
    golden-record views would take it for one of ours."""
    meta = resource.get("meta") or {}
    tags = meta.get("tag") or []
    kept = [t for t in tags if not (isinstance(t, dict) and t.get("system") == GOLDEN_TAG_SYSTEM)]
    if len(kept) == len(tags):
        return resource
    new_meta = {**meta, "tag": kept} if kept else {k: v for k, v in meta.items() if k != "tag"}
    return {**resource, "meta": new_meta}
