"""Fixtures: one store per test, on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from fhir_store.api import build_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from tests.support.services import serve_app


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/store.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[FhirStore]:
    db = open_database(db_url)
    try:
        yield FhirStore(db)
    finally:
        db.close()


@dataclass
class Server:
    """A running uvicorn serving the FHIR router on a loopback port."""

    base: str
    store: FhirStore


def _allow_all() -> None:
    """The authorization dependency until authorization lands: lets everything through."""


@contextmanager
def serving(store: FhirStore, authorize: Callable[..., Any] = _allow_all) -> Iterator[str]:
    """uvicorn serving the FHIR router on a free loopback port; yields the FHIR base URL."""
    app = FastAPI()
    app.include_router(build_router(store, authorize, max_body_bytes=2 * 1024 * 1024))
    with serve_app(app) as base:
        yield f"{base}/fhir"


@pytest.fixture
def server(store: FhirStore) -> Iterator[Server]:
    with serving(store) as base:
        yield Server(base, store)
