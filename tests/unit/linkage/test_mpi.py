"""Every link-state rule of the MPI. ``tests/integration/linkage`` runs these again on
SQLite and PostgreSQL by overriding the ``repository`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from linkage.errors import InvalidLinkOperation, InvalidPatient, LinkageNotFound
from linkage.links import LinkOrigin, LinkState
from linkage.mpi import Mpi, _new_golden_id, match_grade
from linkage.survivorship import GOLDEN_TAG_SYSTEM

from .factories import patient

ANNA = {"given": "Anna", "family": "Meier", "birth_date": "1980-03-07"}


def anna(pid: str, **changes: Any) -> dict[str, Any]:
    return patient(**{**ANNA, **changes}, pid=pid)


def other(pid: str, **changes: Any) -> dict[str, Any]:
    base = {
        "given": "Zygmunt",
        "family": "Kowalski",
        "birth_date": "1951-12-30",
        "gender": "male",
        "line": "3 Hill Street",
        "city": "Basel",
        "postcode": "4051",
    }
    return patient(**{**base, **changes}, pid=pid)


# Anna's name and address, another birth date and postcode: the generic model is unsure
# (between the review and match thresholds; the tests check that they stay so).
def unsure_anna(pid: str) -> dict[str, Any]:
    return anna(pid, birth_date="1975-11-23", postcode="3999")


def members(mpi: Mpi, golden_id: str) -> dict[str, tuple[str, str]]:
    _, links = mpi.golden(golden_id)
    return {link.source_id: (link.state.value, link.origin.value) for link in links}


def test_first_record_founds_a_golden_record(mpi: Mpi) -> None:
    out = mpi.ingest(anna("a1"))
    assert (out.state, out.origin, out.created_golden) == (LinkState.MATCH, LinkOrigin.AUTO, True)
    golden, links = mpi.golden(out.golden_id)
    assert golden.active
    assert {"system": GOLDEN_TAG_SYSTEM, "code": "golden", "display": "Golden record"} in (
        golden.resource["meta"]["tag"]
    )
    assert golden.resource["link"] == [{"other": {"reference": "Patient/a1"}, "type": "seealso"}]
    assert golden.resource["name"] == anna("a1")["name"]
    assert [link.source_id for link in links] == ["a1"]


def test_same_person_from_another_source_joins_the_golden_record(mpi: Mpi) -> None:
    first = mpi.ingest(anna("a1", identifiers=[("urn:hospital-a", "1")]))
    second = mpi.ingest(anna("b1", given="Ana", identifiers=[("urn:hospital-b", "77")]))
    assert second.golden_id == first.golden_id
    assert (second.state, second.origin) == (LinkState.MATCH, LinkOrigin.AUTO)
    assert second.score is not None and second.score.probability >= 0.99
    fields = {f.comparison: f for f in second.score.fields}
    assert fields["given_name"].level == "jaro_winkler>=0.92"
    assert fields["family_name"].level == "exact" and fields["family_name"].weight > 0
    golden, _ = mpi.golden(first.golden_id)
    assert {i["system"] for i in golden.resource["identifier"]} == {
        "urn:hospital-a",
        "urn:hospital-b",
    }


def test_different_people_get_different_golden_records(mpi: Mpi) -> None:
    a, b = mpi.ingest(anna("a1")), mpi.ingest(other("z1"))
    assert a.golden_id != b.golden_id
    assert b.created_golden and b.state == LinkState.MATCH


def test_shared_identifier_is_a_match_whatever_the_demographics(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1", identifiers=[("urn:ssn", "756.1234")]))
    b = mpi.ingest(other("z1", identifiers=[("urn:ssn", "756.1234")]))
    assert b.golden_id == a.golden_id and b.state == LinkState.MATCH
    assert b.score is not None and b.score.rule == "identifier:urn:ssn|756.1234"


def test_uncertain_record_is_a_possible_match_in_the_review_queue(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    [candidate] = mpi.match(unsure_anna("x"))
    assert 0.5 <= candidate.probability < 0.99  # the scenario this test is about
    b = mpi.ingest(unsure_anna("a2"))
    assert (b.state, b.golden_id, b.created_golden) == (
        LinkState.POSSIBLE_MATCH,
        a.golden_id,
        False,
    )
    [item] = mpi.review_queue()
    assert (item.kind, item.source_id, item.golden_id) == ("possible_match", "a2", a.golden_id)
    assert item.explanation is not None and item.explanation["fields"]
    golden, _ = mpi.golden(a.golden_id)
    # Not confirmed: it does not feed the golden record.
    assert golden.resource["link"] == [{"other": {"reference": "Patient/a1"}, "type": "seealso"}]
    assert golden.resource["birthDate"] == "1980-03-07"


def test_confirming_a_possible_match_links_it_manually(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(unsure_anna("a2"))
    link = mpi.link("a2", a.golden_id, actor="nurse.kim", reason="same mother's name")
    assert (link.state, link.origin) == (LinkState.MATCH, LinkOrigin.MANUAL)
    assert mpi.review_queue() == []
    assert members(mpi, a.golden_id) == {"a1": ("MATCH", "AUTO"), "a2": ("MATCH", "MANUAL")}
    last = mpi.history(source_id="a2")[-1]
    assert (last.actor, last.action, last.detail["reason"]) == (
        "nurse.kim",
        "link",
        "same mother's name",
    )


def test_rejecting_a_possible_match_founds_its_own_golden_record(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(unsure_anna("a2"))
    link = mpi.unlink("a2", a.golden_id, actor="nurse.kim")
    assert link.golden_id != a.golden_id
    assert (link.state, link.origin) == (LinkState.MATCH, LinkOrigin.MANUAL)
    assert mpi.review_queue() == []
    states = {(lk.golden_id, lk.state) for lk in mpi.links_of("a2")}
    assert (a.golden_id, LinkState.NO_MATCH) in states


def test_record_matching_two_golden_records_flags_them_as_duplicates(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(anna("a2"))
    split = mpi.unlink("a2", a.golden_id, actor="clerk")  # now two golden records of Anna
    c = mpi.ingest(anna("a3"))
    assert c.state == LinkState.POSSIBLE_MATCH
    assert c.golden_id in (a.golden_id, split.golden_id)
    assert c.duplicates == (tuple(sorted((a.golden_id, split.golden_id))),)
    kinds = {item.kind for item in mpi.review_queue()}
    assert kinds == {"possible_match", "possible_duplicate"}
    mpi.mark_not_duplicate(a.golden_id, split.golden_id, actor="clerk")
    assert {item.kind for item in mpi.review_queue()} == {"possible_match"}


def test_identifier_shared_by_two_golden_records_flags_them(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1", identifiers=[("urn:ssn", "1")]))
    z = mpi.ingest(other("z1", identifiers=[("urn:mrn", "9")]))
    c = mpi.ingest(other("c1", given="Xaver", identifiers=[("urn:ssn", "1"), ("urn:mrn", "9")]))
    assert c.state == LinkState.POSSIBLE_MATCH
    assert c.duplicates == (tuple(sorted((a.golden_id, z.golden_id))),)


def test_manual_link_is_never_changed_automatically(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    z = mpi.ingest(other("z1"))
    mpi.link("z1", a.golden_id, actor="dr.who")
    out = mpi.ingest(other("z1", given="Zygmund"))  # an update that still looks like Zygmunt
    assert (out.golden_id, out.origin) == (a.golden_id, LinkOrigin.MANUAL)
    assert members(mpi, a.golden_id)["z1"] == ("MATCH", "MANUAL")
    assert not mpi.golden(z.golden_id)[0].active  # emptied golden record is inactive


def test_no_match_is_never_relinked_automatically(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(anna("a2"))
    mpi.unlink("a2", a.golden_id, actor="clerk")
    # The manual golden record of a2 is kept even through updates...
    out = mpi.ingest(anna("a2", phone="0311234567"))
    assert out.golden_id != a.golden_id and out.origin == LinkOrigin.MANUAL


def test_auto_link_is_re_evaluated_when_the_record_changes(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(anna("a2"))
    moved = mpi.ingest(other("a2"))  # the registration was corrected to someone else
    assert moved.golden_id != a.golden_id and moved.created_golden
    assert members(mpi, a.golden_id) == {"a1": ("MATCH", "AUTO")}
    actions = [e.action for e in mpi.history(source_id="a2")]
    assert actions == ["auto-link", "auto-relink"]


def test_ingest_is_idempotent(mpi: Mpi) -> None:
    first = mpi.ingest(anna("a1"))
    again = mpi.ingest(anna("a1"))
    assert (again.golden_id, again.changed) == (first.golden_id, False)
    assert len(mpi.history(source_id="a1")) == 1


def test_placeholders_are_kept_out_of_matching(mpi: Mpi) -> None:
    d1 = mpi.ingest(patient("John", "Doe", None, pid="d1"))
    d2 = mpi.ingest(patient("John", "Doe", None, pid="d2"))
    assert d1.golden_id != d2.golden_id
    assert mpi.match(patient("John", "Doe", None)) == []
    assert mpi.history(source_id="d1")[0].action == "placeholder"
    # A real patient never matches a placeholder either.
    assert mpi.ingest(anna("a1")).created_golden


def test_history_records_who_when_score_and_weights(mpi: Mpi) -> None:
    mpi.ingest(anna("a1"))
    mpi.ingest(anna("b1", given="Ana"), actor="adt-feed")
    [event] = mpi.history(source_id="b1")
    assert event.actor == "adt-feed" and event.action == "auto-link"
    assert event.at.year == 2026 and event.score is not None and event.score >= 0.99
    weights = {f["comparison"]: f["weight"] for f in event.detail["explanation"]["fields"]}
    assert weights["birth_date"] > 0 and "given_name" in weights
    assert event.detail["candidates"][0]["source_id"] == "a1"


def test_survivorship_prefers_trusted_then_recent_sources(make_mpi: Callable[..., Mpi]) -> None:
    mpi = make_mpi(trust={"urn:registration": 10})
    a = mpi.ingest(anna("r1", line="1 Trusted Road"), source="urn:registration")
    mpi.ingest(anna("m1", line="2 Later Road", phone="0319999999"), source="urn:modality")
    golden, _ = mpi.golden(a.golden_id)
    assert golden.resource["address"][0]["line"] == ["1 Trusted Road"]
    assert golden.resource["telecom"][0]["value"] == "0319999999"  # only m1 has one
    mpi.ingest(anna("m2", line="3 Newest Road"), source="urn:modality")
    golden, _ = mpi.golden(a.golden_id)
    assert golden.resource["address"][0]["line"] == ["1 Trusted Road"]
    assert "address=r1" in golden.resource["meta"]["extension"][0]["valueString"]


def test_among_equal_sources_the_most_recent_wins(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1", line="1 Old Road"))
    mpi.ingest(anna("a2", line="1 Old Rd"))
    golden, _ = mpi.golden(a.golden_id)
    assert golden.resource["address"][0]["line"] == ["1 Old Rd"]


def snapshot(mpi: Mpi, *goldens: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for g in goldens:
        golden, links = mpi.golden(g)
        state[g] = (golden.resource, golden.active, [lk.to_json() for lk in links])
    return state


def test_merge_and_unmerge_round_trip_loses_nothing(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1", identifiers=[("urn:a", "1")]))
    mpi.ingest(anna("a2", given="Ana"))
    z = mpi.ingest(other("z1", identifiers=[("urn:z", "9")]))
    mpi.ingest(unsure_anna("a3"))  # a possible member of a's golden record
    before = snapshot(mpi, a.golden_id, z.golden_id)

    event_id = mpi.merge(a.golden_id, z.golden_id, actor="him.clerk", reason="same person")
    merged, _ = mpi.golden(a.golden_id)
    assert not merged.active and merged.replaced_by == z.golden_id
    assert merged.resource["link"][0] == {
        "other": {"reference": f"Patient/{z.golden_id}"},
        "type": "replaced-by",
    }
    assert members(mpi, z.golden_id) == {
        "z1": ("MATCH", "AUTO"),
        "a1": ("MATCH", "MANUAL"),
        "a2": ("MATCH", "MANUAL"),
        "a3": ("POSSIBLE_MATCH", "AUTO"),
    }
    survivor, _ = mpi.golden(z.golden_id)
    assert {i["system"] for i in survivor.resource["identifier"]} == {"urn:a", "urn:z"}
    with pytest.raises(InvalidLinkOperation):
        mpi.link("a1", a.golden_id, actor="x")  # merged away

    mpi.unmerge(a.golden_id, actor="him.clerk", reason="two people after all")
    assert snapshot(mpi, a.golden_id, z.golden_id) == before
    [undo] = [e for e in mpi.history(golden_id=a.golden_id) if e.action == "unmerge"]
    assert undo.detail["merge_event"] == event_id and undo.detail["skipped"] == []
    # The unmerge is a human decision: an update of a1 does not merge them again.
    assert mpi.ingest(anna("a1", identifiers=[("urn:a", "1"), ("urn:z", "9")])).golden_id == (
        a.golden_id
    )


def test_unmerge_keeps_later_manual_decisions(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    z = mpi.ingest(other("z1"))
    mpi.merge(a.golden_id, z.golden_id, actor="clerk")
    moved = mpi.unlink("a1", z.golden_id, actor="clerk")  # a person moved a1 since
    mpi.unmerge(a.golden_id, actor="clerk")
    assert mpi.golden_of("a1").golden_id == moved.golden_id
    [undo] = [e for e in mpi.history(golden_id=a.golden_id) if e.action == "unmerge"]
    assert undo.detail["skipped"] == ["a1"]


def test_hl7_a40_merges_the_golden_records_of_two_sources(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    z = mpi.ingest(other("z1"))
    event_id = mpi.merge_sources("a1", "z1")
    assert event_id is not None
    assert mpi.golden_of("a1").golden_id == z.golden_id
    assert mpi.golden(a.golden_id)[0].replaced_by == z.golden_id
    assert mpi.merge_sources("a1", "z1") is None  # already one


def test_wrong_requests_are_refused(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    z = mpi.ingest(other("z1"))
    with pytest.raises(InvalidLinkOperation):
        mpi.unlink("a1", z.golden_id, actor="x")
    with pytest.raises(LinkageNotFound):
        mpi.link("nobody", a.golden_id, actor="x")
    with pytest.raises(LinkageNotFound):
        mpi.link("a1", "no-such-golden", actor="x")
    with pytest.raises(InvalidLinkOperation):
        mpi.merge(a.golden_id, a.golden_id, actor="x")
    with pytest.raises(InvalidLinkOperation):
        mpi.unmerge(a.golden_id, actor="x")
    with pytest.raises(InvalidPatient):
        mpi.ingest({"resourceType": "Observation", "id": "o1"})
    with pytest.raises(InvalidPatient):
        mpi.ingest(anna(""))


def test_failed_operation_changes_nothing(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    before = snapshot(mpi, a.golden_id)
    with pytest.raises(LinkageNotFound):
        mpi.merge(a.golden_id, "no-such-golden", actor="x")
    assert snapshot(mpi, a.golden_id) == before


def test_match_ranks_golden_records_with_grades(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    mpi.ingest(other("z1"))
    mpi.ingest(anna("a2", given="Ana"))
    found = mpi.match(anna("q", given="Anna"))
    assert [c.golden_id for c in found] == [a.golden_id]  # one entry per golden record
    assert match_grade(found[0], mpi.settings.thresholds) == "certain"
    assert mpi.match(unsure_anna("q"), only_certain=True) == []
    assert len(mpi.match(unsure_anna("q"))) == 1
    assert mpi.match(anna("q"), count=0) == []


def test_listeners_hear_changed_golden_records_after_commit(mpi: Mpi) -> None:
    heard: list[list[str]] = []
    mpi.golden_listeners.append(lambda goldens: heard.append([g.golden_id for g in goldens]))
    a = mpi.ingest(anna("a1"))
    z = mpi.ingest(other("z1"))
    mpi.merge(a.golden_id, z.golden_id, actor="clerk")
    assert heard[0] == [a.golden_id] and heard[1] == [z.golden_id]
    assert sorted(heard[2]) == sorted([a.golden_id, z.golden_id])
    mpi.ingest(anna("a1"))  # a redelivery tells again, so a failed listener gets retried
    assert heard[3] == [z.golden_id]


def test_a_failing_listener_does_not_undo_the_link(mpi: Mpi) -> None:
    def fail(goldens: object) -> None:
        raise RuntimeError("store down")

    mpi.golden_listeners.append(fail)
    with pytest.raises(RuntimeError):
        mpi.ingest(anna("a1"))
    mpi.golden_listeners.clear()
    assert mpi.golden_of("a1").state == LinkState.MATCH


def test_golden_records_are_not_ingested_as_sources(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1"))
    golden, _ = mpi.golden(a.golden_id)
    with pytest.raises(InvalidPatient):
        mpi.ingest(golden.resource)


def test_most_recent_means_the_sources_last_update_not_arrival(mpi: Mpi) -> None:
    a = mpi.ingest(anna("a1", line="1 New Road", last_updated="2025-06-01T10:00:00Z"))
    mpi.ingest(anna("a2", line="1 Old Road", last_updated="2019-01-01T10:00:00Z"))
    golden, _ = mpi.golden(a.golden_id)
    assert golden.resource["address"][0]["line"] == ["1 New Road"]


def test_training_on_the_index_is_saved_and_used(mpi: Mpi) -> None:
    from .test_training import synthetic

    records, _ = synthetic(300, seed=4)
    for k, f in enumerate(records):
        mpi.ingest(
            patient(f.given, f.family, f.birth_date, pid=f"s{k}", postcode=f.postcode, line=None)
        )
    sessions = mpi.train_from_index(u_pairs=20_000)
    assert {s.rule for s in sessions} == {"dob", "names"}
    with mpi.repository.transaction(write=False):
        saved = mpi.repository.load_model()
    assert saved is not None and saved == mpi.model.to_json()
    assert Mpi(mpi.repository).model.to_json() == saved  # a new Mpi loads it


def test_new_golden_ids_are_random_version_4_uuids() -> None:
    ids = {_new_golden_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (4, uuid.RFC_4122, text)
