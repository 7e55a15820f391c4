"""``Patient/[golden]/$everything`` behind the real authorization middleware (bearer tokens,
SMART scopes, the patient-compartment filter over linked identities), as the api role
mounts it: the linkage router with the store, before the store's router."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from caregraph import security_wiring
from caregraph.app import create_app
from caregraph.auth import authorize
from caregraph.settings import Settings
from fhir_store.api import build_router as fhir_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.api import build_router as linkage_router
from linkage.links import Golden
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from security.tokens import TokenMinter
from tests.integration.linkage.test_everything import observation
from tests.support.services import serve_app
from tests.unit.linkage.factories import patient

pytestmark = pytest.mark.integration


@dataclass
class Api:
    base: str
    golden: str
    minter: TokenMinter

    def get(self, path: str, scope: str, **claims: Any) -> httpx.Response:
        token = self.minter.mint(scope, subject=claims.pop("subject", "tester"), **claims)
        return httpx.get(
            f"{self.base}/fhir/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path)
    db = open_database(f"sqlite:///{tmp_path}/caregraph.sqlite3")
    store = FhirStore(db)

    def to_store(goldens: list[Golden]) -> None:
        for g in goldens:
            store.update("Patient", g.golden_id, g.resource)

    mpi = Mpi(SqlRepository.open(db), golden_listeners=[to_store])
    a = patient(pid="a1", identifiers=[("urn:hosp:a", "A1")])
    b = patient(pid="b1", identifiers=[("urn:hosp:b", "B1")])
    stranger = patient("Zygmunt", "Kowalski", "1951-12-30", pid="z1", city="Basel")
    for p in (a, b, stranger):
        store.update("Patient", p["id"], p)
        mpi.ingest(p)
    golden = mpi.golden_of("a1").golden_id
    assert mpi.golden_of("b1").golden_id == golden != mpi.golden_of("z1").golden_id
    for oid, subject in (("oa", "a1"), ("ob", "b1"), ("oz", "z1")):
        store.update("Observation", oid, observation(oid, subject))
    app = create_app(
        readiness={"database": db.ping},
        routers=[linkage_router(mpi, authorize, store=store), fhir_router(store, authorize)],
    )
    security_wiring.install(
        app,
        security_wiring.build_guard(settings, store, mpi),
        security_wiring.build_token_router(settings, db),
    )
    try:
        with serve_app(app) as base:
            yield Api(base, golden, security_wiring.token_minter(settings))
    finally:
        db.close()


def ids(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}


def test_a_patient_sees_the_golden_record_across_its_identities(api: Api) -> None:
    r = api.get(f"Patient/{api.golden}/$everything", "patient/*.rs", patient="b1")
    assert r.status_code == 200
    assert ids(r.json()) == {
        f"Patient/{api.golden}",
        "Patient/a1",
        "Patient/b1",
        "Observation/oa",
        "Observation/ob",
    }


def test_another_patient_is_refused(api: Api) -> None:
    r = api.get(f"Patient/{api.golden}/$everything", "patient/*.rs", patient="z1")
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


def test_scopes_still_filter_what_is_returned(api: Api) -> None:
    r = api.get(f"Patient/{api.golden}/$everything", "user/Patient.rs")
    assert r.status_code == 200
    assert ids(r.json()) == {f"Patient/{api.golden}", "Patient/a1", "Patient/b1"}


def test_no_token_no_record(api: Api) -> None:
    r = httpx.get(f"{api.base}/fhir/Patient/{api.golden}/$everything", timeout=10)
    assert r.status_code == 401
