from __future__ import annotations

from datetime import UTC, datetime

import pytest

from caregraph.errors import StoreError
from fhir_store.database import open_database
from linkage.features import extract
from linkage.identity import EntityLink
from linkage.links import LinkEvent, LinkOrigin, LinkState, SourceRecord
from linkage.repository import LinkageRepository
from linkage.sql import SqlIdentityRepository, SqlRepository, _schema, migrate
from tests.unit.linkage.factories import patient

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(pid: str, **kw: object) -> SourceRecord:
    p = patient(pid=pid, **kw)  # type: ignore[arg-type]
    return SourceRecord(pid, p, extract(p), "urn:test", NOW)


def test_migration_is_idempotent(database_url: str) -> None:
    db = open_database(database_url)
    try:
        assert migrate(db) == 5
        assert migrate(db) == 5
    finally:
        db.close()


def test_entity_links_of_schema_4_become_automatic_decisions(database_url: str) -> None:
    db = open_database(database_url)
    try:
        assert db.apply_migrations("linkage_schema_version", _schema(db.dialect)[:4]) == 4
        with db.transaction() as tx:
            tx.execute(
                "INSERT INTO linkage_entity_link (resource_type, source_id, entity_id, state, "
                "rule) VALUES (?, ?, ?, ?, ?)",
                ("Device", "d1", "e1", "MATCH", "udi-di:X"),
            )
        repo = SqlIdentityRepository.open(db)
        with repo.transaction(write=False):
            link = repo.get_link("Device", "d1")
        assert link == EntityLink("Device", "d1", "e1", LinkState.MATCH, "udi-di:X")
        assert link.origin == LinkOrigin.AUTO
    finally:
        db.close()


def test_records_keys_and_term_counts(repository: LinkageRepository) -> None:
    with repository.transaction():
        repository.put_record(record("a", family="Meier"), ["k1", "k2"])
        repository.put_record(record("b", family="Meier"), ["k2"])
    with repository.transaction(write=False):
        assert repository.count_records() == 2
        assert repository.candidate_ids(["k2", "k9"], 10) == {"a", "b"}
        assert len(repository.candidate_ids(["k2"], 1)) == 1
        assert repository.term_counts([("family", "meier"), ("family", "x")]) == {
            ("family", "meier"): 2,
            ("family", "x"): 0,
        }
        assert repository.get_features(["a"])["a"].family == "meier"
    with repository.transaction():  # an update moves keys and counts, and is no new record
        repository.put_record(record("b", family="Keller"), ["k3"])
    with repository.transaction(write=False):
        assert repository.count_records() == 2
        assert repository.candidate_ids(["k2"], 10) == {"a"}
        assert repository.term_counts([("family", "meier"), ("family", "keller")]) == {
            ("family", "meier"): 1,
            ("family", "keller"): 1,
        }
        got = repository.get_record("b")
        assert got is not None and got.resource["name"][0]["family"] == "Keller"


def test_a_failed_transaction_leaves_nothing(repository: LinkageRepository) -> None:
    with pytest.raises(RuntimeError), repository.transaction():
        repository.put_record(record("a"), ["k1"])
        raise RuntimeError("boom")
    with repository.transaction(write=False):
        assert repository.get_record("a") is None
        assert repository.count_records() == 0


def test_events_come_back_in_order_with_their_detail(repository: LinkageRepository) -> None:
    with repository.transaction():
        first = repository.add_event(
            LinkEvent(NOW, "x", "merge", golden_id="g2", previous_golden_id="g1", detail={"k": 1})
        )
        second = repository.add_event(LinkEvent(NOW, "y", "link", source_id="s", golden_id="g1"))
    assert second > first
    with repository.transaction(write=False):
        assert [e.event_id for e in repository.events(golden_id="g1")] == [first, second]
        assert [e.action for e in repository.events(source_id="s")] == ["link"]
        got = repository.get_event(first)
        assert got is not None and got.detail == {"k": 1}


def test_database_errors_are_store_errors(database_url: str) -> None:
    db = open_database(database_url)
    try:
        repo = SqlRepository(db)  # not migrated: the tables do not exist
        with pytest.raises(StoreError), repo.transaction(write=False):
            repo.get_record("a")
    finally:
        db.close()


def test_writers_are_serialized_across_connections(database_url: str) -> None:
    """Two MPIs on one database ingest the same new person at the same moment, 15 times:
    without serialized writers both see no candidate and found two golden records."""
    import threading

    from linkage.mpi import Mpi

    people = [
        ("Anna", "Meier"),
        ("Marc", "Keller"),
        ("Lea", "Weber"),
        ("Noah", "Huber"),
        ("Mia", "Schmid"),
        ("Luca", "Brunner"),
        ("Emma", "Baumann"),
        ("Elias", "Frei"),
        ("Lina", "Moser"),
        ("Ben", "Graf"),
        ("Sara", "Roth"),
        ("Jan", "Vogel"),
        ("Nina", "Kunz"),
        ("Tim", "Bucher"),
        ("Ida", "Stucki"),
    ]
    dbs = [open_database(database_url) for _ in range(2)]
    try:
        mpis = [Mpi(SqlRepository.open(db)) for db in dbs]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def ingest(k: int) -> None:
            try:
                for n, (given, family) in enumerate(people):
                    barrier.wait()
                    birth = f"19{50 + n}-0{1 + n % 9}-1{n % 9}"
                    mpis[k].ingest(patient(given, family, birth, pid=f"p{n}-{k}"))
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=ingest, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        for n in range(len(people)):
            assert mpis[0].golden_of(f"p{n}-0").golden_id == mpis[0].golden_of(f"p{n}-1").golden_id
    finally:
        for db in dbs:
            db.close()
