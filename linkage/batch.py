"""Batch linkage: many new Patients at once (an initial load, a partner's export).

The decisions are exactly those of ingesting the Patients one at a time, in order (the
tests prove it on FEBRL): each record meets the confirmed members of the golden records
before it that share a blocking key, and ``linkage.rules.decide`` links it. What changes is
the cost: the blocks, term counts and golden assignments of the batch live in memory, and
records, links, golden records and history are written with multi-row statements, in
chunks of ``chunk`` records per transaction. Records already in the index are not part of
the batch: they go through ``Mpi.ingest`` afterwards (an update may move them).

A crash part-way leaves the chunks written so far, consistent; running the batch again
skips them and links the rest against them through the index.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from linkage.blocking import blocking_keys
from linkage.errors import InvalidPatient
from linkage.features import PatientFeatures, extract
from linkage.links import (
    Candidate,
    DuplicateFlag,
    DuplicateStatus,
    Golden,
    Link,
    LinkEvent,
    LinkOrigin,
    LinkState,
    SourceRecord,
)
from linkage.mpi import Mpi, source_of, updated_at
from linkage.repository import TERM_FIELDS
from linkage.rules import decide
from linkage.survivorship import build_golden, is_golden


@dataclass(frozen=True, slots=True)
class BatchReport:
    records: int
    updates: int
    new_goldens: int
    matched: int
    possible: int
    pairs_scored: int
    seconds: float


class _Counts:
    """Running term frequencies: the index's counts plus the batch's so far."""

    def __init__(self, mpi: Mpi, base_total: int) -> None:
        self.mpi = mpi
        self.base_total = base_total
        self.batch: Counter[tuple[str, str]] = Counter()
        self.base: dict[tuple[str, str], int] = {}
        self.total = base_total

    def add(self, f: PatientFeatures) -> None:
        self.total += 1
        for name in TERM_FIELDS:
            value = getattr(f, name)
            if value:
                self.batch[(name, value)] += 1

    def frequency(self, field: str, value: str) -> float | None:
        key = (field, value)
        if self.base_total and key not in self.base:
            self.base.update(self.mpi.repository.term_counts([key]))
        count = self.base.get(key, 0) + self.batch[key]
        return count / self.total if count else None


def link_batch(
    mpi: Mpi,
    patients: Iterable[Mapping[str, Any]],
    *,
    actor: str = "batch",
    chunk: int = 20_000,
) -> BatchReport:
    """Link many Patients; returns what happened. Raises InvalidPatient before writing
    anything if one is not a Patient, has no id, or is a golden record."""
    start = time.perf_counter()
    repo = mpi.repository
    settings = mpi.settings
    items: list[tuple[dict[str, Any], PatientFeatures]] = []
    seen: set[str] = set()
    for p in patients:
        if p.get("resourceType") != "Patient" or not p.get("id") or is_golden(p):
            raise InvalidPatient(f"not a linkable source Patient: {p.get('id')!r}")
        if p["id"] not in seen:
            seen.add(p["id"])
            items.append((dict(p), extract(p)))
    with repo.transaction(write=False):
        ids = [p["id"] for p, _ in items]
        known: set[str] = set()
        for k in range(0, len(ids), 5000):
            known.update(repo.get_features(ids[k : k + 5000]))
        base_total = repo.count_records()
    updates = [p for p, _ in items if p["id"] in known]
    items = [(p, f) for p, f in items if p["id"] not in known]

    keys_of = [blocking_keys(f) for _, f in items]
    sources = [source_of(p) for p, _ in items]
    counts = _Counts(mpi, base_total)
    blocks: dict[str, list[int]] = defaultdict(list)
    golden_of: list[str] = []
    confirmed: list[bool] = []
    decisions: list[tuple[LinkState, Candidate | None, bool]] = []
    duplicates: set[tuple[str, str]] = set()
    pairs = 0
    with repo.transaction(write=False):
        for j, (patient, f) in enumerate(items):
            counts.add(f)
            keys = keys_of[j]
            tf = counts if counts.total >= settings.tf_min_records else None
            candidates: list[Candidate] = []
            light: dict[str, PatientFeatures] = {}  # window candidates scored by weight only
            if not f.placeholder:
                if base_total:
                    candidates.extend(mpi.candidates_in_index(f, patient["id"], tf))
                window: set[int] = set()
                for key in keys:
                    earlier = blocks.get(key)
                    if earlier:
                        window.update(earlier[-settings.limit_per_key :])
                for i in sorted(window):
                    if not confirmed[i]:
                        continue
                    source_id = items[i][0]["id"]
                    light[source_id] = items[i][1]
                    candidates.append(
                        Candidate(golden_of[i], source_id, mpi.light_score(f, items[i][1], tf))
                    )
                pairs += len(window)
            decision = decide(candidates, settings.thresholds)
            best = decision.best
            if best is not None and best.source_id in light:
                # Only the pair that explains the decision needs its per-field weights.
                full = mpi.score_pair(f, light[best.source_id], tf)
                decision = replace(decision, best=replace(best, score=full))
            elif best is not None:
                decision = replace(decision, best=mpi.explain(f, [best], tf)[0])
            created = decision.golden_id is None
            golden_of.append(decision.golden_id or mpi.new_golden_id())
            confirmed.append(decision.state == LinkState.MATCH)
            decisions.append((decision.state, decision.best, created))
            duplicates.update(decision.duplicates)
            for key in keys:
                blocks[key].append(j)

    now = mpi.now()
    # The batch's order is its arrival order: a microsecond apart, so that "most recent
    # wins" in survivorship means the same as for records ingested one at a time.
    received = [updated_at(p, now + timedelta(microseconds=j)) for j, (p, _) in enumerate(items)]
    for k in range(0, len(items), chunk):
        part = range(k, min(k + chunk, len(items)))
        records, links, events = [], [], []
        for j in part:
            patient, f = items[j]
            state, best, created = decisions[j]
            score = best.score if best else None
            record = SourceRecord(patient["id"], patient, f, sources[j], received[j])
            records.append((record, keys_of[j]))
            link = Link(
                patient["id"],
                golden_of[j],
                state,
                LinkOrigin.AUTO,
                score.probability if score else None,
                score.to_json() if score else None,
                now,
            )
            links.append(link)
            detail: dict[str, Any] = {"new_golden": created, "batch": True}
            if link.explanation is not None:
                detail["explanation"] = link.explanation
            events.append(
                LinkEvent(
                    now,
                    actor,
                    "placeholder" if f.placeholder else "auto-link",
                    link.source_id,
                    link.golden_id,
                    None,
                    link.state,
                    link.origin,
                    link.score,
                    detail,
                )
            )
        with repo.transaction():
            repo.add_new_records(records)
            repo.put_links(links)
            repo.add_events(events)

    # Golden records last, from their confirmed members (records of every chunk are in).
    members: dict[str, list[SourceRecord]] = defaultdict(list)
    for j, (patient, f) in enumerate(items):
        if decisions[j][0] == LinkState.MATCH:
            members[golden_of[j]].append(
                SourceRecord(patient["id"], patient, f, sources[j], received[j])
            )
    new_ids = {golden_of[j] for j in range(len(items)) if decisions[j][2]}
    old_ids = sorted({golden_of[j] for j in range(len(items))} - new_ids)
    new_list = sorted(new_ids)
    for k in range(0, len(new_list), chunk):
        goldens = []
        for gid in new_list[k : k + chunk]:
            view = build_golden(gid, members.get(gid, []), settings.trust)
            goldens.append(Golden(gid, mpi.with_provenance(view), bool(members.get(gid))))
        with repo.transaction():
            repo.put_goldens(goldens)
        mpi.notify(goldens)
    mpi.rebuild(old_ids)
    with repo.transaction():
        for a, b in sorted(duplicates):
            if repo.get_duplicate(a, b) is None:
                repo.put_duplicate(DuplicateFlag(a, b, DuplicateStatus.POSSIBLE_DUPLICATE))
    for patient in updates:
        mpi.ingest(patient, actor=actor)
    states = Counter(d[0] for d in decisions)
    return BatchReport(
        records=len(items),
        updates=len(updates),
        new_goldens=len(new_ids),
        matched=sum(1 for d in decisions if d[0] == LinkState.MATCH and not d[2]),
        possible=states[LinkState.POSSIBLE_MATCH],
        pairs_scored=pairs,
        seconds=time.perf_counter() - start,
    )
