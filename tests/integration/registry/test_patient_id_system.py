"""The identifier system of the patient ids an analyzer reports, set per registration: the
CLI and a FHIR client write it, the serial gateway stamps it on the analyzer's raw
messages, and the device normalizer then matches only Patient identifiers of that system
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.device import Device

from adapters.registry.device import CONNECTION_URL, registration_from_device
from adapters.serial.observation import DEVICE_ID_SYSTEM, device_resource_id
from caregraph.device_registry import RegistryReader, served_connections
from caregraph.patient_hints import PatientHints
from devices.simulators import SimulatorHandle, start_simulator
from fhir_store.store import FhirStore
from tests.integration.fhir_store.conftest import serving
from tests.integration.registry.conftest import Cli, Pipeline, wait_for

pytestmark = pytest.mark.integration

MRN = "urn:oid:1.2.3"
ACCOUNT = "urn:oid:1.2.4"


def _system(store: FhirStore, device_id: str) -> str | None:
    device = store.read("Device", device_resource_id(device_id)).resource()
    Device.model_validate(device)
    conn = registration_from_device(device).connection
    assert conn is not None
    return conn.patient_id_system


def test_the_cli_sets_changes_and_clears_the_system(store: FhirStore, cli: Cli) -> None:
    cli("add", "lab-1", "--protocol", "astm", "--port", "/dev/ttyS0",
        "--patient-id-system", MRN)  # fmt: skip
    assert _system(store, "lab-1") == MRN
    _, out, _ = cli("list", "--json")
    assert json.loads(out)[0]["patient_id_system"] == MRN
    _, out, _ = cli("show", "lab-1")
    (conn,) = [e for e in json.loads(out)["device"]["extension"] if e["url"] == CONNECTION_URL]
    assert {"url": "patient-id-system", "valueUri": MRN} in conn["extension"]

    cli("edit", "lab-1", "--port", "/dev/ttyS1")  # what is not given stays
    assert _system(store, "lab-1") == MRN
    cli("edit", "lab-1", "--patient-id-system", ACCOUNT)
    assert _system(store, "lab-1") == ACCOUNT
    cli("edit", "lab-1", "--patient-id-system", "")  # any system again
    assert _system(store, "lab-1") is None

    code, _, err = cli("edit", "lab-1", "--patient-id-system", "MRN", ok=False)
    assert code == 2 and "absolute URI" in err
    code, _, err = cli("add", "lab-2", "--patient-id-system", MRN, ok=False)
    assert code == 2 and "--protocol" in err
    assert _system(store, "lab-1") is None  # the refused edit wrote nothing


def test_a_system_posted_through_the_fhir_api_reaches_the_gateway(store: FhirStore) -> None:
    body = {
        "resourceType": "Device",
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": "lab-9"}],
        "status": "active",
        "extension": [
            {
                "url": CONNECTION_URL,
                "extension": [
                    {"url": "protocol", "valueCode": "astm"},
                    {"url": "port", "valueString": "/dev/ttyS9"},
                    {"url": "patient-id-system", "valueUri": MRN},
                ],
            }
        ],
    }
    with serving(store) as base:
        r = httpx.post(
            f"{base}/Device", json=body, headers={"Content-Type": "application/fhir+json"}
        )
        assert r.status_code == 201, r.text
    regs, problems = RegistryReader(store).registrations()
    assert problems == []
    (conn,), problems = served_connections(regs)
    assert problems == [] and conn.patient_id_system == MRN


@pytest.fixture
def analyzer() -> Iterator[SimulatorHandle]:
    _, handle = start_simulator("astm", seed=5, interval_s=0.2)
    yield handle
    handle.stop()


def _observations(store: FhirStore) -> list[dict[str, Any]]:
    page = store.searching.search("Observation", [("_count", "1000")])
    return [s.resource() for s in page.matches]


def test_an_analyzer_with_a_system_matches_only_that_system(
    store: FhirStore, cli: Cli, analyzer: SimulatorHandle, pipeline: Any
) -> None:
    # The simulated analyzer reports PID1000..PID1006. Each id is an MRN of one Patient and
    # the account number of another: any system would be ambiguous (unassigned).
    patients = []
    for n in range(1000, 1007):
        for kind, system in (("mrn", MRN), ("acct", ACCOUNT)):
            patients.append(
                {
                    "resourceType": "Patient",
                    "id": f"{kind}-{n}",
                    "identifier": [{"system": system, "value": f"PID{n}"}],
                }
            )
    store.upsert_many(patients)
    cli("add", "bg-1", "--protocol", "astm", "--port", str(analyzer.path))
    started: Pipeline = pipeline(store, patient_by_hint=PatientHints(store))
    wait_for(lambda: len(_observations(store)) >= 7, 30, "a sample stored")
    before = _observations(store)
    # Any system: each id is two Patients' identifier, so no reading gets a patient.
    assert all("reference" not in o["subject"] for o in before)
    assert {"system" in o["subject"]["identifier"] for o in before} == {False}

    # Registered with the MRN system, the running gateway stamps it on the next samples.
    cli("edit", "bg-1", "--patient-id-system", MRN)

    def assigned() -> list[dict[str, Any]]:
        return [o for o in _observations(store) if "reference" in o.get("subject", {})]

    wait_for(lambda: len(assigned()) >= 14, 30, "two samples with patients")
    started.role.stop()  # no more samples while the store is read
    subjects = {o["subject"]["reference"] for o in assigned()}
    assert all(s.startswith("Patient/mrn-") for s in subjects), subjects
