"""The care graph in the store's database (table ``linkage_edge``), and its queries.

Each query is a few indexed lookups: edges are indexed by (src, rel, valid_from) and by
(dst, rel, valid_from), and a time window [t1, t2] selects edges with
``valid_from <= t2 AND valid_to >= t1``. Patients are people, not records: a query about a
patient starts from every source Patient of its golden record (``PatientIdentity``), and
patients in answers are reported as golden records.

How it scales past one database: edges are keyed by the resource they came from and
touch two nodes; partitioning ``linkage_edge`` by a hash of ``src`` (with a copy of each
edge partitioned by ``dst`` for the reverse direction) keeps every one-hop lookup on one
shard, and traversals become one round of shard lookups per hop, as in distributed graph
stores. Until then one PostgreSQL holds hundreds of millions of edges on these indexes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_store.database import Database
from fhir_store.dates import HIGHEST, LOWEST
from linkage.graph.edges import (
    AT_LOCATION,
    CARED_BY,
    DEVICE_PATIENT_RELATIONS,
    HAS_ENCOUNTER,
    IMAGED,
    LOCATED_AT,
    PERFORMED,
    REGISTERED_AT,
    TREATED_AT,
    WORKS_AT,
    Edge,
    edges_of,
    via_of,
)
from linkage.sql import SqlTransactions, marks, migrate

_CHUNK = 500  # nodes per IN list
MAX_FRONTIER = 20_000  # nodes one traversal hop may reach before it stops widening
HUB_PREFIXES = ("Organization/",)  # reached by shortest paths, not widened (see there)


class PatientIdentity(Protocol):
    """Who is who: the source Patients of a person, and the golden record of a source."""

    def identities(self, patient_id: str) -> list[str]: ...

    def goldens(self, patient_ids: Sequence[str]) -> dict[str, str]: ...


class SelfIdentity:
    """Without an MPI every Patient record is its own person."""

    def identities(self, patient_id: str) -> list[str]:
        return [patient_id]

    def goldens(self, patient_ids: Sequence[str]) -> dict[str, str]:
        return {p: p for p in patient_ids}


@dataclass(frozen=True, slots=True)
class Relation:
    """One neighbour of a query's subject: how, when (first to last), how often."""

    node: str
    rel: str
    first: str
    last: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "rel": self.rel,
            "from": self.first,
            "to": self.last,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class Traversal:
    nodes: list[str]
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for k in range(0, len(items), _CHUNK):
        yield items[k : k + _CHUNK]


