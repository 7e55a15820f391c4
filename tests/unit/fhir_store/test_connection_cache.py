"""How a pool of SQLite connections shares its page cache: one budget per pool."""

from __future__ import annotations

from pathlib import Path

from fhir_store.database import (
    MIN_CONNECTION_CACHE_KIB,
    POOL_CACHE_KIB,
    SqliteDatabase,
    connection_cache_kib,
)


def test_the_pool_budget_is_shared_out_evenly() -> None:
    assert connection_cache_kib(64 * 1024, 8) == 8 * 1024
    assert connection_cache_kib(64 * 1024, 1) == 64 * 1024
    assert connection_cache_kib(POOL_CACHE_KIB, 8) * 8 <= POOL_CACHE_KIB


def test_no_connection_gets_less_than_sqlites_default() -> None:
    assert connection_cache_kib(4 * 1024, 64) == MIN_CONNECTION_CACHE_KIB
    assert connection_cache_kib(0, 0) == MIN_CONNECTION_CACHE_KIB


def test_each_connection_is_opened_with_its_share(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "store.sqlite3", max_connections=4, pool_cache_kib=16 * 1024)
    try:
        with db.transaction(write=False) as tx:
            (size,) = tx.execute("PRAGMA cache_size").fetchone()
        assert size == -4 * 1024  # negative: KiB, not pages
    finally:
        db.close()
