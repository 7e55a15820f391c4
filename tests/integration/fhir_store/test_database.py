"""The database seam on both engines: migrations, transactions, and the one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from caregraph.errors import ConfigError, StoreUnavailable
from fhir_store.database import Database, Transaction, open_database
from fhir_store.errors import StoreConflict
from fhir_store.records import dumps
from fhir_store.schema import MIGRATIONS

pytestmark = pytest.mark.integration


def test_open_creates_schema_and_reopen_keeps_data(db_url: str) -> None:
    db = open_database(db_url)
    db.ping()
    with db.transaction() as tx:
        tx.insert_rows(
            "idx_uri",
            ["row_key", "res_type", "res_id", "param", "uri"],
            [(1, "Device", "d1", "url", "x:y")],
        )
    db.close()
    again = open_database(db_url)
    with again.transaction(write=False) as tx:
        version = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        rows = tx.execute("SELECT uri FROM idx_uri").fetchall()
    again.close()
    assert version == MIGRATIONS[-1][0]
    assert [tuple(r) for r in rows] == [("x:y",)]


def test_processes_starting_together_migrate_a_fresh_database_once(db_url: str) -> None:
    """A scaled-out deployment starts every role at once on an empty database."""
    from concurrent.futures import ThreadPoolExecutor

    from linkage.sql import migrate as migrate_linkage
    from messaging.schema import migrate as migrate_messaging
    from security.clients import migrate as migrate_security

    def start() -> tuple[int, ...]:
        db = open_database(db_url)
        try:
            return (
                db.migrate(),
                migrate_linkage(db),
                migrate_messaging(db),
                migrate_security(db),
            )
        finally:
            db.close()

    with ThreadPoolExecutor(6) as pool:
        versions = set(pool.map(lambda _: start(), range(6)))
    assert len(versions) == 1
    db = open_database(db_url)
    with db.transaction(write=False) as tx:
        rows = tx.execute("SELECT version FROM schema_version").fetchall()
    db.close()
    assert sorted(r[0] for r in rows) == [v for v, _ in MIGRATIONS]


def test_rollback_on_error_and_conflict_is_typed(db_url: str) -> None:
    db = open_database(db_url)
    row = ("Patient", "p", 1, "2020-01-01T00:00:00.000000", 0, "h", "{}")
    cols = ["res_type", "res_id", "version", "last_updated", "deleted", "content_hash", "content"]
    with db.transaction() as tx:
        tx.insert_rows("resources", cols, [row])
        tx.insert_rows(
            "idx_uri", ["row_key", "res_type", "res_id", "param", "uri"], [(1, "P", "p", "u", "x")]
        )
    with pytest.raises(StoreConflict), db.transaction() as tx:
        tx.execute("DELETE FROM idx_uri")
        tx.insert_rows("resources", cols, [row])
    with db.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) FROM resources").fetchone()[0] == 1
        assert tx.execute("SELECT COUNT(*) FROM idx_uri").fetchone()[0] == 1
    db.close()


def test_multi_row_insert_chunks_beyond_parameter_limit(db_url: str) -> None:
    db = open_database(db_url)
    rows = [(i, "Device", f"d{i}", "url", f"u{i}") for i in range(20_000)]
    with db.transaction() as tx:
        tx.insert_rows("idx_uri", ["row_key", "res_type", "res_id", "param", "uri"], rows)
    with db.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) FROM idx_uri").fetchone()[0] == 20_000
    db.close()


def test_unreachable_postgres_is_one_clear_line() -> None:
    with pytest.raises(StoreUnavailable) as info:
        open_database("postgresql://nobody@127.0.0.1:1/nowhere")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("cannot reach PostgreSQL at 127.0.0.1:1/nowhere: ")
    assert text.endswith("check CAREGRAPH_DATABASE_URL")


def test_unopenable_sqlite_is_unavailable(tmp_path: Path) -> None:
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(StoreUnavailable, match="cannot reach SQLite at"):
        open_database(f"sqlite:///{target}")


def test_unsupported_scheme_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'mysql'"):
        open_database("mysql://localhost/db")


def test_upgrade_from_version_1_keeps_data_and_backfills(db_url: str) -> None:
    old = open_database(db_url, migrate=False)
    assert old.migrate(upto=1) == 1
    with old.transaction() as tx:
        tx.execute(
            "INSERT INTO resources (res_type, res_id, version, last_updated, deleted,"
            " content_hash, content) VALUES ('Patient', 'p', 2, '2021-01-01T00:00:00.000000',"
            " 0, 'h', '{}')"
        )
        for version, when in ((1, "2020-01-01T00:00:00.000000"), (2, "2021-01-01T00:00:00.000000")):
            tx.execute(
                "INSERT INTO history (res_type, res_id, version, last_updated, deleted, method,"
                " content) VALUES ('Patient', 'p', ?, ?, 0, 'PUT', '{}')",
                (version, when),
            )
    old.close()
    new = open_database(db_url)
    with new.transaction(write=False) as tx:
        row = tx.execute("SELECT version, first_created FROM resources").fetchone()
        assert (
            tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == MIGRATIONS[-1][0]
        )
    new.close()
    assert tuple(row) == (2, "2020-01-01T00:00:00.000000")


def test_pool_caps_connections_and_refuses_nesting(db_url: str) -> None:
    import threading

    from caregraph.errors import StoreError

    db = open_database(db_url, max_connections=2)
    db.acquire_timeout_s = 0.5
    inside = threading.Barrier(3)
    release = threading.Event()

    def hold() -> None:
        with db.transaction(write=False) as tx:
            tx.execute("SELECT 1").fetchone()
            inside.wait()
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    inside.wait()
    with pytest.raises(StoreUnavailable, match="all 2 connections"):
        db.ping()
    release.set()
    for t in holders:
        t.join()
    db.ping()
    with (
        db.transaction(write=False),
        pytest.raises(StoreError, match="nesting"),
        db.transaction(write=False),
    ):
        pass
    db.ping()
    db.close()


def test_clock_is_the_databases_in_column_form(db_url: str) -> None:
    from datetime import UTC, datetime

    from fhir_store.dates import FORMAT

    db = open_database(db_url)
    with db.transaction(write=False) as tx:
        first, second = tx.now(), tx.now()
    db.close()
    moment = datetime.strptime(first, FORMAT).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60
    assert len(first) == len("2020-01-01T00:00:00.000000") and second >= first


def _resource_rows(tx: Transaction, resources: list[dict[str, Any]]) -> None:
    """The ``resources`` rows of a store written before version 8 (no ``rid`` yet)."""
    at = "2024-01-01T00:00:00.000000"
    tx.insert_rows(
        "resources",
        ["res_type", "res_id", "version", "last_updated", "content_hash", "content"],
        [(r["resourceType"], r["id"], 1, at, "h", dumps(r)) for r in resources],
    )


def test_upgrade_to_compound_index_backfills_it(db_url: str) -> None:
    old = open_database(db_url, migrate=False)
    old.migrate(upto=4)
    with old.transaction() as tx:
        _resource_rows(tx, [{"resourceType": "Observation", "id": "o"}])
        tx.insert_rows(
            "idx_reference",
            ["res_type", "res_id", "param", "target_type", "target_id", "ref"],
            [("Observation", "o", "patient", "Patient", "p", "Patient/p")],
        )
        tx.insert_rows(
            "idx_token",
            ["res_type", "res_id", "param", "system", "code"],
            [("Observation", "o", "code", "http://loinc.org", "8867-4")],
        )
        tx.insert_rows(
            "idx_date",
            ["res_type", "res_id", "param", "lo", "hi"],
            [
                (
                    "Observation",
                    "o",
                    "date",
                    "2024-01-01T00:00:00.000000",
                    "2024-01-01T00:00:00.999999",
                )
            ],
        )
    old.close()
    new = open_database(db_url)
    with new.transaction(write=False) as tx:
        rows = tx.execute("SELECT res_id, combo, ref_id, code, lo FROM idx_compound").fetchall()
    new.close()
    assert [tuple(r) for r in rows] == [
        ("o", "patient|code|date", "p", "8867-4", "2024-01-01T00:00:00.000000")
    ]


def test_upgrade_to_shared_rows_leaves_the_rows_a_new_store_writes(db_url: str) -> None:
    """Version 6 deletes the rows parameters share (``searchparams.Shared``): a store
    written before it ends up with exactly the rows the current indexer writes."""
    from fhir_store.indexing import COLUMNS, Indexer
    from fhir_store.schema import INDEX_TABLES, ROW_SPAN
    from fhir_store.searchparams import default_registry
    from tests.unit.fhir_store.samples import SAMPLES

    resources = [
        *SAMPLES,
        {
            "resourceType": "Observation",
            "id": "typed-only",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "#p", "type": "Patient"},
            "contained": [{"resourceType": "Patient", "id": "p"}],
        },
    ]
    old = open_database(db_url, migrate=False)
    old.migrate(upto=5)
    with old.transaction() as tx:  # what the store wrote then: every parameter's own rows
        _resource_rows(tx, resources)
        for resource in resources:
            for table, part in Indexer(default_registry(), share=False).rows(resource).items():
                tx.insert_rows(table, COLUMNS[table], list(part))
    old.close()

    def rows(db: Database) -> set[tuple[object, ...]]:
        with db.transaction(write=False) as tx:
            out = set()
            for table in INDEX_TABLES:
                for rid, row_key, *r in tx.execute(
                    f"SELECT r.rid, t.row_key, {', '.join(f't.{c}' for c in COLUMNS[table])}"
                    f" FROM {table} t LEFT JOIN resources r"
                    " ON r.res_type = t.res_type AND r.res_id = t.res_id"
                ).fetchall():
                    assert row_key // ROW_SPAN == rid, (table, r)  # in its resource's range
                    out.add((table, *r))
            return out

    upgraded = open_database(db_url)
    after = rows(upgraded)
    upgraded.close()
    indexer = Indexer(default_registry())
    expected: set[tuple[object, ...]] = {
        (table, *r)
        for resource in resources
        for table, part in indexer.rows(resource).items()
        for r in part
    }
    assert after == expected
    assert ("idx_reference", "Observation", "typed-only", "patient", "", "", "#p") in after
    assert not {r for r in after if r[3] in ("combo-code", "combo-value-quantity")}


def test_sqlite_writers_of_one_process_take_turns_on_one_lock_per_file(tmp_path: Path) -> None:
    """Writers queue on a lock of the file instead of SQLite's sleeping busy handler; two
    ``Database`` objects on one file share it; readers never take it."""
    import threading

    from fhir_store.database import _file_lock

    url = f"sqlite:///{tmp_path}/one.sqlite3"
    first, second = open_database(url), open_database(url)
    lock = _file_lock(tmp_path / "one.sqlite3")
    with first.transaction(write=False):
        assert not lock.locked()
    order: list[str] = []
    inside = threading.Event()

    def late_writer() -> None:
        inside.wait(5)
        with second.transaction() as tx:
            order.append("second")
            tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")

    other = threading.Thread(target=late_writer)
    other.start()
    with first.transaction() as tx:
        assert lock.locked()
        inside.set()
        other.join(0.3)
        assert other.is_alive()  # waiting for its turn
        order.append("first")
        tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    other.join(5)
    assert order == ["first", "second"] and not lock.locked()
    first.close()
    second.close()


_SOME_IDS = [f"o{n}" for n in range(1, 20001, 40)]
"""500 of the 20,000 Observation ids ``o1`` .. ``o20000`` the planner tests write."""


def _grown_since_analyze(db_url: str, table: str, insert: str) -> Database:
    """PostgreSQL whose statistics of ``table`` were taken while it was empty, ``insert``
    run since: the planner's picture lags the table, as under a fast-growing feed."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL planner question")
    db = open_database(db_url)
    with db.transaction() as tx:
        tx.execute(f"ANALYZE {table}")
        tx.execute(insert)
    return db


