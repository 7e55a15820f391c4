"""caregraph's API with the messaging router, behind the authorization middleware, on a real
uvicorn over loopback, on SQLite or PostgreSQL; built the way ``caregraph.roles`` builds it.

The hospital already knows Anna Andersen as ``Patient/h1``; partner messages
(``tests.unit.messaging.messages``) bring her in under the partner's ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from messaging.api import build_router as messaging_router
from messaging.outbox import Outbox
from security.clients import ClientRegistry
from security.keys import SigningKey
from security.tokens import TokenMinter
from tests.support.services import serve_app
from tests.unit.messaging.messages import patient

HOSPITAL_PATIENT = "h1"


@dataclass
class Server:
    base: str
    store: FhirStore
    mpi: Mpi
    minter: TokenMinter
    registry: ClientRegistry
    outbox: Outbox
    key: SigningKey

    def token(self, scope: str, **claims: Any) -> dict[str, str]:
        subject = claims.pop("subject", "hospital-b")
        return {"Authorization": f"Bearer {self.minter.mint(scope, subject=subject, **claims)}"}

    def process(self, bundle: Any, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.base}/fhir/$process-message",
            json=bundle,
            headers={**headers, "Content-Type": "application/fhir+json"},
            timeout=30,
        )


@contextmanager
def running_api(url: str, data_dir: Path) -> Iterator[Server]:
    """caregraph's API with messaging (and its outbox) on ``url``, served until the block ends."""
    settings = Settings(data_dir=data_dir)
    db = open_database(url)
    store = FhirStore(db)
    mpi = Mpi(SqlRepository.open(db))
    own = patient(HOSPITAL_PATIENT, "Andersen", "Anna", "1970-01-01", "H-1")
    own["identifier"][0]["system"] = "urn:oid:1.2.3.4.hospital-a"
    store.update("Patient", HOSPITAL_PATIENT, own)
    mpi.ingest(own)
    outbox = Outbox.open(db)
    app = create_app(
        readiness={"database": db.ping},
        routers=[
            security_wiring.build_token_router(settings, db),
            # before the store's router, whose catch-all would answer $process-message
            messaging_router(store, mpi, authorize, outbox=outbox),
            fhir_router(store, authorize),
        ],
    )
    security_wiring.install(app, security_wiring.build_guard(settings, store, mpi))
    try:
        with serve_app(app) as base:
            yield Server(
                base,
                store,
                mpi,
                security_wiring.token_minter(settings),
                ClientRegistry.open(db),
                outbox,
                security_wiring.signing_key(settings),
            )
    finally:  # after the server has stopped
        db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/caregraph.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with running_api(database_url, tmp_path / "hospital") as api:
        yield api
