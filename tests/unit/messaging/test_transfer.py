"""Building what caregraph sends a partner about a patient (``messaging.transfer``), and the
partner configuration's events and inbound binding (``messaging.partners``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from caregraph.errors import ConfigError
from fhir_store.capability import capability_statement
from fhir_store.searchparams import default_registry
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from messaging.api import with_messaging
from messaging.envelope import parse, validate
from messaging.events import EVENTS, MessageProcessor
from messaging.identity import local_id
from messaging.outbox import DeliveryStatus, Outbox
from messaging.partners import PartnerRefused, Partners, parse_partners
from messaging.transfer import (
    OBSERVATIONS,
    TRANSFER,
    PatientRecord,
    Sender,
    gather,
    observations_message,
    outgoing,
    transfer_message,
)
from security.identities import MpiIdentities
from security.keys import generate_signing_key
from security.scopes import ScopeSet
from security.tokens import Principal

from .conftest import HOSPITAL_PATIENT
from .messages import encounter, patient

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SOURCE = "https://a.example/fhir/$process-message"
B = {
    "name": "hospital-b",
    "fhir_base": "https://b.example/fhir/",
    "token_url": "https://b.example/auth/token",
    "client_id": "cg-a",
    "inbound_client_id": "b-here",
}
B_ENDPOINT = "https://b.example/fhir/$process-message"


def vital(res_id: str, subject: str, at: datetime, category: str = "vital-signs") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "encounter": {"reference": "Encounter/elsewhere"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": 80, "unit": "/min"},
    }


def test_outgoing_makes_one_patient_of_the_linked_records() -> None:
    golden = {
        **patient("g1", "Andersen", "Anna", "1970-01-01", "H-1"),
        "meta": {"versionId": "3", "tag": [{"system": "urn:x", "code": "golden"}]},
        "link": [{"other": {"reference": "Patient/src"}, "type": "seealso"}],
    }
    record = PatientRecord(
        golden,
        encounter("e1", "src"),
        (vital("o1", "src", NOW), vital("o2", "stranger", NOW)),
    )
    sent = outgoing(record, {"g1", "src"})
    kinds = [r["resourceType"] for r in sent]
    assert kinds == ["Patient", "Encounter", "Observation", "Observation"]
    assert "link" not in sent[0] and "meta" not in sent[0]
    assert sent[1]["subject"] == {"reference": "Patient/g1"}
    assert sent[2]["subject"] == {"reference": "Patient/g1"}
    assert "encounter" not in sent[2]  # not the Encounter sent: the partner could not follow
    assert sent[3]["subject"] == {"reference": "Patient/stranger"}  # not linked: untouched
    assert golden["link"] and record.observations[0]["subject"]["reference"] == "Patient/src"


def test_a_transfer_without_an_open_encounter_carries_one_made_for_it() -> None:
    record = PatientRecord(patient("p1", "A", "B", "1970-01-01", "1"), None, ())
    bundle = transfer_message(
        record,
        {"p1"},
        partner="hospital-b",
        source=SOURCE,
        destination="https://b.example/fhir/$process-message",
        now=NOW,
    )
    validate(bundle, default_registry().types)
    message = parse(bundle)
    assert message.event == TRANSFER and EVENTS[TRANSFER].name == "transfer"
    made = bundle["entry"][2]["resource"]
    assert made["resourceType"] == "Encounter" and made["period"]["start"].startswith("2026-11-25")
    assert message.header["focus"] == [{"reference": f"Encounter/{made['id']}"}]


def test_observations_need_observations() -> None:
    record = PatientRecord(patient("p1", "A", "B", "1970-01-01", "1"), None, ())
    with pytest.raises(PartnerRefused, match="no vital signs"):
        observations_message(record, {"p1"}, source=SOURCE, destination=SOURCE)


def seed(store: FhirStore, mpi: Mpi) -> None:
    """The hospital's patient h1 has a second record (as the ORU feed makes one) that the
    MPI links to it; vitals sit under both, besides an old one and a lab result."""
    second = patient("h1-oru", "Andersen", "Anna", "1970-01-01", "H-1")
    second["identifier"][0]["system"] = "urn:oid:1.2.3.4.hospital-a"
    store.update("Patient", "h1-oru", second)
    mpi.ingest(second)
    store.update("Encounter", "e-old", encounter("e-old", HOSPITAL_PATIENT, "finished"))
    store.update("Encounter", "e-now", encounter("e-now", "h1-oru"))
    for res in (
        vital("v1", HOSPITAL_PATIENT, NOW - timedelta(hours=1)),
        vital("v2", "h1-oru", NOW - timedelta(minutes=5)),
        vital("v-old", "h1-oru", NOW - timedelta(hours=30)),
        vital("lab", HOSPITAL_PATIENT, NOW - timedelta(hours=1), category="laboratory"),
    ):
        store.update("Observation", res["id"], res)


def test_gather_reads_the_recent_vitals_of_every_linked_record(store: FhirStore, mpi: Mpi) -> None:
    seed(store, mpi)
    linked = MpiIdentities(mpi).linked(HOSPITAL_PATIENT)
    assert "h1-oru" in linked
    record = gather(store, HOSPITAL_PATIENT, linked, since=NOW - timedelta(hours=24))
    assert record.patient["id"] == HOSPITAL_PATIENT
    assert [o["id"] for o in record.observations] == ["v2", "v1"]  # newest first
    assert record.encounter is not None and record.encounter["id"] == "e-now"
    assert [
        o["id"] for o in gather(store, HOSPITAL_PATIENT, linked, since=NOW, limit=1).observations
    ] == []
    with pytest.raises(PartnerRefused, match="no Patient/nobody"):
        gather(store, "nobody", {"nobody"}, since=NOW)


def test_a_transfer_built_here_is_processed_by_a_partner_into_one_linked_patient(
    store: FhirStore, mpi: Mpi
) -> None:
    seed(store, mpi)
    outbox = Outbox.open(store.db)
    partners = Partners(parse_partners({"partners": [B]}), generate_signing_key())
    sender = Sender(store, partners, outbox, SOURCE, MpiIdentities(mpi).linked, clock=lambda: NOW)
    queued = sender.transfer(HOSPITAL_PATIENT, "hospital-b")
    row = outbox.get(queued)
    assert row is not None and row.status is DeliveryStatus.PENDING
    assert row.endpoint == "https://b.example/fhir/$process-message"

    # The partner side, on the same database for brevity: all vitals land on one Patient,
    # which the MPI links to the hospital's own record.
    (claimed,) = outbox.claim_due()
    bundle = json.loads(claimed.bundle)
    bundle["entry"][0]["resource"]["source"]["endpoint"] = B_ENDPOINT  # as if B sent it
    message = parse(bundle)
    done = MessageProcessor(store, mpi).process(message, lambda _type: True, "test")
    sent_patient = f"Patient/{local_id(B_ENDPOINT, 'Patient', HOSPITAL_PATIENT)}"
    observations = [ref for ref in done.stored if ref.startswith("Observation/")]
    assert len(observations) == 2
    for ref in observations:
        stored = store.read("Observation", ref.split("/")[1]).resource()
        assert stored["subject"]["reference"] == sent_patient
    golden = mpi.golden_of(HOSPITAL_PATIENT).golden_id
    assert done.goldens[sent_patient] == golden

    observed = sender.observations(HOSPITAL_PATIENT, "hospital-b")
    assert observed != queued
    # What hospital B sent (now linked to h1 here) is not echoed back to it.
    (again,) = outbox.claim_due()
    echoed = [e["resource"] for e in json.loads(again.bundle)["entry"][1:]]
    assert sorted(r["id"] for r in echoed) == ["h1", "v1", "v2"]
    with pytest.raises(PartnerRefused, match="no partner 'nobody'"):
        sender.transfer(HOSPITAL_PATIENT, "nobody")


def test_a_partner_gets_only_the_events_it_takes(store: FhirStore, mpi: Mpi) -> None:
    seed(store, mpi)
    only_vitals = {**B, "events": ["observations"]}
    partners = Partners(parse_partners({"partners": [only_vitals]}), generate_signing_key())
    sender = Sender(
        store,
        partners,
        Outbox.open(store.db),
        SOURCE,
        MpiIdentities(mpi).linked,
        clock=lambda: NOW,
    )
    with pytest.raises(PartnerRefused, match="does not take transfer"):
        sender.transfer(HOSPITAL_PATIENT, "hospital-b")
    assert sender.observations(HOSPITAL_PATIENT, "hospital-b")
    assert OBSERVATIONS in EVENTS


@pytest.mark.parametrize(
    "entry",
    [
        {**B, "events": ["teleport"]},
        {**B, "events": "transfer"},
        {**B, "inbound_client_id": 7},
        {k: v for k, v in B.items() if k != "fhir_base"},
    ],
)
def test_bad_events_bindings_and_endpoints_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_partners({"partners": [entry]})


def test_two_partners_cannot_share_an_inbound_client() -> None:
    from caregraph.errors import ConfigError

    other = {**B, "name": "hospital-c", "fhir_base": "https://c.example/fhir"}
    with pytest.raises(ConfigError, match="inbound_client_id"):
        parse_partners({"partners": [B, other]})


def caller(client_id: str | None) -> Principal:
    return Principal("sub", client_id, ScopeSet.parse("system/*.cruds"))


def test_a_bound_client_speaks_only_for_its_partner() -> None:
    unbound = {**B, "name": "hospital-c", "fhir_base": "https://c.example/fhir"}
    del unbound["inbound_client_id"]
    partners = Partners(parse_partners({"partners": [B, unbound]}), generate_signing_key())
    b_endpoint = "https://b.example/fhir/$process-message"
    c_endpoint = "https://c.example/fhir/$process-message"
    assert partners.speaks_for(caller("b-here"), b_endpoint)
    assert not partners.speaks_for(caller("b-here"), c_endpoint)
    assert not partners.speaks_for(caller("someone-else"), b_endpoint)
    assert not partners.speaks_for(caller(None), b_endpoint)
    assert partners.speaks_for(caller("someone-else"), c_endpoint)  # nobody bound to C


def test_the_capability_statement_lists_process_message() -> None:
    registry = default_registry()
    base = "https://a.example/fhir"
    statement = with_messaging(capability_statement(registry, base), base)
    CapabilityStatement.model_validate(statement)
    operations = {o["name"]: o["definition"] for o in statement["rest"][0]["operation"]}
    assert operations["process-message"].endswith("MessageHeader-process-message")
    assert "validate" in operations
    (messaging,) = statement["messaging"]
    assert messaging["endpoint"][0]["address"] == f"{base}/$process-message"
