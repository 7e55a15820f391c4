"""``Patient/[golden]/$everything`` over HTTP, on SQLite and PostgreSQL: the record across
every linked identity, paged, filtered, each resource once; other Patients as the store."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from fhir_store.api import build_router as build_store_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.api import build_router
from linkage.everything import LinkedEverything
from linkage.links import Golden
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from tests.support.services import serve_app
from tests.unit.linkage.factories import patient

pytestmark = pytest.mark.integration


def allow() -> None:
    return None


def observation(oid: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 70, "unit": "/min"},
        **extra,
    }


class World:
    def __init__(self, store: FhirStore, mpi: Mpi, base: str) -> None:
        self.store, self.mpi, self.base = store, mpi, base

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base}/fhir/{path}", params=params, timeout=10)

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        bundles = [self.get(path, **params).json()]
        while nxt := [x["url"] for x in bundles[-1]["link"] if x["relation"] == "next"]:
            bundles.append(httpx.get(nxt[0], timeout=10).json())
        return bundles


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    db = open_database(database_url)
    store = FhirStore(db)

    def to_store(goldens: list[Golden]) -> None:  # what the store writer does off the bus
        for g in goldens:
            store.update("Patient", g.golden_id, g.resource)

    counter = itertools.count(1)
    mpi = Mpi(
        SqlRepository.open(db),
        new_golden_id=lambda: f"golden-{next(counter)}",
        golden_listeners=[to_store],
    )
    app = FastAPI()
    # as the api role mounts them: linkage first, then the store with its catch-all routes
    app.include_router(build_router(mpi, allow, store=store))
    app.include_router(build_store_router(store, allow))
    try:
        with serve_app(app) as base:
            yield World(store, mpi, base)
    finally:
        db.close()


def linked_pair(w: World) -> str:
    """Two institutions' records of one person, linked to one golden record; returns it."""
    a = patient(pid="a1", identifiers=[("urn:hosp:a", "A1")])
    b = patient(pid="b1", identifiers=[("urn:hosp:b", "B1")], phone="+41 31 555 01 01")
    for p in (a, b):
        w.store.update("Patient", p["id"], p)
    first = w.mpi.ingest(a)
    second = w.mpi.ingest(b)
    assert second.golden_id == first.golden_id and second.state == "MATCH"
    return first.golden_id


def ids(bundles: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for b in bundles
        for e in b.get("entry", [])
    ]


def test_golden_everything_returns_every_linked_identity(world: World) -> None:
    golden = linked_pair(world)
    for k in range(3):
        world.store.update("Observation", f"oa{k}", observation(f"oa{k}", "a1"))
    for k in range(2):
        world.store.update("Observation", f"ob{k}", observation(f"ob{k}", "b1"))
    world.store.update("Observation", "other", observation("other", "nobody"))
    r = world.get(f"Patient/{golden}/$everything")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 8
    assert ids([bundle]) == sorted(
        [
            *(f"Observation/oa{k}" for k in range(3)),
            *(f"Observation/ob{k}" for k in range(2)),
            f"Patient/{golden}",
            "Patient/a1",
            "Patient/b1",
        ]
    )
    # A source Patient's own $everything is the store's: its own compartment (which holds
    # the golden Patient, whose Patient.link names it).
    assert ids([world.get("Patient/b1/$everything").json()]) == [
        "Observation/ob0",
        "Observation/ob1",
        "Patient/b1",
        f"Patient/{golden}",
    ]


def test_a_resource_in_two_compartments_appears_once(world: World) -> None:
    golden = linked_pair(world)
    both = observation("both", "a1", performer=[{"reference": "Patient/b1"}])
    world.store.update("Observation", "both", both)
    bundle = world.get(f"Patient/{golden}/$everything").json()
    assert ids([bundle]).count("Observation/both") == 1 and bundle["total"] == 4


