"""The automatic linking decision, as a pure function of the scored candidates.

In order:
1. Golden records the source was manually declared NOT to be are out (never re-linked).
2. Deterministic rule: a candidate sharing an identifier (same system and value) is a match.
   One such golden record: MATCH. Several: the identifier is shared across golden records
   that should be one, so POSSIBLE_MATCH to the best and the golden records are flagged as
   possible duplicates.
3. Probabilistic: golden records at or above the match threshold. One: MATCH. Several:
   POSSIBLE_MATCH to the best, and all of them flagged as possible duplicates.
4. At or above the review threshold: POSSIBLE_MATCH to the best (review queue).
5. Otherwise: a new golden record.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from linkage.links import Candidate, LinkState


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Match probabilities: at or above ``match`` links automatically; at or above ``review``
    goes to the review queue. ``match`` 0.99 is the figure Splink publishes FEBRL results at."""

    match: float = 0.99
    review: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.match <= 1.0:
            raise ValueError("thresholds need 0 < review <= match <= 1")


@dataclass(frozen=True, slots=True)
class Decision:
    """``golden_id`` None means: found a new golden record."""

    state: LinkState
    golden_id: str | None
    best: Candidate | None
    duplicates: tuple[tuple[str, str], ...] = ()


def _pairs(goldens: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(sorted(p)) for p in itertools.combinations(goldens, 2))  # type: ignore[misc]


def best_per_golden(candidates: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per golden record (its best-scoring member), best first.

    Deterministic hits sort first, then by weight; ties break on ids so the outcome is stable.
    """
    best: dict[str, Candidate] = {}
    for c in candidates:
        held = best.get(c.golden_id)
        if held is None or _rank(c) > _rank(held):
            best[c.golden_id] = c
    return sorted(best.values(), key=_rank, reverse=True)


def _rank(c: Candidate) -> tuple[bool, float, str]:
    return (c.score.rule is not None, c.score.weight, c.golden_id)


def decide(
    candidates: Sequence[Candidate],
    thresholds: Thresholds,
    excluded_goldens: Collection[str] = (),
) -> Decision:
    """The automatic decision for a source given its scored candidates."""
    ranked = [c for c in best_per_golden(candidates) if c.golden_id not in excluded_goldens]
    deterministic = [c for c in ranked if c.score.rule is not None]
    if len(deterministic) == 1:
        return Decision(LinkState.MATCH, deterministic[0].golden_id, deterministic[0])
    if len(deterministic) > 1:
        goldens = [c.golden_id for c in deterministic]
        return Decision(LinkState.POSSIBLE_MATCH, goldens[0], deterministic[0], _pairs(goldens))
    sure = [c for c in ranked if c.probability >= thresholds.match]
    if len(sure) == 1:
        return Decision(LinkState.MATCH, sure[0].golden_id, sure[0])
    if len(sure) > 1:
        goldens = [c.golden_id for c in sure]
        return Decision(LinkState.POSSIBLE_MATCH, goldens[0], sure[0], _pairs(goldens))
    if ranked and ranked[0].probability >= thresholds.review:
        return Decision(LinkState.POSSIBLE_MATCH, ranked[0].golden_id, ranked[0])
    return Decision(LinkState.MATCH, None, ranked[0] if ranked else None)