def test_resources_by_id_probes_the_primary_key_whatever_the_statistics(db_url: str) -> None:
    """PostgreSQL: statistics taken while the table was empty, then 20,000 rows of one
    type; the lookup of 500 ids must still be index probes by id, not a scan of the type
    (an IN list, and a join on the ids, were planned as a scan of every row of the type)."""
    from fhir_store.records import resources_by_id

    db = _grown_since_analyze(
        db_url,
        "resources",
        "INSERT INTO resources (res_type, res_id, version, last_updated, deleted,"
        " content_hash, content) SELECT 'Observation', 'o' || g, 1,"
        " '2024-01-01T00:00:00.000000', 0, 'h', '{}' FROM generate_series(1, 20000) g",
    )
    ids = _SOME_IDS
    where, params = resources_by_id(db.dialect, "Observation", ids)
    with db.transaction(write=False) as tx:
        found = tx.execute(f"SELECT r.res_id {where}", params).fetchall()
        plan = "\n".join(r[0] for r in tx.execute(f"EXPLAIN SELECT r.res_id {where}", params))
    db.close()
    assert sorted(r[0] for r in found) == sorted(ids)
    probes = [line for line in plan.splitlines() if "Index Cond" in line]
    assert probes and all("res_id = k.res_id" in line for line in probes), plan
    assert "Hash" not in plan and "Seq Scan" not in plan, plan


