"""Search execution: runs parsed queries, includes, history and ``$everything`` in SQL.

A component of :class:`fhir_store.store.FhirStore` (``store.searching``); parsing a search
into SQL is ``fhir_store.search``'s job, this module runs it and shapes pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_store.database import Transaction
from fhir_store.dates import date_range
from fhir_store.errors import InvalidSearch
from fhir_store.records import HISTORY_CONTENT, Stored, by_type, resources_by_id
from fhir_store.search import (
    DEFAULT_COUNT,
    Query,
    QueryBuilder,
    Sql,
    own_rows,
    param_rows,
    unindexed,
)

if TYPE_CHECKING:
    from fhir_store.store import FhirStore


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
        self.builder = QueryBuilder(store.registry, store.db.dialect)

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
        where = " AND ".join(["r.res_type = ?", "r.deleted = 0", "r.first_created <= ?", *parts])
        params: list[Any] = [query.type, query.snapshot]  # snapshot set below if new
        for w in ordered:
            params.extend(w.params)
        with self.store.db.transaction(write=False) as tx:
            if query.snapshot is None:
                query.snapshot = tx.now()
            params[1] = query.snapshot
            total = None
            if (
                query.total == "accurate"
                or query.summary == "count"
                or (query.total == "auto" and query.count == 0)
            ):
                total = int(
                    tx.execute(
                        f"SELECT COUNT(*) FROM resources r WHERE {where}", params
                    ).fetchone()[0]
                )
            if query.summary == "count" or query.count == 0:
                return SearchPage(query, [], [], total, False)
            # Late materialization: rank and cut the page from indexes alone, then read the
            # content of the page's rows only (not of every candidate that was sorted).
            live = Sql(
                "r.res_type = ? AND r.deleted = 0 AND r.first_created <= ?",
                [query.type, query.snapshot],
            )
            compound = self.builder.compound_page(query, live)
            if compound is not None:
                ids = self._distinct_page(tx, compound, query)
            else:
                order = self.builder.order_by(query)
                ids = [
                    row[0]
                    for row in tx.execute(
                        f"SELECT r.res_id FROM resources r WHERE {where} {order.text}"
                        " LIMIT ? OFFSET ?",
                        [*params, *order.params, query.count + 1, query.offset],
                    ).fetchall()
                ]
            has_next = len(ids) > query.count
            loaded = {
                s.id: s for s in self._load(tx, [(query.type, i) for i in ids[: query.count]])
            }
            matches = [loaded[i] for i in ids[: query.count] if i in loaded]
            included = self._includes(tx, query, matches)
        if total is None and not has_next and query.total != "none":
            total = query.offset + len(matches)
        return SearchPage(query, matches, included, total, has_next)

    @staticmethod
    def _distinct_page(tx: Transaction, ordered: Sql, query: Query) -> list[str]:
        """Ids ``offset .. offset + count`` (one more, to tell a next page) of a statement
        whose ids may repeat (see ``QueryBuilder.compound_page``), in order of first
        occurrence. Repeats are rare, so the first read almost always suffices; a page
        short of distinct ids reads twice as many rows again."""
        need = query.offset + query.count + 1
        limit = need
        while True:
            rows = tx.execute(f"{ordered.text} LIMIT ?", [*ordered.params, limit]).fetchall()
            ids = list(dict.fromkeys(row[0] for row in rows))
            if len(ids) >= need or len(rows) < limit:
                return ids[query.offset : need]
            limit *= 2

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
                for type_name, ids in by_type(k for k in frontier if source in ("*", k[0])):
                    keys.extend(self._forward(tx, type_name, param, target, ids))
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

    def _forward(
        self, tx: Transaction, source: str, param: str, target: str | None, ids: list[str]
    ) -> list[tuple[str, str]]:
        """What ``source`` resources ``ids`` reference through ``param`` (``*``: any)."""
        if not ids:
            return []
        dialect = self.store.db.dialect
        where, args = resources_by_id(
            dialect,
            source,
            ids,
            join=f" JOIN idx_reference x{unindexed(dialect)} ON {own_rows('r', 'x.')}",
        )
        sql = f"SELECT x.target_type, x.target_id {where} AND x.target_type <> ''"
        if param != "*":
            rows = param_rows(self.store.registry, source, param, "x.")
            sql += f" AND {rows.text}"
            args.extend(rows.params)
        if target:
            sql += " AND x.target_type = ?"
            args.append(target)
        return [(r[0], r[1]) for r in tx.execute(sql, args).fetchall()]

    def _reverse(
        self,
        tx: Transaction,
        source: str,
        param: str,
        target: str | None,
        keys: list[tuple[str, str]],
    ) -> list[tuple[str, str]]:
        """Resources of type ``source`` (``*``: any) referencing ``keys`` through ``param``
        (``*``: any reference parameter).

        Every lookup names the source type and parameter, which the reference index leads
        with: ``*`` becomes one term per type and its reference parameters (the store keeps
        no index led by the target, which each write would pay for).
        """
        registry = self.store.registry
        if param != "*":
            # A named parameter belongs to a named source type (the parser checks).
            links = [(source, param_rows(registry, source, param))]
        else:
            links = []
            for type_name in registry.types if source == "*" else (source,):
                codes = [
                    p.code for p in registry.for_type(type_name).values() if p.type == "reference"
                ]
                if codes:
                    marks = ", ".join("?" * len(codes))
                    links.append((type_name, Sql(f"param IN ({marks})", codes)))
        if not links:
            return []
        sources = " OR ".join(f"(res_type = ? AND {rows.text})" for _, rows in links)
        source_args = [v for type_name, rows in links for v in (type_name, *rows.params)]
        out: list[tuple[str, str]] = []
        for type_name, ids in by_type(k for k in keys if target is None or k[0] == target):
            sql = (
                f"SELECT DISTINCT res_type, res_id FROM idx_reference WHERE ({sources})"
                f" AND target_type = ? AND target_id IN ({', '.join('?' * len(ids))})"
            )
            rows = tx.execute(sql, [*source_args, type_name, *ids]).fetchall()
            out.extend((r[0], r[1]) for r in rows)
        return out

    def _load(self, tx: Transaction, keys: list[tuple[str, str]]) -> list[Stored]:
        out: list[Stored] = []
        for type_name, ids in by_type(keys):
            where, params = resources_by_id(self.store.db.dialect, type_name, ids)
            rows = tx.execute(
                f"SELECT r.res_id, r.version, r.last_updated, r.content {where} AND r.deleted = 0",
                params,
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
        registry = self.store.registry
        for type_name, codes in registry.patient_compartment.items():
            stored = list(codes)
            for code in codes:
                # Rows here point at a Patient, so rows ``patient`` shares (``subject``
                # rows pointing at a Patient) are its own.
                share = registry.shared(type_name).get(code)
                if share is not None and share.target_type in (None, "Patient"):
                    stored.extend(q for q in share.params if q not in stored)
            links.append(f"(x.res_type = ? AND x.param IN ({', '.join('?' * len(stored))}))")
            args.extend([type_name, *stored])
        # The members first, from the reference index, then their rows by primary key
        # (SQLite's CROSS JOIN keeps that order). Testing each resource of the store for
        # membership instead read all of them: minutes at a million Observations.
        source = (
            "(SELECT 'Patient' AS t, CAST(? AS TEXT) AS i UNION SELECT x.res_type, x.res_id"
            " FROM idx_reference x WHERE x.target_type = 'Patient' AND x.target_id = ?"
            f" AND ({' OR '.join(links)})) m CROSS JOIN resources r"
        )
        conds = ["r.res_type = m.t", "r.res_id = m.i", "r.deleted = 0"]
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
                tx.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", args).fetchone()[0]
            )
            rows = tx.execute(
                "SELECT r.res_type, r.res_id, r.version, r.last_updated, r.content"
                f" FROM {source} WHERE {where} ORDER BY r.res_type, r.res_id LIMIT ? OFFSET ?",
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
        snapshot: str | None = None,
    ) -> HistoryPage:
        """Versions newest first (instance, type or system level).

        History is append-only, so bounding every page by the first page's ``snapshot``
        keeps offsets stable however many versions are written meanwhile.
        """
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
        with self.store.db.transaction(write=False) as tx:
            snapshot = snapshot or tx.now()
            conds.append("last_updated <= ?")
            args.append(snapshot)
            where = "WHERE " + " AND ".join(conds)
            total = int(tx.execute(f"SELECT COUNT(*) FROM history {where}", args).fetchone()[0])
            rows = tx.execute(
                "SELECT h.res_type, h.res_id, h.version, h.last_updated, h.deleted,"
                f" {HISTORY_CONTENT}, h.method FROM history h {where}"
                " ORDER BY last_updated DESC, res_type, res_id, version DESC LIMIT ? OFFSET ?",
                [*args, count + 1, offset],
            ).fetchall()
        page = [Stored(r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows[:count]]
        return HistoryPage(page, total, len(rows) > count, offset, count, snapshot)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a history, newest first."""

    versions: list[Stored]
    total: int
    has_next: bool
    offset: int
    count: int
    snapshot: str
