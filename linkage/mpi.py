"""The master patient index: the facade the bus handler, the REST API and the CLI call.

Ingest runs the rules of ``linkage.rules`` on the candidates blocking finds and the model
scores, and keeps the link invariants: one membership link per source Patient; manual
decisions (origin MANUAL, and NO_MATCH links) never changed automatically; placeholders
never matched; every change written to the history with who, when, score and per-field
weights. Each public method is one transaction.

Not thread-safe for writes to the same records from two processes at once: run one linkage
consumer per database (the bus keys keep its input ordered), see ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from linkage.blocking import blocking_keys
from linkage.errors import InvalidLinkOperation, InvalidPatient, LinkageNotFound
from linkage.features import PatientFeatures, extract
from linkage.links import (
    Candidate,
    DuplicateFlag,
    DuplicateStatus,
    Golden,
    Link,
    LinkEvent,
    LinkOrigin,
    LinkOutcome,
    LinkState,
    ReviewItem,
    SourceRecord,
)
from linkage.model import (
    FellegiSunterModel,
    Score,
    TermFrequencies,
    probability_from_weight,
    starting_model,
)
from linkage.repository import TERM_FIELDS, LinkageRepository
from linkage.rules import Decision, Thresholds, best_per_golden, decide
from linkage.survivorship import GoldenView, build_golden, is_golden
from linkage.training import SessionResult, train

AUTO_ACTOR = "mpi"


@dataclass(frozen=True, slots=True)
class MpiSettings:
    """Tuning of the MPI; the defaults suit a hospital-sized index.

    ``limit_per_key`` caps candidates per blocking key (a key shared by thousands says
    little, and must not make one match slow). Term frequencies apply only once the index
    holds ``tf_min_records`` records: before that, frequencies are noise. ``trust`` ranks
    sources for survivorship (higher wins). ``match_floor``: $match returns nothing below.
    """

    thresholds: Thresholds = field(default_factory=Thresholds)
    limit_per_key: int = 200
    tf_min_records: int = 1000
    trust: Mapping[str, int] = field(default_factory=dict)
    match_floor: float = 0.1


def _utcnow() -> datetime:
    return datetime.now(UTC)


_VARIANT = {f"{d:x}": f"{8 | (d & 3):x}" for d in range(16)}


def _new_golden_id() -> str:
    """A random (version 4) UUID as ``str(uuid.uuid4())`` writes it, without building the
    UUID object: a tenth of the time, and a batch makes one per new golden record."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class _Frequencies:
    """Term frequencies of the incoming record's values, looked up once per match."""

    def __init__(self, counts: Mapping[tuple[str, str], int], total: int) -> None:
        self._counts = counts
        self._total = total

    def frequency(self, field: str, value: str) -> float | None:
        count = self._counts.get((field, value))
        if not count:
            return None
        return count / self._total


def source_of(patient: Mapping[str, Any]) -> str:
    """The sending system: ``meta.source``, else the first identifier's system."""
    meta_source = (patient.get("meta") or {}).get("source")
    if meta_source:
        return str(meta_source)
    for ident in patient.get("identifier") or ():
        if ident.get("system"):
            return str(ident["system"])
    return "unknown"


def updated_at(patient: Mapping[str, Any], received: datetime) -> datetime:
    """When the source last changed the Patient (``meta.lastUpdated``), else when we got it:
    survivorship's "most recent" is about the data, not about our queue."""
    text = (patient.get("meta") or {}).get("lastUpdated")
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return received
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return received


def identifier_rule(f: PatientFeatures) -> Callable[[PatientFeatures], str | None]:
    """The deterministic rule for one record against many: ``identifier:<key>`` of the
    first identifier (in sorted order) another record shares with it, else None."""
    mine = frozenset(f.identifiers)

    def rule(other: PatientFeatures) -> str | None:
        if not mine or not other.identifiers or mine.isdisjoint(other.identifiers):
            return None
        return f"identifier:{min(mine.intersection(other.identifiers))}"

    return rule


def match_grade(candidate: Candidate, thresholds: Thresholds) -> str:
    """The FHIR match-grade code for a candidate (certain / probable / possible)."""
    if candidate.score.rule is not None or candidate.probability >= thresholds.match:
        return "certain"
    if candidate.probability >= thresholds.review:
        return "probable"
    return "possible"


