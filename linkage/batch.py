"""Batch linkage: many new Patients at once (an initial load, a partner's export).

The decisions are exactly those of ingesting the Patients one at a time, in order (the
tests prove it on FEBRL): each record meets the confirmed members of the golden records
before it that share a blocking key, and ``linkage.rules.decide`` links it. What changes is
the cost: the blocks, term counts and golden assignments of the batch live in memory,
candidate pairs are weighed by worker processes ahead of the deciding one (``workers``), and
records, links, golden records and history are written with multi-row statements, in
chunks of ``chunk`` records per transaction (onto an empty index, each chunk as soon as it
is decided, while the workers weigh the next). Records already in the index are not part of
the batch: they go through ``Mpi.ingest`` afterwards (an update may move them).

A crash part-way leaves the chunks written so far, consistent; running the batch again
skips them and links the rest against them through the index.
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

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
from linkage.model import Score, TermFrequencies, probability_from_weight
from linkage.mpi import Mpi, identifier_rule, source_of, updated_at
from linkage.pairs import PairWeigher
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
    # reading, blocking, scoring and deciding; onto an empty index also writing the records,
    # links and history of each chunk as it is decided
    decide_seconds: float = 0.0
    write_seconds: float = 0.0  # the rest: golden records (and records etc. otherwise)


class _Counts:
    """Running term frequencies: the index's counts plus the batch's so far."""

    def __init__(self, mpi: Mpi, base_total: int) -> None:
        self.mpi = mpi
        self.base_total = base_total
        self.batch: Counter[tuple[str, str]] = Counter()
        self.base: dict[tuple[str, str], int] = {}
        self.total = base_total
        self.prefetched = False  # every count the index has for the batch is in ``base``

    def add(self, f: PatientFeatures) -> None:
        self.total += 1
        for name in TERM_FIELDS:
            value = getattr(f, name)
            if value:
                self.batch[(name, value)] += 1

    def prefetch_all(self, features: Iterable[PatientFeatures]) -> None:
        """The index's counts of every value of the batch: no lookup is left (the index
        counts nothing else, so a value not fetched counts 0)."""
        todo = sorted(
            {(name, getattr(f, name)) for f in features for name in TERM_FIELDS if getattr(f, name)}
            - self.base.keys()
        )
        for k in range(0, len(todo), 2000):
            self.base.update(self.mpi.repository.term_counts(todo[k : k + 2000]))
        self.prefetched = True

    def prefetch(self, f: PatientFeatures) -> None:
        """The index's counts of the record's values, in one lookup."""
        if self.prefetched:
            return
        todo = [(name, getattr(f, name)) for name in TERM_FIELDS if getattr(f, name)]
        todo = [key for key in todo if key not in self.base]
        if todo:
            self.base.update(self.mpi.repository.term_counts(todo))

    def frequency(self, field: str, value: str) -> float | None:
        key = (field, value)
        if self.base_total and not self.prefetched and key not in self.base:
            self.base.update(self.mpi.repository.term_counts([key]))
        count = self.base.get(key, 0) + self.batch[key]
        return count / self.total if count else None


_LOW_CAP = 4
"""Dropped candidates a worker reports per record, best first (more on a tie at the cut)."""

_SCANS_PER_MESSAGE = 1000

_FREEZE_EVERY = 50_000
"""Records between two ``_settle()`` of a batch (see ``link_batch``); a multiple of
``_SCANS_PER_MESSAGE``."""


class _Scan(NamedTuple):
    """One record's batch candidates, weighed; window positions, not yet filtered by the
    decisions before it (which only the deciding process knows).

    ``kept``: (position, weight, rule) of those that may decide something (a shared
    identifier, or a weight that may reach review), in arrival order. ``low``: the rest as
    (-weight, position), best first; only the best confirmed one matters (it explains a new
    golden record), so a worker sends a few and ``complete`` says whether that was all.
    ``vectors``: the comparison vectors of the pairs in ``kept`` and ``low``, by position,
    when weighed as arrays (the pair that explains the decision is scored from its vector).
    A tuple: a million of them cross the pipes, and a dataclass unpickles several times
    slower.
    """

    pairs: int
    kept: list[tuple[int, float, str | None]]
    low: list[tuple[float, int]]
    complete: bool
    vectors: dict[int, tuple[int, ...]] | None = None


class _Scanner:
    """Blocks and term counts in arrival order, and the window of each record, weighed.

    Nothing here depends on a decision, so worker processes can run it ahead of the
    deciding one (a forked copy each).
    """

    def __init__(
        self,
        mpi: Mpi,
        features: list[PatientFeatures],
        keys_of: list[list[str]],
        counts: _Counts,
    ) -> None:
        self.model = mpi.model
        self.features = features
        self.keys_of = keys_of
        self.counts = counts
        self.limit = mpi.settings.limit_per_key
        self.tf_min = mpi.settings.tf_min_records
        self.floor = weight_floor(mpi.settings.thresholds.review)
        self.blocks: dict[str, list[int]] = defaultdict(list)
        self.tf: TermFrequencies | None = None

    def count(self, j: int) -> TermFrequencies | None:
        """Count record j in; the term frequencies as record j sees them."""
        self.counts.add(self.features[j])
        self.tf = self.counts if self.counts.total >= self.tf_min else None
        return self.tf

    def file(self, j: int) -> None:
        """File record j under its keys, for the records after it."""
        for key in self.keys_of[j]:
            self.blocks[key].append(j)

    def window(self, j: int) -> list[int]:
        """Record j's candidates among the records before it, in arrival order."""
        window: set[int] = set()
        for key in self.keys_of[j]:
            earlier = self.blocks.get(key)
            if earlier:
                window.update(earlier[-self.limit :])
        return sorted(window)

    def scan(self, j: int, tf: TermFrequencies | None, low_cap: int | None) -> _Scan:
        f = self.features[j]
        window = self.window(j)
        weigh = self.model.weigher(f, tf)
        rule_of = identifier_rule(f)
        floor = self.floor
        features = self.features
        kept: list[tuple[int, float, str | None]] = []
        low: list[tuple[float, int]] = []
        for i in window:
            other = features[i]
            weight = weigh(other)
            rule = rule_of(other)
            if rule is None and weight < floor:
                low.append((-weight, i))
            else:
                kept.append((i, weight, rule))
        low.sort()
        complete = True
        if low_cap is not None and len(low) > low_cap:
            n = low_cap
            while n < len(low) and low[n][0] == low[low_cap - 1][0]:
                n += 1
            complete = n == len(low)
            del low[n:]
        return _Scan(len(window), kept, low, complete)

    def scan_chunk(
        self,
        weigher: PairWeigher,
        rows: list[tuple[int, list[int], list[float]]],
        low_cap: int,
    ) -> dict[int, _Scan]:
        """``scan(j, tf, low_cap)`` of many records at once, weighed as arrays: rows of
        (j, ``window(j)``, ``model.exact_weights`` of j as it saw the term counts)."""
        sizes = [len(window) for _, window, _ in rows]
        n = sum(sizes)
        a = np.repeat(np.array([j for j, _, _ in rows], np.int64), sizes)
        b = np.fromiter(itertools.chain.from_iterable(w for _, w, _ in rows), np.int64, n)
        row_of = np.repeat(np.arange(len(rows)), sizes)
        exact = np.array([e for _, _, e in rows], np.float64).reshape(len(rows), -1)[row_of]
        weights, vectors = weigher.weigh(a, b, exact)
        shared = weigher.shared_identifier(a, b)
        keep = shared | (weights >= self.floor)
        # Kept pairs in arrival order per record; the rest best first, as ``scan`` sorts.
        kept_at = np.flatnonzero(keep)
        low_at = np.flatnonzero(~keep)
        low_at = low_at[np.lexsort((b[low_at], -weights[low_at], row_of[low_at]))]
        kept_rows = np.searchsorted(row_of[kept_at], np.arange(len(rows) + 1))
        low_rows = np.searchsorted(row_of[low_at], np.arange(len(rows) + 1))
        kept_i, kept_w = b[kept_at].tolist(), weights[kept_at].tolist()
        kept_shared = shared[kept_at].tolist()
        low_i, low_w = b[low_at].tolist(), (-weights[low_at]).tolist()
        kept_v, low_v = vectors[kept_at].tolist(), vectors[low_at].tolist()
        features = self.features
        out: dict[int, _Scan] = {}
        for r, (j, _, _) in enumerate(rows):
            rule_of = identifier_rule(features[j])
            kept = [
                (kept_i[k], kept_w[k], rule_of(features[kept_i[k]]) if kept_shared[k] else None)
                for k in range(kept_rows[r], kept_rows[r + 1])
            ]
            start, end = int(low_rows[r]), int(low_rows[r + 1])
            cut = min(start + low_cap, end)
            while cut < end and low_w[cut] == low_w[start + low_cap - 1]:
                cut += 1
            low = list(zip(low_w[start:cut], low_i[start:cut], strict=True))
            sent = {kept_i[k]: tuple(kept_v[k]) for k in range(kept_rows[r], kept_rows[r + 1])}
            sent.update((low_i[k], tuple(low_v[k])) for k in range(start, cut))
            out[j] = _Scan(sizes[r], kept, low, cut == end, sent)
        return out


