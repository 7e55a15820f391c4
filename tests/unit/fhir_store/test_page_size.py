"""The page size of a SQLite store: new files take ``PAGE_SIZE``, existing ones keep theirs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fhir_store.database import PAGE_SIZE, SqliteDatabase


def _page_size(db: SqliteDatabase) -> int:
    with db.transaction(write=False) as tx:
        (size,) = tx.execute("PRAGMA page_size").fetchone()
    return int(size)


def test_a_new_database_takes_the_page_size(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "store.sqlite3")
    try:
        db.migrate()
        assert _page_size(db) == PAGE_SIZE == 4096
    finally:
        db.close()


def test_a_new_database_takes_a_page_size_given(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "store.sqlite3", page_size=8192)
    try:
        db.migrate()
        assert _page_size(db) == 8192
    finally:
        db.close()


def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    old = SqliteDatabase(path, page_size=16384)  # as the release before made them
    try:
        version = old.migrate()
        with old.transaction() as tx:
            tx.execute("CREATE TABLE kept (n INTEGER)")
            tx.execute("INSERT INTO kept (n) VALUES (1)")
    finally:
        old.close()
    db = SqliteDatabase(path)
    try:
        assert db.migrate() == version
        assert _page_size(db) == 16384
        with db.transaction() as tx:
            tx.execute("INSERT INTO kept (n) VALUES (2)")
        with db.transaction(write=False) as tx:
            assert [r[0] for r in tx.execute("SELECT n FROM kept ORDER BY n").fetchall()] == [1, 2]
    finally:
        db.close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