def test_index_rows_of_resources_are_deleted_by_key_ranges_whatever_the_statistics(
    db_url: str,
) -> None:
    """PostgreSQL: as above, for the reindex of updated resources: the DELETE of their
    index rows (a key range each) must not read the whole index table (statistics taken
    while it was empty)."""
    from fhir_store.records import delete_rows_of
    from fhir_store.schema import ROW_SPAN

    db = _grown_since_analyze(
        db_url,
        "idx_token",
        # two rows for each of the resources numbered 1 .. 20,000
        "INSERT INTO idx_token (row_key, res_type, res_id, param, system, code)"
        f" SELECT (g / 2)::bigint * {ROW_SPAN} + g % 2, 'Observation', 'o' || (g / 2), 'code', 's',"
        " 'c' || g FROM generate_series(2, 40001) g",
    )
    rids = [int(res_id[1:]) for res_id in _SOME_IDS]
    sql, ranges = delete_rows_of("idx_token", rids)
    with db.transaction() as tx:
        plan = "\n".join(r[0] for r in tx.execute(f"EXPLAIN {sql}", ranges[0]))
        tx.executemany(sql, ranges)
        left = tx.execute("SELECT COUNT(*) FROM idx_token").fetchone()[0]
        gone = tx.execute(
            "SELECT COUNT(*) FROM idx_token WHERE res_id IN ('o1', 'o41', 'o19961')"
        ).fetchone()[0]
    db.close()
    assert "Seq Scan" not in plan and "idx_token_pkey" in plan, plan
    assert (left, gone) == (40000 - 2 * len(rids), 0)