def test_paging_walks_the_merged_record_once(world: World) -> None:
    golden = linked_pair(world)
    for k in range(7):
        world.store.update("Observation", f"oa{k}", observation(f"oa{k}", "a1"))
        world.store.update("Observation", f"ob{k}", observation(f"ob{k}", "b1"))
    whole = ids([world.get(f"Patient/{golden}/$everything", _count=100).json()])
    assert len(whole) == 17
    pages = world.pages(f"Patient/{golden}/$everything", _count=4)
    assert [len(b["entry"]) for b in pages] == [4, 4, 4, 4, 1]
    assert ids(pages) == whole
    assert all(b["total"] == 17 for b in pages)
    second = world.get(f"Patient/{golden}/$everything", _count=4, _offset=4).json()
    links = {x["relation"]: x["url"] for x in second["link"]}
    assert "_offset=8" in links["next"] and "_offset=0" in links["previous"]
    assert "_count=4" in links["self"]


def test_type_and_since_apply_to_every_identity(world: World) -> None:
    golden = linked_pair(world)
    world.store.update("Observation", "old", observation("old", "a1"))
    time.sleep(0.01)  # lastUpdated has microseconds; make "after" unambiguous
    world.store.update("Observation", "newa", observation("newa", "a1"))
    world.store.update("Observation", "newb", observation("newb", "b1"))
    since = world.store.read("Observation", "newa").last_updated
    only = world.get(f"Patient/{golden}/$everything", _type="Observation").json()
    assert ids([only]) == ["Observation/newa", "Observation/newb", "Observation/old"]
    later = world.get(f"Patient/{golden}/$everything", _type="Observation", _since=since).json()
    assert ids([later]) == ["Observation/newa", "Observation/newb"] and later["total"] == 2
    link = later["link"][0]["url"]
    assert "_type=Observation" in link and "_since=" in link


def test_unconfirmed_and_unlinked_identities_are_left_out(world: World) -> None:
    golden = linked_pair(world)
    world.store.update("Observation", "ob", observation("ob", "b1"))
    maybe = patient(pid="c1", birth_date="1975-11-23", postcode="3999")
    world.store.update("Patient", "c1", maybe)
    world.store.update("Observation", "oc", observation("oc", "c1"))
    outcome = world.mpi.ingest(maybe)
    assert (outcome.golden_id, outcome.state) == (golden, "POSSIBLE_MATCH")
    assert "Observation/oc" not in ids([world.get(f"Patient/{golden}/$everything").json()])
    world.mpi.unlink("b1", golden, "dr.who", "not the same person")
    assert ids([world.get(f"Patient/{golden}/$everything").json()]) == [
        "Patient/a1",
        f"Patient/{golden}",
    ]


def test_errors_are_operation_outcomes(world: World) -> None:
    golden = linked_pair(world)
    r = world.get("Patient/nobody/$everything")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = world.get(f"Patient/{golden}/$everything", _count="many")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_count"]
    r = world.get(f"Patient/{golden}/$everything", _since="yesterday")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_the_route_depends_on_the_authorization_dependency(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = FhirStore(db)

        def deny() -> None:
            raise HTTPException(401, "no token", headers={"WWW-Authenticate": "Bearer"})

        app = FastAPI()
        app.include_router(build_router(Mpi(SqlRepository.open(db)), deny, store=store))
        with serve_app(app) as base:
            r = httpx.get(f"{base}/fhir/Patient/x/$everything", timeout=10)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["resourceType"] == "OperationOutcome"
    finally:
        db.close()


def test_total_is_left_out_when_counting_it_would_read_too_much(world: World) -> None:
    golden = linked_pair(world)
    for k in range(3):
        world.store.update("Observation", f"oa{k}", observation(f"oa{k}", "a1"))
    linked = LinkedEverything(world.mpi, world.store, exact_total_limit=3)
    first = linked.everything(golden, [("_count", "2")])
    assert first.total is None and first.has_next and len(first.matches) == 2
    last = linked.everything(golden, [("_count", "2"), ("_offset", "4")])
    assert last.total == 6 and not last.has_next  # read to its end anyway: exact
    counted = LinkedEverything(world.mpi, world.store).everything(golden, [("_count", "2")])
    assert counted.total == 6 and counted.has_next
