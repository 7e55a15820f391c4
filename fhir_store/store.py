"""The FHIR store: versioned resources, append-only history and search indexes in one place.

Every write goes through :meth:`FhirStore._write_batch`, in one transaction: the current row
(``resources``), a new history row, and the resource's index rows replaced. A write whose
content (meta.versionId and meta.lastUpdated aside) equals the current version adds nothing,
which is what makes redelivered bus messages idempotent.

Concurrency: on PostgreSQL the current rows are locked (``FOR UPDATE``) before versions are
computed; a race on a brand-new id ends in a primary-key conflict, and the batch is retried.
On SQLite ``BEGIN IMMEDIATE`` serializes writers. Either way versions have no gaps and each
version has exactly one writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from fhir_store.database import Database, Transaction
from fhir_store.dates import column_to_instant
from fhir_store.errors import (
    InvalidResource,
    ResourceGone,
    ResourceNotFound,
    StoreConflict,
    VersionConflict,
)
from fhir_store.indexing import COLUMNS, Indexer, Rows
from fhir_store.records import (
    HISTORY_CONTENT,
    Pending,
    Stored,
    WriteResult,
    by_type,
    check_id,
    content_hash,
    delete_rows_of,
    dumps,
    legacy_content_hash,
    resources_by_id,
)
from fhir_store.schema import INDEX_TABLES, ROW_SPAN
from fhir_store.searching import HistoryPage, Searching, SearchPage
from fhir_store.searchparams import Registry, default_registry

_RETRIES = 5
#: Batches indexing at least this many resources write on a thread of their own while
#: the next ``INDEX_CHUNK`` resources are indexed (see ``_Overlap``).
OVERLAP_FROM = 200
INDEX_CHUNK = 250


class FhirStore:
    """Create, read, version, delete and search FHIR resources in a :class:`Database`."""

    def __init__(self, db: Database, registry: Registry | None = None) -> None:
        self.db = db
        self.registry = registry or default_registry()
        self.indexer = Indexer(self.registry)
        self.searching = Searching(self)

    # -- reads ---------------------------------------------------------------------------

    def read(self, type_name: str, res_id: str) -> Stored:
        """The current version.

        Raises:
            ResourceNotFound: never existed.  ResourceGone: deleted.
        """
        with self.db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT version, last_updated, deleted, content FROM resources"
                " WHERE res_type = ? AND res_id = ?",
                (type_name, res_id),
            ).fetchone()
        if row is None:
            raise ResourceNotFound(f"{type_name}/{res_id} is not known")
        stored = Stored(type_name, res_id, int(row[0]), row[1], bool(row[2]), row[3])
        if stored.deleted:
            raise ResourceGone(f"{type_name}/{res_id} was deleted (version {stored.version})")
        return stored

    def vread(self, type_name: str, res_id: str, version: int) -> Stored:
        """One version from history (a deleted version raises ``ResourceGone``)."""
        with self.db.transaction(write=False) as tx:
            row = tx.execute(
                f"SELECT h.last_updated, h.deleted, {HISTORY_CONTENT} FROM history h"
                " WHERE h.res_type = ? AND h.res_id = ? AND h.version = ?",
                (type_name, res_id, version),
            ).fetchone()
        if row is None:
            raise ResourceNotFound(f"{type_name}/{res_id} has no version {version}")
        stored = Stored(type_name, res_id, version, row[0], bool(row[1]), row[2])
        if stored.deleted:
            raise ResourceGone(f"{type_name}/{res_id} version {version} is a deletion")
        return stored

    def history_at(
        self,
        type_name: str | None,
        res_id: str | None,
        at: tuple[str, str],
        *,
        since: str | None = None,
        count: int = 50,
        offset: int = 0,
        snapshot: str | None = None,
    ) -> HistoryPage:
        """History ``_at``: the versions that were current at some point in ``at`` (lo, hi).

        A version is current from its own ``last_updated`` until the next version's (none:
        still current, as of ``snapshot``); versions have no gaps, so the next one is
        ``version + 1``. Newest first, paged like ``Searching.history``.
        """
        lo, hi = at
        conds = ["h.last_updated <= ?", "h.last_updated <= ?"]
        args: list[Any] = [hi]
        if type_name:
            conds.append("h.res_type = ?")
        if res_id:
            conds.append("h.res_id = ?")
        if since:
            conds.append("h.last_updated >= ?")
        with self.db.transaction(write=False) as tx:
            snapshot = snapshot or tx.now()
            args.append(snapshot)
            args.extend(v for v in (type_name, res_id, since) if v)
            # the next version, unless it was written after the snapshot
            query = (
                " FROM history h LEFT JOIN history n ON n.res_type = h.res_type"
                " AND n.res_id = h.res_id AND n.version = h.version + 1 AND n.last_updated <= ?"
                f" WHERE {' AND '.join(conds)} AND (n.version IS NULL OR n.last_updated > ?)"
            )
            params = [snapshot, *args, lo]
            total = int(tx.execute(f"SELECT COUNT(*){query}", params).fetchone()[0])
            rows = tx.execute(
                "SELECT h.res_type, h.res_id, h.version, h.last_updated, h.deleted,"
                f" {HISTORY_CONTENT}, h.method{query}"
                " ORDER BY h.last_updated DESC, h.res_type, h.res_id, h.version DESC"
                " LIMIT ? OFFSET ?",
                [*params, count + 1, offset],
            ).fetchall()
        page = [Stored(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows[:count]]
        return HistoryPage(page, total, len(rows) > count, offset, count, snapshot)

    # -- writes --------------------------------------------------------------------------

    def create(self, resource: dict[str, Any]) -> WriteResult:
        """Store a new resource under a new server-assigned id (any client id is replaced)."""
        type_name = resource["resourceType"]
        new_id = str(uuid.uuid4())
        return self._write_one(Pending(type_name, new_id, {**resource, "id": new_id}, "POST"))

    def update(
        self, type_name: str, res_id: str, resource: dict[str, Any], *, if_match: int | None = None
    ) -> WriteResult:
        """Write a new version (creating the resource if the id is new).

        Raises:
            InvalidResource: the body's type or id does not match the URL.
            VersionConflict: ``if_match`` is not the current version (HTTP 412).
        """
        if resource.get("resourceType") != type_name:
            raise InvalidResource(
                f"resourceType {resource.get('resourceType')!r} does not match {type_name}",
                expression="resourceType",
            )
        if resource.get("id") != res_id:
            raise InvalidResource(
                f"id {resource.get('id')!r} in the body does not match {res_id!r} in the URL",
                expression="id",
            )
        check_id(res_id)
        return self._write_one(Pending(type_name, res_id, resource, "PUT", if_match))

    def delete(self, type_name: str, res_id: str, *, if_match: int | None = None) -> bool:
        """Delete (a history row marks it); ``False`` if there was nothing current to delete."""
        result = self._write_one(Pending(type_name, res_id, None, "DELETE", if_match))
        return result.changed

    def upsert_many(self, resources: Sequence[dict[str, Any]]) -> None:
        """The idempotent batch path: resources built by caregraph, with deterministic ids.

        One transaction for the batch; resources identical to their current version add
        nothing, so a redelivered batch is a no-op.
        """
        if not resources:
            return
        pending = [Pending(r["resourceType"], check_id(r.get("id")), r, "PUT") for r in resources]
        self.write(pending)

    def write(self, pending: Sequence[Pending]) -> list[WriteResult]:
        """Write several resources in one transaction (all or nothing); results in order.

        Raises:
            VersionConflict: an ``if_match`` was stale; nothing was written.
        """
        if not pending:
            return []
        return self._with_retries(lambda tx: self._write_batch(tx, pending))

    # -- internals -------------------------------------------------------------------------

    def _write_one(self, item: Pending) -> WriteResult:
        return self._with_retries(lambda tx: self._write_batch(tx, [item]))[0]

    def _with_retries(self, work: Any) -> list[WriteResult]:
        for attempt in range(_RETRIES):
            try:
                with self.db.transaction() as tx:
                    return list(work(tx))
            except StoreConflict:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _current(
        self, tx: Transaction, keys: Iterable[tuple[str, str]], rids: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], tuple[int, str, bool, str, str]]:
        """Current (version, hash, deleted, last_updated, content) for the keys, locked on PG;
        their numbers (``resources.rid``) go into ``rids``."""
        found: dict[tuple[str, str], tuple[int, str, bool, str, str]] = {}
        for type_name, ids in by_type(keys):
            where, params = resources_by_id(self.db.dialect, type_name, ids, lock=True)
            rows = tx.execute(
                "SELECT r.res_id, r.version, r.content_hash, r.deleted, r.last_updated,"
                f" r.content, r.rid {where}",
                params,
            ).fetchall()
            for r in rows:
                found[(type_name, r[0])] = (int(r[1]), r[2], bool(r[3]), r[4], r[5])
                rids[(type_name, r[0])] = int(r[6])
        return found

    def _write_batch(self, tx: Transaction, items: Sequence[Pending]) -> list[WriteResult]:
        rids: dict[tuple[str, str], int] = {}
        current = self._current(tx, ((i.type, i.id) for i in items), rids)
        in_db = set(current)
        # The content of each version stored now, which its history row may lack (below).
        was = {key: (state[0], state[4]) for key, state in current.items() if not state[2]}
        column = tx.now()
        instant = column_to_instant(column)
        results: list[WriteResult] = []
        upserts: dict[tuple[str, str], tuple[Any, ...]] = {}
        history: list[tuple[Any, ...]] = []
        reindex: set[tuple[str, str]] = set()
        # The version of each key written last, to index once the batch is planned.
        to_index: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            key = (item.type, item.id)
            state = current.get(key)
            if item.if_match is not None and (state is None or state[0] != item.if_match):
                have = "none" if state is None else str(state[0])
                raise VersionConflict(
                    f"{item.type}/{item.id}: If-Match version {item.if_match} is stale"
                    f" (current version: {have})"
                )
            if item.resource is None:  # delete
                if state is None or state[2]:
                    version = state[0] if state else 0
                    results.append(
                        WriteResult(
                            Stored(item.type, item.id, version, column, True, ""), False, False
                        )
                    )
                    continue
                version = state[0] + 1
                row = (item.type, item.id, version, column, 1, "", "")
                upserts[key] = row
                history.append((*row[:5], item.method, ""))
                reindex.add(key)
                to_index.pop(key, None)
                current[key] = (version, "", True, column, "")
                results.append(
                    WriteResult(Stored(item.type, item.id, version, column, True, ""), False, True)
                )
                continue
            digest = content_hash(item.resource)
            if (
                state is not None
                and not state[2]
                and (state[1] == digest or state[1] == legacy_content_hash(item.resource))
            ):
                stored = Stored(item.type, item.id, state[0], state[3], False, state[4])
                results.append(WriteResult(stored, False, False))
                continue
            version = state[0] + 1 if state else 1
            meta = dict(item.resource.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = instant
            body = {**item.resource, "id": item.id, "meta": meta}
            text = dumps(body)
            row = (item.type, item.id, version, column, 0, digest, text)
            upserts[key] = row
            history.append((*row[:5], item.method, text))
            if state is not None:
                reindex.add(key)
            to_index[key] = body
            current[key] = (version, digest, False, column, text)
            results.append(
                WriteResult(
                    Stored(item.type, item.id, version, column, False, text),
                    state is None or state[2],
                    True,
                )
            )
        kept = _without_current(history, upserts)
        new = [key for key in upserts if key not in in_db]
        rids.update(zip(new, tx.new_rids(len(new)), strict=True))
        with _Overlap(len(to_index) >= OVERLAP_FROM) as later:
            later(partial(self._flush, tx, upserts, in_db, kept, [rids[k] for k in reindex], rids))
            keys = list(to_index)
            for start in range(0, len(keys), INDEX_CHUNK):
                rows: dict[str, list[tuple[Any, ...]]] = {}
                for key in keys[start : start + INDEX_CHUNK]:
                    _keyed(self.indexer.rows(to_index[key]), key, rids[key], rows)
                later(partial(_copy_index, tx, rows))
        # Versions that stop being current take their content into their history row.
        tx.executemany(
            "UPDATE history SET content = ? WHERE res_type = ? AND res_id = ? AND version = ?"
            " AND content = ''",
            [(text, *key, version) for key, (version, text) in was.items() if key in upserts],
        )
        return results

    def _flush(
        self,
        tx: Transaction,
        upserts: dict[tuple[str, str], tuple[Any, ...]],
        in_db: set[tuple[str, str]],
        history: list[tuple[Any, ...]],
        reindex: list[int],
        rids: dict[tuple[str, str], int],
    ) -> None:
        if not upserts:
            return
        for table in INDEX_TABLES:
            tx.executemany(*delete_rows_of(table, reindex))
        # New resources are bulk-copied (a concurrent creator of the same id makes the
        # primary key refuse, and the batch is retried); existing ones are updated in place.
        tx.copy_rows(
            "resources",
            (
                "res_type",
                "res_id",
                "version",
                "last_updated",
                "deleted",
                "content_hash",
                "content",
                "first_created",
                "rid",
            ),
            [(*row, row[3], rids[key]) for key, row in upserts.items() if key not in in_db],
        )
        tx.executemany(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, content_hash = ?,"
            " content = ? WHERE res_type = ? AND res_id = ?",
            [(*row[2:], row[0], row[1]) for key, row in upserts.items() if key in in_db],
        )
        tx.copy_rows(
            "history",
            ("res_type", "res_id", "version", "last_updated", "deleted", "method", "content"),
            history,
        )


def _keyed(
    rows: Rows, key: tuple[str, str], rid: int, into: dict[str, list[tuple[Any, ...]]]
) -> None:
    """One resource's index rows, each led by its ``row_key`` (see ``schema.ROW_SPAN``).

    Raises:
        InvalidResource: more rows in one table than a resource has keys for.
    """
    base = rid * ROW_SPAN
    for table, part in rows.items():
        if len(part) > ROW_SPAN:
            raise InvalidResource(
                f"{'/'.join(key)} has {len(part):,} search index entries in {table};"
                f" a resource may have at most {ROW_SPAN:,}"
            )
        into.setdefault(table, []).extend([(at, *row) for at, row in enumerate(part, base)])


def _copy_index(tx: Transaction, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, part in rows.items():
        tx.copy_rows(table, ("row_key", *COLUMNS[table]), part)


class _Overlap:
    """Runs a transaction's statements, in order, on a thread of their own while the
    caller goes on computing (the index rows of the next chunk): the database (SQLite's
    C code, or the PostgreSQL server) then works on one core while Python works on the
    other, instead of each waiting for the other. One thread per transaction, never
    shared: two transactions' statements in one queue could wait on each other's locks.
    The connection is used by one thread at a time, since the caller does not touch it
    before ``__exit__``, which waits for the thread. After a failure nothing more runs,
    and the failure is raised (at the next call, or on exit), so the transaction rolls
    back. Off (``enabled=False``), each call runs at once, as small writes are best served.
    """

    def __init__(self, enabled: bool) -> None:
        self._pool = ThreadPoolExecutor(1, "fhir-store-write") if enabled else None
        self._error: BaseException | None = None

    def __call__(self, work: Callable[[], None]) -> None:
        if self._pool is None:
            work()
            return
        if self._error is not None:
            raise self._error
        self._pool.submit(self._run, work)

    def _run(self, work: Callable[[], None]) -> None:
        if self._error is None:
            try:
                work()
            except BaseException as exc:  # raised in the caller's thread
                self._error = exc

    def __enter__(self) -> _Overlap:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        if self._error is not None and kind is None:
            raise self._error


def _without_current(
    history: list[tuple[Any, ...]], upserts: dict[tuple[str, str], tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """``history`` with the content of each current version left out (``""``): the
    ``resources`` row holds it, and ``HISTORY_CONTENT`` reads it from there. A device
    reading is written once and never updated, so its content is stored once, not twice."""
    current = {(row[0], row[1], row[2]) for row in upserts.values() if not row[4]}
    return [(*row[:6], "") if row[:3] in current else row for row in history]


__all__ = [
    "FhirStore",
    "Pending",
    "SearchPage",
    "Stored",
    "WriteResult",
    "check_id",
    "content_hash",
]
