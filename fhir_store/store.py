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

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_store.database import Database, Transaction
from fhir_store.dates import date_range, now_instant
from fhir_store.errors import (
    InvalidResource,
    InvalidSearch,
    ResourceGone,
    ResourceNotFound,
    StoreConflict,
    VersionConflict,
)
from fhir_store.indexing import COLUMNS, Indexer, Rows
from fhir_store.schema import INDEX_TABLES
from fhir_store.search import DEFAULT_COUNT, Query, QueryBuilder
from fhir_store.searchparams import Registry, default_registry

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RETRIES = 5
_KEYS_PER_SELECT = 500


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored version: its identity, and its JSON text exactly as served."""

    type: str
    id: str
    version: int
    last_updated: str  # column form, UTC, see fhir_store.dates
    deleted: bool
    content: str  # JSON text with meta.versionId and meta.lastUpdated; "" when deleted

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def resource(self) -> dict[str, Any]:
        return dict(json.loads(self.content))


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the version now current, and whether the resource was created."""

    stored: Stored
    created: bool
    changed: bool


@dataclass(slots=True)
class Pending:
    """One resource to write in a batch."""

    type: str
    id: str
    resource: dict[str, Any] | None  # None: delete
    method: str
    if_match: int | None = None


def content_hash(resource: Mapping[str, Any]) -> str:
    """Hash of the content that versions compare: everything but versionId and lastUpdated."""
    meta = resource.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = {**resource, "meta": rest}
        if not rest:
            del resource["meta"]
    text = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_id(value: Any) -> str:
    """A valid FHIR id, or ``InvalidResource``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidResource(
            f"id {value!r} is not a FHIR id ([A-Za-z0-9-.], 1 to 64 characters)",
            expression="id",
        )
    return value


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
                "SELECT last_updated, deleted, content FROM history"
                " WHERE res_type = ? AND res_id = ? AND version = ?",
                (type_name, res_id, version),
            ).fetchone()
        if row is None:
            raise ResourceNotFound(f"{type_name}/{res_id} has no version {version}")
        stored = Stored(type_name, res_id, version, row[0], bool(row[1]), row[2])
        if stored.deleted:
            raise ResourceGone(f"{type_name}/{res_id} version {version} is a deletion")
        return stored

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
        self, tx: Transaction, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, str, bool, str, str]]:
        """Current (version, hash, deleted, last_updated, content) for the keys, locked on PG."""
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        found: dict[tuple[str, str], tuple[int, str, bool, str, str]] = {}
        for type_name, ids in by_type(keys):
            rows = tx.execute(
                "SELECT res_id, version, content_hash, deleted, last_updated, content"
                f" FROM resources WHERE res_type = ? AND res_id IN ({', '.join('?' * len(ids))})"
                f"{lock}",
                [type_name, *ids],
            ).fetchall()
            for r in rows:
                found[(type_name, r[0])] = (int(r[1]), r[2], bool(r[3]), r[4], r[5])
        return found

    def _write_batch(self, tx: Transaction, items: Sequence[Pending]) -> list[WriteResult]:
        current = self._current(tx, ((i.type, i.id) for i in items))
        in_db = set(current)
        column, instant = now_instant()
        results: list[WriteResult] = []
        upserts: dict[tuple[str, str], tuple[Any, ...]] = {}
        history: list[tuple[Any, ...]] = []
        reindex: set[tuple[str, str]] = set()
        key_rows: dict[tuple[str, str], Rows] = {}
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
                key_rows[key] = {}
                current[key] = (version, "", True, column, "")
                results.append(
                    WriteResult(Stored(item.type, item.id, version, column, True, ""), False, True)
                )
                continue
            digest = content_hash(item.resource)
            if state is not None and not state[2] and state[1] == digest:
                stored = Stored(item.type, item.id, state[0], state[3], False, state[4])
                results.append(WriteResult(stored, False, False))
                continue
            version = state[0] + 1 if state else 1
            meta = dict(item.resource.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = instant
            body = {**item.resource, "id": item.id, "meta": meta}
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            row = (item.type, item.id, version, column, 0, digest, text)
            upserts[key] = row
            history.append((*row[:5], item.method, text))
            if state is not None:
                reindex.add(key)
            key_rows[key] = self.indexer.rows(body)
            current[key] = (version, digest, False, column, text)
            results.append(
                WriteResult(
                    Stored(item.type, item.id, version, column, False, text),
                    state is None or state[2],
                    True,
                )
            )
        index_rows: Rows = {}
        for rows in key_rows.values():
            for table, part in rows.items():
                index_rows.setdefault(table, set()).update(part)
        self._flush(tx, upserts, in_db, history, reindex, index_rows)
        return results

    def _flush(
        self,
        tx: Transaction,
        upserts: dict[tuple[str, str], tuple[Any, ...]],
        in_db: set[tuple[str, str]],
        history: list[tuple[Any, ...]],
        reindex: set[tuple[str, str]],
        index_rows: Rows,
    ) -> None:
        if not upserts:
            return
        for type_name, ids in by_type(reindex):
            marks = ", ".join("?" * len(ids))
            for table in INDEX_TABLES:
                tx.execute(
                    f"DELETE FROM {table} WHERE res_type = ? AND res_id IN ({marks})",
                    [type_name, *ids],
                )
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
            ),
            [(*row, row[3]) for key, row in upserts.items() if key not in in_db],
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
        for table, rows in index_rows.items():
            tx.copy_rows(table, COLUMNS[table], list(rows))


def by_type(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """(type, ids) groups of at most ``_KEYS_PER_SELECT`` ids, for ``res_id IN (...)`` lists.

    One type per statement keeps the predicate on the primary key's prefix, which both
    engines answer from the index (row-value IN lists are not always planned that way).
    """
    grouped: dict[str, list[str]] = {}
    for type_name, res_id in dict.fromkeys(keys):
        grouped.setdefault(type_name, []).append(res_id)
    for type_name, ids in grouped.items():
        for start in range(0, len(ids), _KEYS_PER_SELECT):
            yield type_name, ids[start : start + _KEYS_PER_SELECT]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results."""

    query: Query
    matches: list[Stored]
    included: list[Stored]
    total: int | None
    has_next: bool