GoldenListener = Callable[[list[Golden]], None]
"""Hears the golden records a write changed, after it committed (e.g. to put them in the
FHIR store). Its errors propagate to the caller; an idempotent re-ingest calls it again, so
a bus redelivery retries a failed listener."""


class Mpi:
    """The master patient index over a repository (see ``linkage.sql.SqlRepository``).

    ``golden_listeners`` hear every golden record a write changed, once it is committed.
    """

    def __init__(
        self,
        repository: LinkageRepository,
        model: FellegiSunterModel | None = None,
        settings: MpiSettings | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        new_golden_id: Callable[[], str] = _new_golden_id,
        golden_listeners: Sequence[GoldenListener] = (),
    ) -> None:
        self.repository = repository
        self.golden_listeners = list(golden_listeners)
        self._local = threading.local()
        self.settings = settings or MpiSettings()
        self._clock = clock
        self._new_golden_id = new_golden_id
        if model is None:
            with repository.transaction(write=False):
                saved = repository.load_model()
            model = FellegiSunterModel.from_json(saved) if saved else starting_model()
        self.model = model

    # training ------------------------------------------------------------------------
    def train(
        self, patients: Iterable[Mapping[str, Any]], u_pairs: int = 200_000
    ) -> list[SessionResult]:
        """Train the model by EM on unlabelled Patients, save it, and use it from now on."""
        return self._train([extract(p) for p in patients], u_pairs)

    def train_from_index(
        self, max_records: int = 200_000, u_pairs: int = 200_000
    ) -> list[SessionResult]:
        """Train on the records the index holds (up to ``max_records``, ordered by id,
        which is random for uuid ids), e.g. after an initial batch load.

        Raises ValueError when the index holds fewer than two records.
        """
        with self.repository.transaction(write=False):
            features = self.repository.sample_features(max_records)
        return self._train(features, u_pairs)

    def _train(self, features: list[PatientFeatures], u_pairs: int) -> list[SessionResult]:
        model, sessions = train(
            [f for f in features if not f.placeholder], self.model.comparisons, u_pairs=u_pairs
        )
        with self.repository.transaction():
            self.repository.save_model(model.to_json())
        self.model = model
        return sessions

    # matching ------------------------------------------------------------------------
    def _features(self, patient: Mapping[str, Any]) -> PatientFeatures:
        if patient.get("resourceType") != "Patient":
            raise InvalidPatient("not a Patient resource", location="resourceType")
        return extract(patient)

    def _candidates(
        self, f: PatientFeatures, exclude: str | None
    ) -> tuple[list[Candidate], TermFrequencies | None]:
        total = self.repository.count_records()
        tf = None
        if total >= self.settings.tf_min_records:
            terms = [(name, getattr(f, name)) for name in TERM_FIELDS if getattr(f, name)]
            tf = _Frequencies(self.repository.term_counts(terms), total)
        return self.candidates_in_index(f, exclude, tf), tf

    def candidates_in_index(
        self, f: PatientFeatures, exclude: str | None, tf: TermFrequencies | None
    ) -> list[Candidate]:
        """Candidates from the index: confirmed members sharing a blocking key, scored
        without per-field weights (``explain`` adds them to the few that are shown)."""
        repo = self.repository
        ids = repo.candidate_ids(blocking_keys(f), self.settings.limit_per_key)
        ids.discard(exclude or "")
        if not ids:
            return []
        memberships = repo.memberships(ids)
        # Only confirmed members represent their golden record; a POSSIBLE_MATCH member
        # might belong elsewhere and must not pull others after it.
        confirmed = {i: link for i, link in memberships.items() if link.state == LinkState.MATCH}
        scorer = self.light_scorer(f, tf)
        return [
            Candidate(confirmed[source_id].golden_id, source_id, scorer(features))
            for source_id, features in repo.get_features(confirmed).items()
        ]

    def explain(
        self, f: PatientFeatures, candidates: Sequence[Candidate], tf: TermFrequencies | None
    ) -> list[Candidate]:
        """The candidates with their per-field weights (their sources' features read from
        the index in one lookup). Call inside the transaction that found them."""
        todo = {c.source_id for c in candidates if not c.score.fields}
        if not todo:
            return list(candidates)
        features = self.repository.get_features(todo)
        return [
            c if c.score.fields else replace(c, score=self.score_pair(f, features[c.source_id], tf))
            for c in candidates
        ]

    def light_score(
        self, f: PatientFeatures, other: PatientFeatures, tf: TermFrequencies | None
    ) -> Score:
        """``score_pair`` without the per-field weights: the same weight, probability and
        rule, which is all ranking and ``decide`` use; a third cheaper."""
        return self.light_scorer(f, tf)(other)

    def light_scorer(
        self, f: PatientFeatures, tf: TermFrequencies | None
    ) -> Callable[[PatientFeatures], Score]:
        """``lambda other: light_score(f, other, tf)``, for one record against many."""
        weigh = self.model.weigher(f, tf)
        prior = self.model.prior_weight()
        rule = identifier_rule(f)

        def score(other: PatientFeatures) -> Score:
            weight = weigh(other)
            shared = rule(other)
            if shared is not None:
                return Score(weight, 1.0, prior, rule=shared)
            return Score(weight, probability_from_weight(weight), prior)

        return score

    def score_pair(
        self, f: PatientFeatures, other: PatientFeatures, tf: TermFrequencies | None
    ) -> Score:
        """The model's score, or certainty by the identifier rule (same system and value)."""
        score = self.model.score(f, other, tf)
        shared = identifier_rule(f)(other)
        if shared is not None:
            return replace(score, probability=1.0, rule=shared)
        return score

    def match(
        self, patient: Mapping[str, Any], count: int = 10, only_certain: bool = False
    ) -> list[Candidate]:
        """Golden records the Patient may be, best first (FHIR ``Patient/$match``).

        With ``only_certain`` only matches the MPI would link automatically are returned.
        Raises InvalidPatient if the resource is not a Patient.
        """
        f = self._features(patient)
        if f.placeholder:
            return []
        thresholds = self.settings.thresholds
        with self.repository.transaction(write=False):
            candidates, tf = self._candidates(f, patient.get("id"))
            ranked = best_per_golden(candidates)
            if only_certain:
                ranked = [c for c in ranked if match_grade(c, thresholds) == "certain"]
            else:
                ranked = [c for c in ranked if c.probability >= self.settings.match_floor]
            return self.explain(f, ranked[:count], tf)

    # ingest --------------------------------------------------------------------------
    def ingest(
        self, patient: Mapping[str, Any], source: str | None = None, actor: str = AUTO_ACTOR
    ) -> LinkOutcome:
        """Record a source Patient (new or updated) and link it to its golden record.

        Idempotent: the same resource again changes nothing (``changed`` is False).
        Raises InvalidPatient if it is not a Patient or has no id.
        """
        f = self._features(patient)
        source_id = patient.get("id")
        if is_golden(patient):
            raise InvalidPatient("a golden record is not a source Patient", location="meta.tag")
        if not source_id:
            raise InvalidPatient("a Patient needs an id to be linked", location="Patient.id")
        repo = self.repository
        with self._write():
            now = self._clock()
            old = repo.get_record(source_id)
            current = repo.memberships([source_id]).get(source_id)
            if old is not None and current is not None and old.resource == dict(patient):
                golden = repo.get_golden(current.golden_id)
                if golden is not None:
                    self._touched(golden)  # a redelivery retries a listener that failed
                return self._outcome(current, changed=False)
            record = SourceRecord(
                source_id, dict(patient), f, source or source_of(patient), updated_at(patient, now)
            )
            repo.put_record(record, blocking_keys(f))
            if current is not None and current.origin == LinkOrigin.MANUAL:
                # A person decided where this record belongs; an update does not overrule.
                self._rebuild(current.golden_id)
                self._event(now, actor, "update", current, detail={"kept": "manual link"})
                return self._outcome(current)
            if f.placeholder:
                return self._link_placeholder(source_id, current, now, actor)
            excluded = {
                link.golden_id for link in repo.links_of(source_id) if link.state == "NO_MATCH"
            }
            candidates, tf = self._candidates(f, source_id)
            decision = decide(candidates, self.settings.thresholds, excluded)
            if decision.best is not None:
                decision = replace(decision, best=self.explain(f, [decision.best], tf)[0])
            ranked = self.explain(f, best_per_golden(candidates)[:5], tf)
            return self._apply(source_id, current, decision, ranked, now, actor)

    def _link_placeholder(
        self, source_id: str, current: Link | None, now: datetime, actor: str
    ) -> LinkOutcome:
        if current is not None:
            self._rebuild(current.golden_id)
            return self._outcome(current)
        golden_id = self._new_golden_id()
        link = Link(source_id, golden_id, LinkState.MATCH, LinkOrigin.AUTO, None, None, now)
        self.repository.put_link(link)
        self._rebuild(golden_id)
        self._event(now, actor, "placeholder", link, detail={"reason": "kept out of matching"})
        return self._outcome(link, created=True)

    def _apply(
        self,
        source_id: str,
        current: Link | None,
        decision: Decision,
        ranked: Sequence[Candidate],
        now: datetime,
        actor: str,
    ) -> LinkOutcome:
        repo = self.repository
        score = decision.best.score if decision.best else None
        created = False
        target = decision.golden_id
        if target is None:
            alone = current is not None and all(
                m.source_id == source_id for m in repo.members(current.golden_id)
            )
            if current is not None and alone:
                target = current.golden_id  # still nobody else: keep its own golden record
            else:
                target, created = self._new_golden_id(), True
        # A record founding its golden record is a certain member of it; the score kept is
        # that of the best candidate it was *not* linked to, which explains the decision.
        link = Link(
            source_id,
            target,
            decision.state,
            LinkOrigin.AUTO,
            score.probability if score else None,
            score.to_json() if score else None,
            now,
        )
        if current is not None and current.golden_id != target:
            repo.delete_link(source_id, current.golden_id)
        unchanged = current is not None and (current.golden_id, current.state) == (
            target,
            decision.state,
        )
        repo.put_link(link)
        if current is not None and current.golden_id != target:
            self._rebuild(current.golden_id)
        self._rebuild(target)
        for a, b in decision.duplicates:
            flag = repo.get_duplicate(a, b)
            if flag is None:
                repo.put_duplicate(
                    DuplicateFlag(a, b, DuplicateStatus.POSSIBLE_DUPLICATE, link.score)
                )
        self._event(
            now,
            actor,
            "auto-link" if current is None else ("update" if unchanged else "auto-relink"),
            link,
            previous=current.golden_id if current and current.golden_id != target else None,
            detail={
                "new_golden": created,
                "candidates": [
                    {"golden_id": c.golden_id, "source_id": c.source_id, "p": c.probability}
                    for c in ranked
                ],
                "duplicates": [list(p) for p in decision.duplicates],
            },
        )
        return LinkOutcome(
            source_id,
            target,
            decision.state,
            LinkOrigin.AUTO,
            score,
            tuple(ranked),
            created,
            True,
            decision.duplicates,
            self._golden_resource(target),
        )

    # manual decisions ----------------------------------------------------------------
    def link(self, source_id: str, golden_id: str, actor: str, reason: str | None = None) -> Link:
        """A person says: this source is that golden record (MATCH, MANUAL).

        Also confirms a POSSIBLE_MATCH. Raises LinkageNotFound, InvalidLinkOperation
        (the golden record was merged away: link to the one it was merged into).
        """
        repo = self.repository
        with self._write():
            now = self._clock()
            current = self._membership(source_id)
            golden = self._active_golden(golden_id)
            repo.delete_link(source_id, golden.golden_id)  # a NO_MATCH there is overruled
            if current.golden_id != golden_id:
                repo.delete_link(source_id, current.golden_id)
            link = Link(
                source_id,
                golden_id,
                LinkState.MATCH,
                LinkOrigin.MANUAL,
                current.score,
                current.explanation,
                now,
            )
            repo.put_link(link)
            if current.golden_id != golden_id:
                self._rebuild(current.golden_id)
            self._rebuild(golden_id)
            previous = current.golden_id if current.golden_id != golden_id else None
            self._event(now, actor, "link", link, previous=previous, detail={"reason": reason})
            return link

    def unlink(self, source_id: str, golden_id: str, actor: str, reason: str | None = None) -> Link:
        """A person says: this source is not that golden record.

        The source moves to a new golden record of its own (MATCH, MANUAL) and keeps a
        NO_MATCH link to the old one, so automatic matching never puts it back.
        Raises LinkageNotFound, InvalidLinkOperation (not linked to that golden record).
        """
        repo = self.repository
        with self._write():
            now = self._clock()
            current = self._membership(source_id)
            if current.golden_id != golden_id:
                raise InvalidLinkOperation(
                    f"Patient/{source_id} is linked to {current.golden_id}, not {golden_id}"
                )
            repo.put_link(
                Link(source_id, golden_id, LinkState.NO_MATCH, LinkOrigin.MANUAL, None, None, now)
            )
            new_id = self._new_golden_id()
            link = Link(source_id, new_id, LinkState.MATCH, LinkOrigin.MANUAL, None, None, now)
            repo.put_link(link)
            self._rebuild(golden_id)
            self._rebuild(new_id)
            self._event(now, actor, "unlink", link, previous=golden_id, detail={"reason": reason})
            return link

    def merge(
        self, from_golden: str, into_golden: str, actor: str, reason: str | None = None
    ) -> int:
        """Merge one golden record into another (manual, or HL7 ADT^A40); returns the event id.

        Every member moves to ``into_golden`` (confirmed members as MATCH, MANUAL); the old
        links are kept in the event so ``unmerge`` restores them exactly.
        Raises LinkageNotFound, InvalidLinkOperation (same record, or already merged).
        """
        repo = self.repository
        with self._write():
            now = self._clock()
            if from_golden == into_golden:
                raise InvalidLinkOperation("cannot merge a golden record into itself")
            self._active_golden(from_golden)
            self._active_golden(into_golden)
            moved = repo.members(from_golden)
            into_members = {m.source_id for m in repo.members(into_golden)}
            for link in moved:
                repo.delete_link(link.source_id, from_golden)
                manual = link.state == LinkState.MATCH
                repo.put_link(
                    replace(
                        link,
                        golden_id=into_golden,
                        origin=LinkOrigin.MANUAL if manual else link.origin,
                        updated_at=now,
                    )
                )
            # Somebody said "not from_golden": after the merge that means "not into_golden".
            carried: list[str] = []
            for negative in repo.links_in_state(LinkState.NO_MATCH):
                if negative.golden_id != from_golden or negative.source_id in into_members:
                    continue
                if not any(n.golden_id == into_golden for n in repo.links_of(negative.source_id)):
                    repo.put_link(replace(negative, golden_id=into_golden, updated_at=now))
                    carried.append(negative.source_id)
            flag = repo.get_duplicate(from_golden, into_golden)
            repo.put_duplicate(DuplicateFlag(from_golden, into_golden, DuplicateStatus.MERGED))
            old = repo.get_golden(from_golden)
            if old is not None:
                repo.put_golden(replace(old, active=False, replaced_by=into_golden))
            self._rebuild(from_golden)
            self._rebuild(into_golden)
            return self._event(
                now,
                actor,
                "merge",
                None,
                golden_id=into_golden,
                previous=from_golden,
                detail={
                    "reason": reason,
                    "moved": [m.to_json() for m in moved],
                    "carried_no_match": carried,
                    "duplicate_flag_before": flag.status.value if flag else None,
                },
            )

    def unmerge(self, from_golden: str, actor: str, reason: str | None = None) -> int:
        """Undo the last merge of ``from_golden``: its members' links come back exactly as
        they were, and both sides get NO_MATCH links so no automatic match re-merges them.

        A member a person relinked since the merge stays where that person put it (listed
        as ``skipped`` in the event). Returns the event id.
        Raises LinkageNotFound, InvalidLinkOperation (not merged).
        """
        repo = self.repository
        with self._write():
            now = self._clock()
            golden = repo.get_golden(from_golden)
            if golden is None:
                raise LinkageNotFound(f"no golden record {from_golden}")
            into = golden.replaced_by
            merge_event = next(
                (
                    e
                    for e in reversed(repo.events(golden_id=from_golden))
                    if e.action == "merge" and e.previous_golden_id == from_golden
                ),
                None,
            )
            if into is None or merge_event is None:
                raise InvalidLinkOperation(f"golden record {from_golden} is not merged")
            restored, skipped = [], []
            for data in merge_event.detail["moved"]:
                before = Link.from_json(data)
                now_link = repo.memberships([before.source_id]).get(before.source_id)
                if now_link is None or now_link.golden_id != into:
                    skipped.append(before.source_id)
                    continue
                repo.delete_link(before.source_id, into)
                repo.put_link(before)
                repo.put_link(
                    Link(
                        before.source_id,
                        into,
                        LinkState.NO_MATCH,
                        LinkOrigin.MANUAL,
                        None,
                        None,
                        now,
                    )
                )
                restored.append(before.source_id)
            for source_id in merge_event.detail["carried_no_match"]:
                repo.delete_link(source_id, into)
            for member in repo.members(into):
                repo.put_link(
                    Link(member.source_id, from_golden, LinkState.NO_MATCH, LinkOrigin.MANUAL)
                )
            repo.put_golden(replace(golden, active=True, replaced_by=None))
            repo.put_duplicate(DuplicateFlag(from_golden, into, DuplicateStatus.NOT_DUPLICATE))
            self._rebuild(from_golden)
            self._rebuild(into)
            return self._event(
                now,
                actor,
                "unmerge",
                None,
                golden_id=from_golden,
                previous=into,
                detail={
                    "reason": reason,
                    "merge_event": merge_event.event_id,
                    "restored": restored,
                    "skipped": skipped,
                },
            )

    def merge_sources(
        self, prior_source_id: str, surviving_source_id: str, actor: str = "hl7:A40"
    ) -> int | None:
        """HL7 ADT^A40: the prior patient is the surviving one; merge their golden records.

        Returns the merge event id, or None when both already share one golden record.
        """
        with self.repository.transaction(write=False):
            prior = self._membership(prior_source_id)
            surviving = self._membership(surviving_source_id)
        if prior.golden_id == surviving.golden_id:
            return None
        reason = f"A40: Patient/{prior_source_id} merged into Patient/{surviving_source_id}"
        return self.merge(prior.golden_id, surviving.golden_id, actor, reason)

    def mark_not_duplicate(self, golden_a: str, golden_b: str, actor: str) -> None:
        """A person says two flagged golden records are different people."""
        repo = self.repository
        with self._write():
            now = self._clock()
            repo.put_duplicate(DuplicateFlag(golden_a, golden_b, DuplicateStatus.NOT_DUPLICATE))
            self._event(now, actor, "not-duplicate", None, golden_id=golden_a, previous=golden_b)

    # reading -------------------------------------------------------------------------
    def review_queue(self) -> list[ReviewItem]:
        """POSSIBLE_MATCH links, then golden records flagged as possible duplicates."""
        repo = self.repository
        with repo.transaction(write=False):
            items = [
                ReviewItem(
                    "possible_match",
                    link.golden_id,
                    link.source_id,
                    None,
                    link.score,
                    link.explanation,
                )
                for link in repo.links_in_state(LinkState.POSSIBLE_MATCH)
            ]
            items.extend(
                ReviewItem("possible_duplicate", f.golden_a, None, f.golden_b, f.score)
                for f in repo.duplicates(DuplicateStatus.POSSIBLE_DUPLICATE)
            )
        return items

    def history(
        self, *, source_id: str | None = None, golden_id: str | None = None
    ) -> list[LinkEvent]:
        with self.repository.transaction(write=False):
            return self.repository.events(source_id=source_id, golden_id=golden_id)

    def golden(self, golden_id: str) -> tuple[Golden, list[Link]]:
        """A golden record and its membership links. Raises LinkageNotFound."""
        with self.repository.transaction(write=False):
            golden = self.repository.get_golden(golden_id)
            if golden is None:
                raise LinkageNotFound(f"no golden record {golden_id}")
            return golden, self.repository.members(golden_id)

    def golden_of(self, source_id: str) -> Link:
        """The membership link of a source Patient. Raises LinkageNotFound."""
        with self.repository.transaction(write=False):
            return self._membership(source_id)

    def links_of(self, source_id: str) -> list[Link]:
        with self.repository.transaction(write=False):
            return self.repository.links_of(source_id)

    # for batch linkage ---------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock()

    def new_golden_id(self) -> str:
        return self._new_golden_id()

    def with_provenance(self, view: GoldenView) -> dict[str, Any]:
        """The golden resource, with which source gave each field in ``meta.extension``."""
        view.resource["meta"]["extension"] = [
            {
                "url": "https://caregraph.dev/fhir/StructureDefinition/survivorship",
                "valueString": ",".join(f"{k}={v}" for k, v in sorted(view.provenance.items())),
            }
        ]
        return view.resource

    def notify(self, goldens: list[Golden]) -> None:
        """Tell the listeners about golden records written outside ``_write``."""
        if goldens:
            for listener in self.golden_listeners:
                listener(goldens)

    def rebuild(self, golden_ids: Iterable[str]) -> None:
        """Rebuild golden records from their members (after a bulk write added some)."""
        with self._write():
            for golden_id in golden_ids:
                self._rebuild(golden_id)

    # internals -----------------------------------------------------------------------
    def _membership(self, source_id: str) -> Link:
        link = self.repository.memberships([source_id]).get(source_id)
        if link is None:
            raise LinkageNotFound(f"Patient/{source_id} is not in the index")
        return link

    def _active_golden(self, golden_id: str) -> Golden:
        golden = self.repository.get_golden(golden_id)
        if golden is None:
            raise LinkageNotFound(f"no golden record {golden_id}")
        if golden.replaced_by is not None:
            raise InvalidLinkOperation(
                f"golden record {golden_id} was merged into {golden.replaced_by}"
            )
        return golden

    def batch(self) -> AbstractContextManager[None]:
        """One write transaction for several calls (``ingest``, ``merge_sources``...) of
        this thread: they see each other's writes, commit together, and the listeners hear
        the golden records changed once, after the commit. A failure rolls back them all."""
        return self._write()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; afterwards the listeners hear the golden records changed.
        Inside ``batch`` it is the batch's transaction, and the batch tells the listeners."""
        if getattr(self._local, "changed", None) is not None:
            yield
            return
        changed: dict[str, Golden] = {}
        self._local.changed = changed
        try:
            with self.repository.transaction():
                yield
        finally:
            self._local.changed = None
        if changed:
            for listener in self.golden_listeners:
                listener(list(changed.values()))

    def _touched(self, golden: Golden) -> None:
        changed: dict[str, Golden] | None = getattr(self._local, "changed", None)
        if changed is not None:
            changed[golden.golden_id] = golden

    def _rebuild(self, golden_id: str) -> None:
        """Rebuild a golden record from its confirmed members (survivorship)."""
        repo = self.repository
        members = [m.source_id for m in repo.members(golden_id) if m.state == LinkState.MATCH]
        existing = repo.get_golden(golden_id)
        replaced_by = existing.replaced_by if existing else None
        view = build_golden(golden_id, repo.get_records(members), self.settings.trust, replaced_by)
        resource = self.with_provenance(view)
        golden = Golden(golden_id, resource, bool(members) and replaced_by is None, replaced_by)
        repo.put_golden(golden)
        self._touched(golden)

    def _golden_resource(self, golden_id: str) -> dict[str, Any] | None:
        golden = self.repository.get_golden(golden_id)
        return golden.resource if golden else None

    def _event(
        self,
        at: datetime,
        actor: str,
        action: str,
        link: Link | None,
        *,
        golden_id: str | None = None,
        previous: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        extra = dict(detail or {})
        if link is not None and link.explanation is not None:
            extra["explanation"] = link.explanation
        return self.repository.add_event(
            LinkEvent(
                at,
                actor,
                action,
                link.source_id if link else None,
                link.golden_id if link else golden_id,
                previous,
                link.state if link else None,
                link.origin if link else None,
                link.score if link else None,
                extra,
            )
        )

    def _outcome(self, link: Link, *, changed: bool = True, created: bool = False) -> LinkOutcome:
        score = None
        if link.explanation is not None:
            score = Score(
                float(link.explanation["weight"]),
                float(link.score or 0.0),
                float(link.explanation["prior_weight"]),
                rule=link.explanation.get("rule"),
            )
        return LinkOutcome(
            link.source_id,
            link.golden_id,
            link.state,
            link.origin,
            score,
            created_golden=created,
            changed=changed,
            golden=self._golden_resource(link.golden_id),
        )
