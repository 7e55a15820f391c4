"""A caregraph API (FHIR, linkage and console routers behind the authorization middleware)
on a real uvicorn over loopback, on SQLite, with a linked patient and a stranger.

Patient A has two identities, ``a1`` and ``a2``, linked to one golden record by a person in
the MPI; patient ``b`` is someone else. Each has one Observation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from caregraph import security_wiring
from caregraph.app import create_app
from caregraph.auth import authorize
from caregraph.settings import Settings
from console import build_console_router
from fhir_store.api import build_router as fhir_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.api import build_router as linkage_router
from linkage.graph.api import build_router as graph_router
from linkage.graph.store import Graph, MpiIdentity
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from security.clients import ClientRegistry
from security.tokens import TokenMinter
from tests.support.services import serve_app


def patient(res_id: str, family: str, given: str, born: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": res_id,
        "identifier": [{"system": f"urn:test:{res_id}", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": born,
        "gender": "female",
    }


def observation(res_id: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }


@dataclass
class Api:
    base: str
    store: FhirStore
    mpi: Mpi
    minter: TokenMinter
    settings: Settings
    registry: ClientRegistry

    def token(self, scope: str, **claims: Any) -> dict[str, str]:
        """Headers with a development token."""
        subject = claims.pop("subject", "tester")
        return {"Authorization": f"Bearer {self.minter.mint(scope, subject=subject, **claims)}"}

    def audit_events(self) -> list[dict[str, Any]]:
        page = self.store.searching.search("AuditEvent", [("_count", "1000")])
        return [s.resource() for s in page.matches]

    def denials(self) -> list[dict[str, Any]]:
        """AuditEvents of refused requests (written before the 403 is sent)."""
        return [
            e
            for e in self.audit_events()
            if e["outcome"] == "4" and e["outcomeDesc"] not in ("allowed", "break-glass access")
        ]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path)
    db = open_database(f"sqlite:///{tmp_path}/caregraph.sqlite3")
    store = FhirStore(db)
    mpi = Mpi(SqlRepository.open(db))
    people = [
        patient("a1", "Andersen", "Anna", "1970-01-01", "A-1"),
        patient("a2", "Andersson", "Ann", "1970-01-01", "A-2"),
        patient("b", "Brown", "Bob", "1980-05-05", "B-1"),
    ]
    for p in people:
        store.update("Patient", p["id"], p)
        mpi.ingest(p)
    golden_a = mpi.golden_of("a1").golden_id
    mpi.link("a2", golden_a, "test")  # a person confirms: same person (MATCH, MANUAL)
    assert mpi.golden_of("b").golden_id != golden_a
    for obs_id, subject in (("obs-a1", "a1"), ("obs-a2", "a2"), ("obs-b", "b")):
        store.update("Observation", obs_id, observation(obs_id, subject))

    app = create_app(
        readiness={"database": db.ping},
        routers=[
            linkage_router(mpi, authorize),
            graph_router(Graph.open(db, MpiIdentity(mpi)), authorize),
            fhir_router(store, authorize),
        ],
    )
    app.include_router(build_console_router())
    security_wiring.install(
        app,
        security_wiring.build_guard(settings, store, mpi),
        security_wiring.build_token_router(settings, db),
    )
    try:
        with serve_app(app) as base:
            registry = ClientRegistry.open(db)
            yield Api(base, store, mpi, security_wiring.token_minter(settings), settings, registry)
    finally:  # after the server has stopped
        db.close()
