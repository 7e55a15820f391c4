"""The MPI rule tests again, on the real databases: ``repository`` is SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_store.database import open_database
from linkage.identity import IdentityRepository
from linkage.repository import LinkageRepository
from linkage.sql import SqlIdentityRepository, SqlRepository
from tests.unit.linkage.conftest import identity, make_mpi, mpi

__all__ = ["identity", "make_mpi", "mpi"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'caregraph.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def repository(database_url: str) -> Iterator[LinkageRepository]:
    db = open_database(database_url)
    try:
        yield SqlRepository.open(db)
    finally:
        db.close()


@pytest.fixture
def identity_repository(database_url: str) -> Iterator[IdentityRepository]:
    db = open_database(database_url)
    try:
        yield SqlIdentityRepository.open(db)
    finally:
        db.close()
