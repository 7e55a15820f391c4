"""The link model's value objects: link states and origins, links, events, outcomes.

Each source Patient has exactly one *membership* link, to its golden record, in state MATCH
(it is part of the golden record) or POSSIBLE_MATCH (attached provisionally to the best
candidate, waiting in the review queue; it does not feed the golden record until confirmed).
NO_MATCH links are negative: a person decided that this source is not that golden record,
and automatic matching never links them again. A link made or confirmed by a person has
origin MANUAL and is never changed automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from linkage.features import PatientFeatures
from linkage.model import Score


class LinkState(StrEnum):
    MATCH = "MATCH"
    POSSIBLE_MATCH = "POSSIBLE_MATCH"
    NO_MATCH = "NO_MATCH"


class LinkOrigin(StrEnum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"


class DuplicateStatus(StrEnum):
    POSSIBLE_DUPLICATE = "POSSIBLE_DUPLICATE"
    NOT_DUPLICATE = "NOT_DUPLICATE"
    MERGED = "MERGED"


MEMBER_STATES = frozenset({LinkState.MATCH, LinkState.POSSIBLE_MATCH})


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A source Patient as received, with its features; never deleted, so nothing is lost."""

    source_id: str
    resource: dict[str, Any]
    features: PatientFeatures
    source: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Link:
    """A link between a source Patient and a golden record; ``explanation`` is a score's JSON."""

    source_id: str
    golden_id: str
    state: LinkState
    origin: LinkOrigin
    score: float | None = None
    explanation: dict[str, Any] | None = None
    updated_at: datetime | None = None

    @property
    def is_member(self) -> bool:
        return self.state in MEMBER_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "golden_id": self.golden_id,
            "state": self.state.value,
            "origin": self.origin.value,
            "score": self.score,
            "explanation": self.explanation,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Link:
        updated = data.get("updated_at")
        return cls(
            data["source_id"],
            data["golden_id"],
            LinkState(data["state"]),
            LinkOrigin(data["origin"]),
            data.get("score"),
            data.get("explanation"),
            datetime.fromisoformat(updated) if updated else None,
        )


@dataclass(frozen=True, slots=True)
class Golden:
    """A golden record: the Patient built by survivorship, and where it went if merged."""

    golden_id: str
    resource: dict[str, Any]
    active: bool = True
    replaced_by: str | None = None


@dataclass(frozen=True, slots=True)
class DuplicateFlag:
    golden_a: str
    golden_b: str
    status: DuplicateStatus
    score: float | None = None


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One entry of the link history: who or what did what, when, with which evidence."""

    at: datetime
    actor: str
    action: str
    source_id: str | None = None
    golden_id: str | None = None
    previous_golden_id: str | None = None
    state: LinkState | None = None
    origin: LinkOrigin | None = None
    score: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "source_id": self.source_id,
            "golden_id": self.golden_id,
            "previous_golden_id": self.previous_golden_id,
            "state": self.state.value if self.state else None,
            "origin": self.origin.value if self.origin else None,
            "score": self.score,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """A golden record that a Patient may be, with the best-scoring member and its score."""

    golden_id: str
    source_id: str
    score: Score

    @property
    def probability(self) -> float:
        return self.score.probability


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What ingesting one source Patient did."""

    source_id: str
    golden_id: str
    state: LinkState
    origin: LinkOrigin
    score: Score | None
    candidates: tuple[Candidate, ...] = ()
    created_golden: bool = False
    changed: bool = True
    duplicates: tuple[tuple[str, str], ...] = ()
    golden: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One entry of the review queue: a possible match, or two possibly duplicate goldens."""

    kind: str  # "possible_match" | "possible_duplicate"
    golden_id: str
    source_id: str | None = None
    other_golden_id: str | None = None
    score: float | None = None
    explanation: dict[str, Any] | None = None
