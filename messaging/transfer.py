"""What caregraph sends a partner about one patient: a transfer with the patient's recent
vital signs, or those vital signs alone (e.g. the receiving hospital reporting back).

    store + linked identities --gather--> PatientRecord (patient, encounter, vitals)
        --transfer_message / observations_message (pure)--> message Bundle
        --partners.Partners.send--> outbox (delivered by the delivery loop)

The patient's data may sit under several Patient ids (ADT, ORU results and serial readings
each keep their own source record, the MPI links them under a golden record), so ``gather``
reads the vitals of every linked identity, and :func:`outgoing` makes each one's subject the
one Patient the message carries: the partner receives one person, not four fragments.
What is sent is a copy: the hospital's own records are not changed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_store.errors import ResourceGone, ResourceNotFound
from fhir_store.store import FhirStore
from messaging.envelope import request
from messaging.events import CAREGRAPH_EVENTS, FHIR_EVENTS
from messaging.outbox import Outbox
from messaging.partners import Partner, PartnerRefused, Partners


class UnknownPatient(PartnerRefused):
    """No such Patient here (or it was deleted): nothing to send."""


TRANSFER = (CAREGRAPH_EVENTS, "patient-transfer")
OBSERVATIONS = (FHIR_EVENTS, "observation-provide")
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: Encounter states that mean the stay goes on (the one a transfer moves).
_OPEN = ("planned", "arrived", "triaged", "in-progress", "onleave")


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A patient as the hospital has it: the record to send, its current Encounter (None:
    no open one), and its vital signs of the period asked for, newest first."""

    patient: dict[str, Any]
    encounter: dict[str, Any] | None
    observations: tuple[dict[str, Any], ...]


