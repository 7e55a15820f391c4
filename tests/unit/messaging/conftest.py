"""A store and an MPI on one SQLite file (the database seam messaging writes through), with
the hospital's own record of the patient partners send in ``messages.transfer``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_store.database import Database, open_database
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from linkage.sql import SqlRepository

from .messages import patient

HOSPITAL_PATIENT = "h1"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path}/caregraph.sqlite3")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def store(db: Database) -> FhirStore:
    return FhirStore(db)


@pytest.fixture
def mpi(db: Database, store: FhirStore) -> Mpi:
    index = Mpi(SqlRepository.open(db))
    own = patient(HOSPITAL_PATIENT, "Andersen", "Anna", "1970-01-01", "H-1")
    own["identifier"][0]["system"] = "urn:oid:1.2.3.4.hospital-a"
    store.update("Patient", HOSPITAL_PATIENT, own)
    index.ingest(own)
    return index