def test_sqlite_wal_is_copied_by_a_thread_not_by_the_writers_commits(tmp_path: Path) -> None:
    """Commits leave a small WAL alone (SQLite's default copies it at 1,000 pages); the
    checkpoint thread copies it into the database file while the store is open, and stops
    once the last ``Database`` of the file in this process is closed. A path that needs
    escaping as a URI (the thread opens the file by URI) changes nothing."""
    import threading
    import time

    from fhir_store.database import _CHECKPOINTERS, _Checkpointer

    path = tmp_path / "a dir #1?" / "ckpt.sqlite3"
    path.parent.mkdir()
    first, second = open_database(f"sqlite:///{path}"), open_database(f"sqlite:///{path}")
    with first.transaction() as tx:
        backstop = tx.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert backstop == _Checkpointer.BACKSTOP_PAGES > 1000
        tx.execute("CREATE TABLE t (x TEXT)")
    # Half the rows' bytes in the database file: only a checkpoint puts them there.
    copied = path.stat().st_size + 20 * 40 * 500 // 2
    for _ in range(20):
        with first.transaction() as tx:
            tx.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(40)])
    deadline = time.monotonic() + 10
    while path.stat().st_size <= copied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > copied  # the rows reached the file
    checkpointer = _CHECKPOINTERS[path.resolve()]
    with second.transaction(write=False) as tx:  # the second shares the one thread
        assert tx.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 800
    assert checkpointer.users == 2
    assert [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]
    first.close()
    assert checkpointer.thread.is_alive()
    second.close()
    checkpointer.thread.join(5)
    assert not checkpointer.thread.is_alive() and path.resolve() not in _CHECKPOINTERS
