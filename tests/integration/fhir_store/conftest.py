"""Fixtures: one store per test, on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_store.database import open_database
from fhir_store.store import FhirStore


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