def _best_confirmed(
    low: list[tuple[float, int]], confirmed: list[bool], golden_of: list[str]
) -> tuple[float, int] | None:
    """(weight, position) of the confirmed candidate ``best_per_golden`` would rank first:
    the highest weight, then the highest golden id, then the first to arrive."""
    best: tuple[float, int] | None = None
    for negative, i in low:
        if not confirmed[i]:
            continue
        if best is None:
            best = (-negative, i)
        elif -negative < best[0]:
            break
        elif golden_of[i] > golden_of[best[1]]:
            best = (-negative, i)
    return best


def _work(
    scanner: _Scanner, weigher: PairWeigher | None, first: int, step: int, conn: Connection
) -> None:
    """A worker process: scan the chunks of ``_SCANS_PER_MESSAGE`` records numbered first,
    first + step, ... and send each as one message, in order. With a ``weigher`` a chunk's
    pairs are weighed together as arrays; without, one by one."""
    try:
        n = len(scanner.features)
        model = scanner.model
        for start in range(0, n, _SCANS_PER_MESSAGE):
            end = min(start + _SCANS_PER_MESSAGE, n)
            mine = (start // _SCANS_PER_MESSAGE) % step == first
            out: list[_Scan | None] = []
            rows: list[tuple[int, list[int], list[float]]] = []
            for j in range(start, end):
                tf = scanner.count(j)
                f = scanner.features[j]
                if not mine or f.placeholder:
                    pass
                elif weigher is None:
                    out.append(scanner.scan(j, tf, _LOW_CAP))
                else:
                    rows.append((j, scanner.window(j), model.exact_weights(f, tf)))
                scanner.file(j)
            if start % _FREEZE_EVERY == 0:
                _settle()  # the blocks and counts so far, as in link_batch
            if not mine:
                continue
            if weigher is not None:
                scans = scanner.scan_chunk(weigher, rows, _LOW_CAP) if rows else {}
                out = [scans.get(j) for j in range(start, end)]
            else:
                it = iter(out)
                out = [
                    None if scanner.features[j].placeholder else next(it) for j in range(start, end)
                ]
            conn.send(out)
    except BaseException:
        conn.send(traceback.format_exc())
    finally:
        conn.close()


@contextmanager
def _scans(scanner: _Scanner, workers: int) -> Iterator[Iterator[_Scan | None]]:
    """Each record's scan in arrival order (None for a placeholder): computed here when
    asked for (after ``scanner.count(j)``), or by ``workers`` forked processes ahead of
    time. Raises RuntimeError if a worker fails."""
    n = len(scanner.features)

    def here() -> Iterator[_Scan | None]:
        for j in range(n):
            f = scanner.features[j]
            yield None if f.placeholder else scanner.scan(j, scanner.tf, None)

    if workers < 1 or n < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield here()
        return
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    # Coded once here, shared by the children through fork.
    weigher = (
        PairWeigher(scanner.model, scanner.features)
        if PairWeigher.supports(scanner.model)
        else None
    )
    processes = [
        context.Process(target=_work, args=(scanner, weigher, w, workers, pipes[w][1]), daemon=True)
        for w in range(workers)
    ]
    # The children inherit the batch by fork; frozen objects are left out of their garbage
    # collection, which would otherwise touch (and so copy) every page of it. (link_batch
    # unfreezes at its end.)
    gc.freeze()
    for process in processes:
        process.start()
    for _, sender in pipes:
        sender.close()

    def received() -> Iterator[_Scan | None]:
        pending: list[_Scan | None] = []
        for j in range(n):
            if j % _SCANS_PER_MESSAGE == 0:
                message = pipes[(j // _SCANS_PER_MESSAGE) % workers][0].recv()
                if isinstance(message, str):
                    raise RuntimeError(f"batch linkage worker failed:\n{message}")
                pending = message[::-1]
            yield pending.pop()

    try:
        yield received()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for receiver, _ in pipes:
            receiver.close()


def weight_floor(probability: float) -> float:
    """A weight under which a pair's probability is surely below ``probability`` (a bit of
    margin for rounding; at 1.0, 52 bits: below that, 1 / (1 + 2^-w) stays under 1)."""
    if probability >= 1.0:
        return 52.0
    return math.log2(probability / (1.0 - probability)) - 1.0


def link_batch(
    mpi: Mpi,
    patients: Iterable[Mapping[str, Any]],
    *,
    actor: str = "batch",
    chunk: int = 20_000,
    workers: int = 0,
) -> BatchReport:
    """Link many Patients; returns what happened.

    ``workers``: processes forked to weigh each record's candidate pairs ahead of this one,
    which decides (the weights depend on arrival order only, the decisions on each other);
    the decisions are the same with any number. At a million records the pairs are most
    of the work: on two cores, two workers beside this process keep both busy. Where fork
    is not available the pairs are weighed here.

    Raises InvalidPatient before writing anything if one is not a Patient, has no id, or
    is a golden record; RuntimeError if a worker fails (onto an empty index, the chunks
    decided before it are written, as after a crash part-way).
    """
    # Garbage collection: a batch holds millions of objects to its end, and each full
    # collection went through all of them (at 220k records, 21 full collections took a
    # third of the deciding process's time). Automatic collection is off meanwhile; every
    # ``_FREEZE_EVERY`` records ``_settle`` collects the young objects (cycles) and freezes
    # the survivors. All is thawed here.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _link_batch(mpi, patients, actor=actor, chunk=chunk, workers=workers)
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _settle() -> None:
    """Collect what piled up since the last call (young generations only: the rest is
    frozen) and freeze what survives, which lives to the batch's end."""
    gc.collect(1)
    gc.freeze()


def _link_batch(
    mpi: Mpi,
    patients: Iterable[Mapping[str, Any]],
    *,
    actor: str,
    chunk: int,
    workers: int,
) -> BatchReport:
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
            if len(items) % _FREEZE_EVERY == 0:
                _settle()
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
    features = [f for _, f in items]
    counts = _Counts(mpi, base_total)
    scanner = _Scanner(mpi, features, keys_of, counts)
    golden_of: list[str] = []
    confirmed: list[bool] = []
    decisions: list[tuple[LinkState, Candidate | None, bool]] = []
    duplicates: set[tuple[str, str]] = set()
    pairs = 0
    prior = mpi.model.prior_weight()
    _settle()
    now = mpi.now()
    # The batch's order is its arrival order: a microsecond apart, so that "most recent
    # wins" in survivorship means the same as for records ingested one at a time.
    received = [updated_at(p, now + timedelta(microseconds=j)) for j, (p, _) in enumerate(items)]

    def write(part: range) -> None:
        """Records, links and history of decided records, in one transaction."""
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
        _settle()

    # With nothing in the index, deciding reads nothing from it: each chunk is written as
    # soon as it is decided, while the workers weigh the next ones (the deciding process
    # waits for them at a million records). Otherwise the index must not see the batch
    # before all of it is decided (its candidates and term counts would count it twice).
    overlap = not base_total
    done = 0  # records written
    with repo.bulk_load():
        with nullcontext() if overlap else repo.transaction(write=False):
            if base_total and workers:
                # Workers cannot ask the database: they get the index's counts beforehand.
                counts.prefetch_all(features)
            with _scans(scanner, workers) as scans:
                for j, (patient, f) in enumerate(items):
                    if j % _FREEZE_EVERY == 0:
                        _settle()
                    tf = scanner.count(j)
                    if base_total and not f.placeholder:
                        counts.prefetch(f)
                    candidates: list[Candidate] = []
                    light: dict[str, int] = {}  # window candidates (positions), weight only
                    vectors: dict[int, tuple[int, ...]] | None = None
                    scan = next(scans)
                    if scan is not None:
                        if base_total:
                            candidates.extend(mpi.candidates_in_index(f, patient["id"], tf))
                        pairs += scan.pairs
                        low = _best_confirmed(scan.low, confirmed, golden_of)
                        if low is None and not scan.complete:
                            # Every dropped candidate the worker kept is unconfirmed: look
                            # at all of them (rare; only this process knows the decisions).
                            scan = scanner.scan(j, tf, None)
                            low = _best_confirmed(scan.low, confirmed, golden_of)
                        vectors = scan.vectors
                        for i, weight, rule in scan.kept:
                            if not confirmed[i]:
                                continue
                            light[items[i][0]["id"]] = i
                            scored = (
                                Score(weight, 1.0, prior, rule=rule)
                                if rule is not None
                                else Score(weight, probability_from_weight(weight), prior)
                            )
                            candidates.append(Candidate(golden_of[i], items[i][0]["id"], scored))
                        if low is not None:
                            weight, i = low
                            light[items[i][0]["id"]] = i
                            scored = Score(weight, probability_from_weight(weight), prior)
                            candidates.append(Candidate(golden_of[i], items[i][0]["id"], scored))
                    decision = decide(candidates, settings.thresholds)
                    best = decision.best
                    if best is not None and best.source_id in light:
                        # Only the pair that explains the decision needs its per-field weights:
                        # from the comparison vector a worker sent, as ``score_pair`` would give.
                        i = light[best.source_id]
                        if vectors is not None and i in vectors:
                            full = mpi.model.score_levels(f, vectors[i], tf)
                            if best.score.rule is not None:
                                full = replace(full, probability=1.0, rule=best.score.rule)
                        else:
                            full = mpi.score_pair(f, features[i], tf)
                        decision = replace(decision, best=replace(best, score=full))
                    elif best is not None:
                        decision = replace(decision, best=mpi.explain(f, [best], tf)[0])
                    created = decision.golden_id is None
                    golden_of.append(decision.golden_id or mpi.new_golden_id())
                    confirmed.append(decision.state == LinkState.MATCH)
                    decisions.append((decision.state, decision.best, created))
                    duplicates.update(decision.duplicates)
                    scanner.file(j)
                    if overlap and j + 1 - done == chunk:
                        write(range(done, j + 1))
                        done = j + 1

        decided = time.perf_counter()
        for k in range(done, len(items), chunk):
            write(range(k, min(k + chunk, len(items))))

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
            _settle()
        mpi.rebuild(old_ids)
        with repo.transaction():
            for a, b in sorted(duplicates):
                if repo.get_duplicate(a, b) is None:
                    repo.put_duplicate(DuplicateFlag(a, b, DuplicateStatus.POSSIBLE_DUPLICATE))
    written = time.perf_counter()
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
        decide_seconds=decided - start,
        write_seconds=written - decided,
    )
