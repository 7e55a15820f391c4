"""The caregraph app served in-process for console tests that need routers the demo does not
mount yet (``/linkage``, ``/devices``): ``create_app`` with those routers, the FHIR and
console routers, behind the authorization middleware with the console's page and assets
public (``console.public_paths()``), on uvicorn over a real SQLite database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter

from caregraph import security_wiring
from caregraph.app import create_app
from caregraph.auth import authorize
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from console import SignInOptions, SmartClient, build_console_router, public_paths
from fhir_store.api import build_router as fhir_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.api import build_router as linkage_router
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from security.middleware import DEFAULT_PUBLIC, AuthorizationMiddleware
from tests.support.services import free_port, wait_for_port

ExtraRouters = Callable[[FhirStore], list[APIRouter]]


class Served:
    """The app on a uvicorn thread; ``mpi`` and ``store`` are the ones it serves, ``token``
    a development token with every scope (none in jwks mode)."""

    def __init__(
        self,
        tmp: Path,
        extra: ExtraRouters | None = None,
        *,
        development_sign_in: bool = False,
        smart: SmartClient | None = None,
        auth: dict[str, Any] | None = None,
    ) -> None:
        # ``auth``: settings for jwks mode (auth_mode, auth_jwks, auth_jwks_issuer).
        settings = self.settings = Settings(data_dir=tmp, **(auth or {}))
        self.db = open_database(f"sqlite:///{tmp / 'caregraph.sqlite3'}")
        self.store = FhirStore(self.db)
        self.mpi = Mpi(SqlRepository.open(self.db))
        app = create_app(
            readiness={},
            routers=[
                *(extra(self.store) if extra else []),
                linkage_router(self.mpi, authorize),
                fhir_router(self.store, authorize),
                build_console_router(
                    sign_in=SignInOptions(
                        mint=self._mint if development_sign_in else None, smart=smart
                    )
                ),
            ],
        )
        guard = security_wiring.build_guard(settings, self.store, self.mpi)
        app.add_middleware(
            AuthorizationMiddleware,
            guard=guard,
            public_paths=DEFAULT_PUBLIC | public_paths(development_sign_in=development_sign_in),
        )
        development = settings.auth_mode == "development"
        self.token = (
            mint_development_token(settings, "user/*.cruds", subject="e2e-console")
            if development
            else ""
        )
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def mint(self, scope: str, *, patient: str | None = None, subject: str = "e2e") -> str:
        """A development token for this app with ``scope`` (and a patient context)."""
        return mint_development_token(self.settings, scope, patient=patient, subject=subject)

    def _mint(self, scope: str, subject: str, patient: str | None) -> str:
        # What the composition root passes in development mode (console.SignInOptions).
        return self.mint(scope, patient=patient, subject=subject)

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/app/"

    def add(self, patient: dict[str, Any]) -> str:
        """Store a source Patient and record it in the MPI; returns its golden record id."""
        self.store.update("Patient", patient["id"], patient)
        return self.mpi.ingest(patient).golden_id

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for_port("127.0.0.1", self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.db.close()