class Graph(SqlTransactions):
    """Write edges from resources, answer the care-graph queries."""

    serialize_writes = False  # graph writes need not wait for the MPI's lock

    def __init__(self, db: Database, identity: PatientIdentity | None = None) -> None:
        super().__init__(db)
        self.identity: PatientIdentity = identity or SelfIdentity()

    @classmethod
    def open(cls, db: Database, identity: PatientIdentity | None = None) -> Graph:
        migrate(db)
        return cls(db, identity)

    # writing --------------------------------------------------------------------------
    def put_resources(self, resources: Iterable[Mapping[str, Any]]) -> int:
        """Replace the edges of each resource (idempotent); returns the edges written.

        A resource given twice (a redelivery inside one batch) keeps its last copy's edges.
        """
        return self.replace_edges(
            {
                via_of(resource): edges_of(resource)
                for resource in resources
                if resource.get("id") and resource.get("resourceType")
            }
        )

    def replace_edges(self, by_via: Mapping[str, Sequence[Edge]]) -> int:
        """Replace the edges of each resource (``Type/id``) by those given, none to delete
        them; returns the edges written."""
        rows = [
            (via, seq, e.src, e.rel, e.dst, e.valid_from, e.valid_to)
            for via, edges in by_via.items()
            for seq, e in enumerate(edges)
        ]
        with self.transaction():
            tx = self._tx
            for part in _chunks(list(by_via)):
                tx.execute(f"DELETE FROM linkage_edge WHERE via IN ({marks(len(part))})", part)
            tx.insert_rows(
                "linkage_edge",
                ("via", "seq", "src", "rel", "dst", "valid_from", "valid_to"),
                rows,
            )
        return len(rows)

    def delete_resource(self, resource_type: str, resource_id: str) -> None:
        with self.transaction():
            self._tx.execute(
                "DELETE FROM linkage_edge WHERE via = ?", (f"{resource_type}/{resource_id}",)
            )

    # one hop --------------------------------------------------------------------------
    def relations(
        self,
        nodes: Sequence[str],
        rels: Sequence[str],
        direction: str,
        t1: str = LOWEST,
        t2: str = HIGHEST,
        other_type: str | None = None,
    ) -> list[Relation]:
        """Neighbours of ``nodes`` over ``rels`` in [t1, t2], aggregated per (node, rel).

        ``direction`` "out": edges from ``nodes``; "in": edges into them.
        """
        mine, other = ("src", "dst") if direction == "out" else ("dst", "src")
        found: dict[tuple[str, str], list[Any]] = {}
        with self.transaction(write=False):
            for part in _chunks(list(nodes)):
                params: list[Any] = [*part, *rels, t2, t1]
                type_filter = ""
                if other_type:
                    type_filter = f" AND {other} >= ? AND {other} < ?"
                    params += [f"{other_type}/", f"{other_type}0"]  # '0' sorts after '/'
                rows = self._tx.execute(
                    f"SELECT {other}, rel, MIN(valid_from), MAX(valid_to), COUNT(*) "
                    f"FROM linkage_edge WHERE {mine} IN ({marks(len(part))}) "
                    f"AND rel IN ({marks(len(rels))}) AND valid_from <= ? AND valid_to >= ?"
                    f"{type_filter} GROUP BY {other}, rel",
                    params,
                ).fetchall()
                for n, rel, first, last, count in rows:
                    held = found.get((n, rel))
                    if held is None:
                        found[(n, rel)] = [first, last, int(count)]
                    else:
                        held[0], held[1] = min(held[0], first), max(held[1], last)
                        held[2] += int(count)
        return [Relation(n, rel, a, b, c) for (n, rel), (a, b, c) in sorted(found.items())]

    # patients as people ---------------------------------------------------------------
    def _patient_nodes(self, patient_id: str) -> list[str]:
        return [f"Patient/{p}" for p in self.identity.identities(patient_id)]

    def _as_golden(self, relations: list[Relation]) -> list[Relation]:
        """Patient nodes replaced by their golden record, relations merged accordingly."""
        ids = [r.node.split("/", 1)[1] for r in relations if r.node.startswith("Patient/")]
        goldens = self.identity.goldens(ids) if ids else {}
        merged: dict[tuple[str, str], list[Any]] = {}
        for r in relations:
            n = r.node
            if n.startswith("Patient/"):
                n = f"Patient/{goldens.get(n.split('/', 1)[1], n.split('/', 1)[1])}"
            held = merged.get((n, r.rel))
            if held is None:
                merged[(n, r.rel)] = [r.first, r.last, r.count]
            else:
                held[0], held[1] = min(held[0], r.first), max(held[1], r.last)
                held[2] += r.count
        return [Relation(n, rel, a, b, c) for (n, rel), (a, b, c) in sorted(merged.items())]

    # the queries ----------------------------------------------------------------------
    def devices_of_patient(
        self, patient_id: str, t1: str = LOWEST, t2: str = HIGHEST
    ) -> list[Relation]:
        """Devices that measured, were attached to or imaged the patient in [t1, t2]."""
        return self.relations(
            self._patient_nodes(patient_id), DEVICE_PATIENT_RELATIONS, "in", t1, t2, "Device"
        )

    def patients_of_device(
        self, device_id: str, t1: str = LOWEST, t2: str = HIGHEST
    ) -> list[Relation]:
        """Patients (golden records) exposed to a device in [t1, t2]: a device recall."""
        found = self.relations(
            [f"Device/{device_id}"], DEVICE_PATIENT_RELATIONS, "out", t1, t2, "Patient"
        )
        return self._as_golden(found)

    def staff_of_patient(
        self, patient_id: str, t1: str = LOWEST, t2: str = HIGHEST
    ) -> list[Relation]:
        """Practitioners who cared for the patient: encounters, observations, imaging."""
        nodes = self._patient_nodes(patient_id)
        cared = self.relations(nodes, [CARED_BY], "out", t1, t2, "Practitioner")
        acted = self.relations(nodes, [PERFORMED, IMAGED], "in", t1, t2, "Practitioner")
        return sorted(cared + acted, key=lambda r: (r.node, r.rel))

    def patients_of_practitioner(
        self, practitioner_id: str, t1: str = LOWEST, t2: str = HIGHEST
    ) -> list[Relation]:
        """Patients (golden records) a practitioner cared for in [t1, t2]."""
        me = [f"Practitioner/{practitioner_id}"]
        cared = self.relations(me, [CARED_BY], "in", t1, t2, "Patient")
        acted = self.relations(me, [PERFORMED, IMAGED], "out", t1, t2, "Patient")
        return self._as_golden(cared + acted)

    def at_location(self, location_id: str, t: str) -> list[Relation]:
        """Everything at a location at instant ``t``: patients (golden), devices, encounters,
        staff working there."""
        found = self.relations(
            [f"Location/{location_id}"], [LOCATED_AT, AT_LOCATION, WORKS_AT], "in", t, t
        )
        return self._as_golden(found)

    def linked_record(self, patient_id: str) -> dict[str, Any]:
        """A patient's record across identities: encounters, devices, staff, institutions,
        locations, each with its time window."""
        nodes = self._patient_nodes(patient_id)
        out = self.relations(
            nodes, [HAS_ENCOUNTER, TREATED_AT, REGISTERED_AT, LOCATED_AT, CARED_BY], "out"
        )
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in out:
            by_kind[r.node.split("/", 1)[0]].append(r.to_json())
        return {
            "identities": nodes,
            "encounters": by_kind["Encounter"],
            "organizations": by_kind["Organization"],
            "locations": by_kind["Location"],
            "staff": [r.to_json() for r in self.staff_of_patient(patient_id)],
            "devices": [r.to_json() for r in self.devices_of_patient(patient_id)],
        }

    # traversal ------------------------------------------------------------------------
    def _hop(
        self, frontier: Sequence[str], rels: Sequence[str] | None, t1: str, t2: str
    ) -> list[Edge]:
        rel_filter = f" AND rel IN ({marks(len(rels))})" if rels else ""
        edges: list[Edge] = []
        with self.transaction(write=False):
            for part in _chunks(list(frontier)):
                for column in ("src", "dst"):
                    rows = self._tx.execute(
                        "SELECT src, rel, dst, MIN(valid_from), MAX(valid_to) FROM linkage_edge "
                        f"WHERE {column} IN ({marks(len(part))}){rel_filter} "
                        "AND valid_from <= ? AND valid_to >= ? GROUP BY src, rel, dst",
                        [*part, *(rels or ()), t2, t1],
                    ).fetchall()
                    edges.extend(Edge(*row) for row in rows)
        return edges

    def traverse(
        self,
        start: str,
        rels: Sequence[str] | None = None,
        t1: str = LOWEST,
        t2: str = HIGHEST,
        depth: int = 2,
    ) -> Traversal:
        """Everything within ``depth`` hops of ``start`` (both directions), over ``rels``
        (all if None), through edges valid in [t1, t2]. A Patient start includes all its
        identities. Stops widening past ``MAX_FRONTIER`` nodes (``truncated``)."""
        seen: dict[str, None] = {}
        frontier = (
            self._patient_nodes(start.split("/", 1)[1]) if start.startswith("Patient/") else [start]
        )
        for n in frontier:
            seen[n] = None
        edges: dict[tuple[str, str, str], Edge] = {}
        truncated = False
        for _ in range(depth):
            if not frontier:
                break
            if len(seen) > MAX_FRONTIER:
                truncated = True
                break
            new: list[str] = []
            for e in self._hop(frontier, rels, t1, t2):
                edges.setdefault((e.src, e.rel, e.dst), e)
                for n in (e.src, e.dst):
                    if n not in seen:
                        seen[n] = None
                        new.append(n)
            frontier = new
        return Traversal(list(seen), list(edges.values()), truncated)

    def shortest_path(
        self, a: str, b: str, max_depth: int = 6, t1: str = LOWEST, t2: str = HIGHEST
    ) -> list[Edge] | None:
        """The fewest edges connecting two nodes (either direction), or None within
        ``max_depth``. Bidirectional breadth-first: the smaller side widens each round.

        Organizations are hubs (every patient and device of a hospital touches one): they
        are found as meeting points but not widened further unless they are an end, so a
        path through two organizations in a row is not searched.
        """
        if a == b:
            return []
        parents = [{a: None}, {b: None}]  # node -> (edge, previous node) toward its side
        parent_edge: list[dict[str, tuple[Edge, str] | None]] = [{a: None}, {b: None}]
        frontiers = [[a], [b]]
        for _ in range(max_depth):
            side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
            if not frontiers[side] or len(parents[side]) > MAX_FRONTIER:
                return None
            new: list[str] = []
            widen = [n for n in frontiers[side] if n in (a, b) or not n.startswith(HUB_PREFIXES)]
            for e in self._hop(widen, None, t1, t2):
                for here, there in ((e.src, e.dst), (e.dst, e.src)):
                    if here in parents[side] and there not in parents[side]:
                        parents[side][there] = None
                        parent_edge[side][there] = (e, here)
                        new.append(there)
                        if there in parents[1 - side]:
                            return self._join(parent_edge, there)
            frontiers[side] = new
        return None

    @staticmethod
    def _join(parent_edge: list[dict[str, tuple[Edge, str] | None]], meet: str) -> list[Edge]:
        left: list[Edge] = []
        n = meet
        while (step := parent_edge[0].get(n)) is not None:
            left.append(step[0])
            n = step[1]
        right: list[Edge] = []
        n = meet
        while (step := parent_edge[1].get(n)) is not None:
            right.append(step[0])
            n = step[1]
        return list(reversed(left)) + right


class MpiIdentity:
    """``PatientIdentity`` from the MPI: a golden record's confirmed members, and the golden
    record of each source (a Patient the MPI does not know is its own person)."""

    def __init__(self, mpi: Any) -> None:
        from linkage.mpi import Mpi

        self.mpi: Mpi = mpi

    def identities(self, patient_id: str) -> list[str]:
        repo = self.mpi.repository
        with repo.transaction(write=False):
            golden_id = patient_id
            if repo.get_golden(patient_id) is None:
                link = repo.memberships([patient_id]).get(patient_id)
                if link is None:
                    return [patient_id]
                golden_id = link.golden_id
            members = [m.source_id for m in repo.members(golden_id) if m.state == "MATCH"]
        return members or [patient_id]

    def goldens(self, patient_ids: Sequence[str]) -> dict[str, str]:
        repo = self.mpi.repository
        found: dict[str, str] = {}
        with repo.transaction(write=False):
            for k in range(0, len(patient_ids), _CHUNK):
                links = repo.memberships(patient_ids[k : k + _CHUNK])
                found.update({i: x.golden_id for i, x in links.items() if x.state == "MATCH"})
        return {p: found.get(p, p) for p in patient_ids}