def _bare(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy without what only this store means: its meta (versions, tags, source)."""
    return {k: copy.deepcopy(v) for k, v in resource.items() if k != "meta"}


def outgoing(record: PatientRecord, linked: Collection[str]) -> list[dict[str, Any]]:
    """The resources a message about ``record`` carries, pointing at each other.

    The Patient loses its ``link`` (its golden-record links name records the partner never
    sees); an Observation of any ``linked`` Patient id becomes the sent Patient's; an
    Observation's encounter is kept only if it is the Encounter sent.
    """
    patient = _bare(record.patient)
    patient.pop("link", None)
    patient_ref = f"Patient/{patient['id']}"
    subjects = {f"Patient/{pid}" for pid in linked} | {patient_ref}
    resources = [patient]
    encounter_ref = None
    if record.encounter is not None:
        encounter = _bare(record.encounter)
        encounter["subject"] = {"reference": patient_ref}
        encounter_ref = f"Encounter/{encounter['id']}"
        resources.append(encounter)
    for observation in record.observations:
        body = _bare(observation)
        subject = (body.get("subject") or {}).get("reference")
        if subject in subjects:
            body["subject"] = {"reference": patient_ref}
        if (body.get("encounter") or {}).get("reference") != encounter_ref:
            body.pop("encounter", None)
        resources.append(body)
    return resources


def transfer_encounter(patient_id: str, partner: str, now: datetime) -> dict[str, Any]:
    """The Encounter a transfer carries when the patient has no open one here: the stay
    being handed over, starting now."""
    return {
        "resourceType": "Encounter",
        "id": f"transfer-{uuid.uuid4().hex[:24]}",
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": now.astimezone(UTC).isoformat(timespec="seconds")},
        "reasonCode": [{"text": f"transfer to {partner}"}],
    }


def transfer_message(
    record: PatientRecord,
    linked: Collection[str],
    *,
    partner: str,
    source: str,
    destination: str,
    now: datetime,
) -> dict[str, Any]:
    """A patient-transfer message: the Patient, the Encounter moved (the current one, or one
    made for the transfer), and the recent vitals; the header's focus is the Encounter."""
    if record.encounter is None:
        encounter = transfer_encounter(str(record.patient["id"]), partner, now)
        record = PatientRecord(record.patient, encounter, record.observations)
    resources = outgoing(record, linked)
    focus = [f"Encounter/{resources[1]['id']}"]
    return request(TRANSFER, resources, source=source, destination=destination, focus=focus)


def observations_message(
    record: PatientRecord, linked: Collection[str], *, source: str, destination: str
) -> dict[str, Any]:
    """An observation-provide message: the Patient and its recent vitals (no Encounter).

    Raises:
        PartnerRefused: there are no vitals to send.
    """
    if not record.observations:
        raise PartnerRefused(f"Patient/{record.patient['id']} has no vital signs to send")
    resources = outgoing(PatientRecord(record.patient, None, record.observations), linked)
    focus = [f"Observation/{r['id']}" for r in resources[1:]]
    return request(OBSERVATIONS, resources, source=source, destination=destination, focus=focus)


def without_source(record: PatientRecord, source: str) -> PatientRecord:
    """``record`` without the vitals and Encounter that ``source`` sent here (their
    ``meta.source``, see ``messaging.identity``): no echo of a partner's own data to it."""

    def foreign(resource: dict[str, Any] | None) -> bool:
        return resource is not None and (resource.get("meta") or {}).get("source") == source

    encounter = None if foreign(record.encounter) else record.encounter
    kept = tuple(o for o in record.observations if not foreign(o))
    return PatientRecord(record.patient, encounter, kept)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gather(
    store: FhirStore,
    patient_id: str,
    linked: Iterable[str],
    *,
    since: datetime,
    limit: int = 200,
) -> PatientRecord:
    """The patient ``patient_id``, its open Encounter and the vital signs taken at or after
    ``since`` of every ``linked`` id (newest first, at most ``limit``).

    Raises:
        UnknownPatient: no such Patient (or it was deleted).
    """
    try:
        patient = store.read("Patient", patient_id).resource()
    except (ResourceNotFound, ResourceGone) as exc:
        raise UnknownPatient(f"no Patient/{patient_id} here") from exc
    subjects = ",".join(sorted({f"Patient/{pid}" for pid in linked} | {f"Patient/{patient_id}"}))
    vitals = store.searching.search(
        "Observation",
        [
            ("subject", subjects),
            ("category", "vital-signs"),
            ("date", f"ge{_instant(since)}"),
            ("_sort", "-date"),
            ("_count", str(limit)),
        ],
    )
    encounters = store.searching.search(
        "Encounter",
        [
            ("subject", subjects),
            ("status", ",".join(_OPEN)),
            ("_sort", "-date"),
            ("_count", "1"),
        ],
    )
    encounter = encounters.matches[0].resource() if encounters.matches else None
    return PatientRecord(patient, encounter, tuple(m.resource() for m in vitals.matches))


@dataclass(frozen=True, slots=True)
class Sender:
    """Queues messages about patients for partners: what ``caregraph partner send-*`` and
    any other front end call. ``source``: caregraph's own ``$process-message`` URL as
    partners reach it; ``linked(id)``: the Patient ids that are the same person."""

    store: FhirStore
    partners: Partners
    outbox: Outbox
    source: str
    linked: Callable[[str], Collection[str]]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def _record(
        self, patient_id: str, partner: Partner, hours: float, limit: int
    ) -> tuple[PatientRecord, Collection[str]]:
        """The patient's record without what came from ``partner`` itself (it has that)."""
        linked = self.linked(patient_id)
        since = self.clock() - timedelta(hours=hours)
        record = gather(self.store, patient_id, linked, since=since, limit=limit)
        return without_source(record, partner.endpoint), linked

    def transfer(
        self, patient_id: str, partner: str, *, hours: float = 24, limit: int = 200
    ) -> str:
        """Queue a transfer of ``patient_id`` with its vitals of the last ``hours``; returns
        the outbox id.

        Raises:
            PartnerRefused: unknown partner or patient, or the partner takes no transfers.
        """
        to = self.partners.get(partner)
        record, linked = self._record(patient_id, to, hours, limit)
        bundle = transfer_message(
            record,
            linked,
            partner=to.name,
            source=self.source,
            destination=to.endpoint,
            now=self.clock(),
        )
        return self.partners.send(self.outbox, to.name, bundle)

    def observations(
        self, patient_id: str, partner: str, *, hours: float = 24, limit: int = 200
    ) -> str:
        """Queue the vitals of ``patient_id`` of the last ``hours``; returns the outbox id.

        Raises:
            PartnerRefused: unknown partner or patient, no vitals, or the partner takes
                no observation messages.
        """
        to = self.partners.get(partner)
        record, linked = self._record(patient_id, to, hours, limit)
        bundle = observations_message(record, linked, source=self.source, destination=to.endpoint)
        return self.partners.send(self.outbox, to.name, bundle)
