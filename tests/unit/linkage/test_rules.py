from __future__ import annotations

import pytest

from linkage.links import Candidate, LinkState
from linkage.model import Score
from linkage.rules import Thresholds, best_per_golden, decide


def cand(golden: str, p: float, rule: str | None = None, source: str = "s") -> Candidate:
    import math

    weight = math.log2(p / (1 - p)) if p < 1 else 50.0
    return Candidate(golden, f"{source}-{golden}-{p}", Score(weight, p, -10.0, (), rule))


T = Thresholds(match=0.99, review=0.5)


def test_no_candidates_found_a_new_golden_record() -> None:
    d = decide([], T)
    assert (d.state, d.golden_id) == (LinkState.MATCH, None)


def test_one_sure_candidate_is_a_match() -> None:
    d = decide([cand("g1", 0.999), cand("g2", 0.7)], T)
    assert (d.state, d.golden_id, d.duplicates) == (LinkState.MATCH, "g1", ())


def test_two_sure_candidates_are_a_possible_match_and_flag_duplicates() -> None:
    d = decide([cand("g2", 0.995), cand("g1", 0.9999)], T)
    assert (d.state, d.golden_id) == (LinkState.POSSIBLE_MATCH, "g1")
    assert d.duplicates == (("g1", "g2"),)


def test_uncertain_candidate_goes_to_review() -> None:
    d = decide([cand("g1", 0.8)], T)
    assert (d.state, d.golden_id) == (LinkState.POSSIBLE_MATCH, "g1")


def test_weak_candidate_founds_a_new_golden_record() -> None:
    d = decide([cand("g1", 0.2)], T)
    assert (d.state, d.golden_id) == (LinkState.MATCH, None)
    assert d.best is not None and d.best.golden_id == "g1"


def test_identifier_rule_beats_any_probability() -> None:
    d = decide([cand("g1", 0.9999), cand("g2", 0.01, rule="identifier:urn:x|1")], T)
    assert (d.state, d.golden_id) == (LinkState.MATCH, "g2")


def test_identifier_shared_by_two_golden_records_needs_review() -> None:
    d = decide([cand("g1", 0.3, rule="identifier:a"), cand("g2", 0.2, rule="identifier:b")], T)
    assert d.state == LinkState.POSSIBLE_MATCH
    assert d.duplicates == (("g1", "g2"),)


def test_no_match_golden_records_are_never_chosen() -> None:
    d = decide([cand("g1", 0.9999, rule="identifier:a")], T, excluded_goldens={"g1"})
    assert (d.state, d.golden_id) == (LinkState.MATCH, None)


def test_best_member_represents_its_golden_record() -> None:
    ranked = best_per_golden([cand("g1", 0.6), cand("g1", 0.95), cand("g2", 0.9)])
    assert [(c.golden_id, c.probability) for c in ranked] == [("g1", 0.95), ("g2", 0.9)]


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        Thresholds(match=0.5, review=0.9)
