"""A real FHIR client (SMART on FHIR's ``fhirclient``) against the running server."""

from __future__ import annotations

import pytest
from fhirclient import client
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient

from tests.integration.fhir_store.conftest import Server

pytestmark = pytest.mark.integration


def test_fhirclient_create_read_search_update_delete(server: Server) -> None:
    smart = client.FHIRClient(settings={"app_id": "caregraph-test", "api_base": server.base + "/"})
    fhir = smart.server
    p = Patient()
    name = HumanName()
    name.family = "Clientson"
    name.given = ["Fhir"]
    p.name = [name]
    ident = Identifier()
    ident.system = "urn:mrn"
    ident.value = "fc-1"
    p.identifier = [ident]
    p.birthDate = None
    created = p.create(fhir)
    pid = created["id"]
    read = Patient.read(pid, fhir)
    assert read.name[0].family == "Clientson" and read.meta.versionId == "1"
    found = list(Patient.where(struct={"identifier": "urn:mrn|fc-1"}).perform_resources_iter(fhir))
    assert [f.id for f in found] == [pid]
    read.gender = "other"
    read.update(fhir)
    assert Patient.read(pid, fhir).meta.versionId == "2"
    bundle = next(Patient.where(struct={"family": "clients"}).perform_iter(fhir))
    assert bundle.total == 1
    read.delete(fhir)
    assert next(Patient.where(struct={"_id": pid}).perform_iter(fhir)).total == 0


def test_fhirclient_follows_next_links_through_all_pages(server: Server) -> None:
    fhir = client.FHIRClient(settings={"app_id": "t", "api_base": server.base + "/"}).server
    made = set()
    for i in range(7):
        p = Patient()
        name = HumanName()
        name.family = f"Pager{i}"
        p.name = [name]
        made.add(p.create(fhir)["id"])
    search = Patient.where(struct={"family": "pager", "_count": "3", "_sort": "-family"})
    found = [r.id for r in search.perform_resources_iter(fhir)]
    assert len(found) == 7 and set(found) == made
