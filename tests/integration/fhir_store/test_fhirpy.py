"""The second real FHIR client (``fhirpy``, sync) against the running server, on both engines."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from tests.integration.fhir_store.conftest import Server

pytestmark = pytest.mark.integration


def test_fhirpy_crud_search_paging_and_errors(server: Server) -> None:
    client = SyncFHIRClient(server.base)
    org = client.resource("Organization", name="Kantonsspital", active=True)
    org.save()
    made = []
    for i in range(6):
        p = client.resource(
            "Patient",
            name=[{"family": f"Py{i}", "given": ["Fhir"]}],
            birthDate=f"199{i}-01-01",
            managingOrganization=org.to_reference(),
        )
        p.save()
        made.append(p.id)
    assert client.resources("Patient").search(family="py").count() == 6
    found = client.resources("Patient").search(birthdate__ge="1993-01-01").sort("birthdate").fetch()
    assert [p["birthDate"] for p in found] == [f"199{i}-01-01" for i in range(3, 6)]
    every = client.resources("Patient").search(family="py").limit(2).fetch_all()
    assert sorted(p.id for p in every) == sorted(made)
    chained = client.resources("Patient").search(organization__Organization__name="kantons")
    assert chained.count() == 6
    included = client.resources("Patient").search(_id=made[0]).include("Patient", "organization")
    bundle_types = [e["resource"]["resourceType"] for e in included.fetch_raw()["entry"]]
    assert sorted(bundle_types) == ["Organization", "Patient"]
    first = client.reference("Patient", made[0]).to_resource()
    first["gender"] = "unknown"
    first.save()
    assert first["meta"]["versionId"] == "2"
    first.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", "does-not-exist").to_resource()
    with pytest.raises(OperationOutcome) as bad:
        client.resource("Patient", birthDate="not a date").save()
    assert "Patient.birthDate" in str(bad.value)


def test_fhirpy_conditional_patch_history_transaction_everything(server: Server) -> None:
    client = SyncFHIRClient(server.base)
    patients = client.resources("Patient").search(identifier="urn:mrn|py-c")
    first, created = patients.get_or_create(
        client.resource("Patient", identifier=[{"system": "urn:mrn", "value": "py-c"}])
    )
    again, created_again = patients.get_or_create(
        client.resource("Patient", identifier=[{"system": "urn:mrn", "value": "py-c"}])
    )
    assert created and not created_again and first.id == again.id
    updated, was_created = patients.update(
        client.resource(
            "Patient", identifier=[{"system": "urn:mrn", "value": "py-c"}], gender="female"
        )
    )
    assert not was_created and updated.id == first.id and updated["gender"] == "female"
    patched = client.patch("Patient", first.id, birthDate="2001-02-03")
    assert patched["birthDate"] == "2001-02-03" and patched["meta"]["versionId"] == "3"
    history = client.execute(f"Patient/{first.id}/_history", method="get")
    assert history["total"] == 3
    obs = client.resource(
        "Observation", status="final", code={"text": "hr"}, subject=first.to_reference()
    )
    obs.save()
    everything = client.execute(f"Patient/{first.id}/$everything", method="get")
    assert sorted(e["resource"]["resourceType"] for e in everything["entry"]) == [
        "Observation",
        "Patient",
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"Observation/{obs.id}"}}],
    }
    result = client.execute("", method="post", data=bundle)
    assert result["type"] == "transaction-response"
    assert client.resources("Observation").search(subject=first.id).count() == 0
    patients.delete()
    assert patients.count() == 0