class Searching:
    """Runs :class:`Query` objects against the store (a component of :class:`FhirStore`)."""

    def __init__(self, store: FhirStore) -> None:
        self.store = store
        self.builder = QueryBuilder(store.registry)

    def search(
        self, type_name: str, params: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> SearchPage:
        """Raises ``InvalidSearch`` for what the server cannot honour."""
        query = self.builder.build(type_name, params, strict=strict)
        return self.run(query)

    def run(self, query: Query) -> SearchPage:
        # Drive from the most selective predicate; probe the rest (see search.Sql).
        ordered = sorted(query.where, key=lambda w: w.rank)
        parts = [w.text if i == 0 or w.exists is None else w.exists for i, w in enumerate(ordered)]
        if query.snapshot is None:
            query.snapshot = now_instant()[0]
        where = " AND ".join(["r.res_type = ?", "r.deleted = 0", "r.first_created <= ?", *parts])
        params: list[Any] = [query.type, query.snapshot]
        for w in ordered:
            params.extend(w.params)
        with self.store.db.transaction(write=False) as tx:
            total = None
            if query.total == "accurate" or query.summary == "count":
                total = int(
                    tx.execute(
                        f"SELECT COUNT(*) FROM resources r WHERE {where}", params
                    ).fetchone()[0]
                )
            if query.summary == "count" or query.count == 0:
                return SearchPage(query, [], [], total, False)
            order = self.builder.order_by(query)
            rows = tx.execute(
                "SELECT r.res_id, r.version, r.last_updated, r.content FROM resources r"
                f" WHERE {where} {order.text} LIMIT ? OFFSET ?",
                [*params, *order.params, query.count + 1, query.offset],
            ).fetchall()
            has_next = len(rows) > query.count
            matches = [
                Stored(query.type, r[0], int(r[1]), r[2], False, r[3]) for r in rows[: query.count]
            ]
            included = self._includes(tx, query, matches)
        if total is None and not has_next:
            total = query.offset + len(matches)
        return SearchPage(query, matches, included, total, has_next)

    def _includes(self, tx: Transaction, query: Query, matches: list[Stored]) -> list[Stored]:
        if not (query.includes or query.revincludes) or not matches:
            return []
        seen = {(m.type, m.id) for m in matches}
        frontier = list(seen)
        included: list[Stored] = []
        for round_ in range(4):  # :iterate follows at most this many hops
            keys: list[tuple[str, str]] = []
            for source, param, target, iterate in query.includes:
                if round_ and not iterate:
                    continue
                ids = [i for t, i in frontier if t == source]
                keys.extend(self._forward(tx, source, param, target, ids))
            for source, param, target, iterate in query.revincludes:
                if round_ and not iterate:
                    continue
                keys.extend(self._reverse(tx, source, param, target, frontier))
            fresh = [k for k in dict.fromkeys(keys) if k not in seen]
            if not fresh:
                break
            seen.update(fresh)
            found = self._load(tx, fresh)
            included.extend(found)
            frontier = [(s.type, s.id) for s in found]
        return included

    @staticmethod
    def _forward(
        tx: Transaction, source: str, param: str, target: str | None, ids: list[str]
    ) -> list[tuple[str, str]]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        sql = (
            "SELECT target_type, target_id FROM idx_reference WHERE res_type = ? AND param = ?"
            f" AND res_id IN ({marks}) AND target_type <> ''"
        )
        args: list[Any] = [source, param, *ids]
        if target:
            sql += " AND target_type = ?"
            args.append(target)
        return [(r[0], r[1]) for r in tx.execute(sql, args).fetchall()]

    @staticmethod
    def _reverse(
        tx: Transaction, source: str, param: str, target: str | None, keys: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for type_name, ids in by_type(k for k in keys if target is None or k[0] == target):
            rows = tx.execute(
                "SELECT DISTINCT res_type, res_id FROM idx_reference WHERE res_type = ?"
                " AND param = ? AND target_type = ?"
                f" AND target_id IN ({', '.join('?' * len(ids))})",
                [source, param, type_name, *ids],
            ).fetchall()
            out.extend((r[0], r[1]) for r in rows)
        return out

    @staticmethod
    def _load(tx: Transaction, keys: list[tuple[str, str]]) -> list[Stored]:
        out: list[Stored] = []
        for type_name, ids in by_type(keys):
            rows = tx.execute(
                "SELECT res_id, version, last_updated, content FROM resources"
                f" WHERE deleted = 0 AND res_type = ? AND res_id IN ({', '.join('?' * len(ids))})",
                [type_name, *ids],
            ).fetchall()
            out.extend(Stored(type_name, r[0], int(r[1]), r[2], False, r[3]) for r in rows)
        return out

    def everything(self, patient_id: str, params: Sequence[tuple[str, str]]) -> SearchPage:
        """``Patient/[id]/$everything``: the patient and its compartment (the spec's
        CompartmentDefinition: e.g. Observations whose subject or performer is the patient).

        ``_type`` (comma list), ``_since`` (lastUpdated), ``_count`` and ``_offset`` page it.
        """
        query = Query("Patient", [], [], DEFAULT_COUNT, 0, "accurate", None, None, [], [], [], [])
        # The spec's patient compartment: per type, the parameters that link to the patient.
        links: list[str] = []
        args: list[Any] = [patient_id, patient_id]
        for type_name, codes in self.store.registry.patient_compartment.items():
            links.append(f"(x.res_type = ? AND x.param IN ({', '.join('?' * len(codes))}))")
            args.extend([type_name, *codes])
        conds = [
            "r.deleted = 0",
            "((r.res_type = 'Patient' AND r.res_id = ?) OR r.res_id IN (SELECT res_id FROM"
            " idx_reference x WHERE x.res_type = r.res_type AND x.target_type = 'Patient'"
            f" AND x.target_id = ? AND ({' OR '.join(links)})))",
        ]
        for name, raw in params:
            if name == "_type":
                types = [t for t in raw.split(",") if t]
                conds.append(f"r.res_type IN ({', '.join('?' * len(types))})")
                args.extend(types)
            elif name == "_since":
                try:
                    args.append(date_range(raw)[0])
                except ValueError as exc:
                    raise InvalidSearch(f"_since: {exc}", expression="_since") from None
                conds.append("r.last_updated >= ?")
            elif name in ("_count", "_offset"):
                if not raw.isdigit():
                    raise InvalidSearch(f"{name} must be a non-negative integer", expression=name)
                if name == "_count":
                    query.count = min(int(raw), 1000)
                else:
                    query.offset = int(raw)
                continue
            else:
                continue
            query.used.append((name, raw))
        query.used.append(("_count", str(query.count)))
        where = " AND ".join(conds)
        with self.store.db.transaction(write=False) as tx:
            total = int(
                tx.execute(f"SELECT COUNT(*) FROM resources r WHERE {where}", args).fetchone()[0]
            )
            rows = tx.execute(
                "SELECT r.res_type, r.res_id, r.version, r.last_updated, r.content FROM resources r"
                f" WHERE {where} ORDER BY r.res_type, r.res_id LIMIT ? OFFSET ?",
                [*args, query.count + 1, query.offset],
            ).fetchall()
        matches = [Stored(r[0], r[1], int(r[2]), r[3], False, r[4]) for r in rows[: query.count]]
        return SearchPage(query, matches, [], total, len(rows) > query.count)

    def history(
        self,
        type_name: str | None = None,
        res_id: str | None = None,
        *,
        since: str | None = None,
        count: int = DEFAULT_COUNT,
        offset: int = 0,
    ) -> tuple[list[Stored], int, bool]:
        """Versions newest first (instance, type or system level); ``(page, total, has_next)``."""
        conds: list[str] = []
        args: list[Any] = []
        if type_name:
            conds.append("res_type = ?")
            args.append(type_name)
        if res_id:
            conds.append("res_id = ?")
            args.append(res_id)
        if since:
            conds.append("last_updated >= ?")
            args.append(since)
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        with self.store.db.transaction(write=False) as tx:
            total = int(tx.execute(f"SELECT COUNT(*) FROM history {where}", args).fetchone()[0])
            rows = tx.execute(
                "SELECT res_type, res_id, version, last_updated, deleted, content FROM history"
                f" {where} ORDER BY last_updated DESC, res_type, res_id, version DESC"
                " LIMIT ? OFFSET ?",
                [*args, count + 1, offset],
            ).fetchall()
        page = [Stored(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5]) for r in rows[:count]]
        return page, total, len(rows) > count
