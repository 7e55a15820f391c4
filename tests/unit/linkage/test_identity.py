"""Identity rules for Practitioner, Organization and Device (run again on SQL databases)."""

from __future__ import annotations

from typing import Any

import pytest

from linkage.errors import InvalidLinkOperation, InvalidPatient, LinkageNotFound
from linkage.identity import IdentityIndex, keys_of
from linkage.links import LinkOrigin, LinkState

NPI = "http://hl7.org/fhir/sid/us-npi"


def doctor(pid: str, family: str = "House", given: str = "Gregory", **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": pid,
        "name": [{"family": family, "given": [given]}],
    }
    if "npi" in kw:
        r["identifier"] = [{"system": NPI, "value": kw["npi"]}]
    if "licence" in kw:
        r["qualification"] = [
            {"identifier": [{"system": "urn:ch:gln", "value": kw["licence"]}], "code": {}}
        ]
    return r


def org(pid: str, name: str, *alias: str, ident: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Organization", "id": pid, "name": name}
    if alias:
        r["alias"] = list(alias)
    if ident:
        r["identifier"] = [{"system": "urn:oid:2.51.1.3", "value": ident}]
    return r


def device(pid: str, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Device", "id": pid}
    if "udi" in kw:
        r["udiCarrier"] = [{"deviceIdentifier": kw["udi"]}]
    r.update({k: v for k, v in kw.items() if k != "udi"})
    return r


def test_practitioners_with_one_licence_number_are_one(identity: IdentityIndex) -> None:
    a = identity.ingest(doctor("p1", licence="7601000000001"))
    b = identity.ingest(doctor("p2", family="Haus", licence="7601000000001"))
    assert a.created and not b.created
    assert b.link.entity_id == a.link.entity_id and b.link.state == LinkState.MATCH
    assert b.link.rule == "id:urn:ch:gln|7601000000001"


def test_practitioner_name_alone_is_only_a_possible_match(identity: IdentityIndex) -> None:
    a = identity.ingest(doctor("p1", npi="1"))
    b = identity.ingest(doctor("p2"))
    assert (b.link.entity_id, b.link.state) == (a.link.entity_id, LinkState.POSSIBLE_MATCH)


def test_contradicting_identifiers_keep_namesakes_apart(identity: IdentityIndex) -> None:
    a = identity.ingest(doctor("p1", npi="1"))
    b = identity.ingest(doctor("p2", npi="2"))
    assert b.link.entity_id != a.link.entity_id and b.created


def test_organizations_match_by_identifier_name_or_alias(identity: IdentityIndex) -> None:
    a = identity.ingest(org("o1", "Inselspital", "Universitätsspital Bern", ident="7601"))
    b = identity.ingest(org("o2", "Universitaetsspital Bern"))  # an alias, folded
    c = identity.ingest(org("o3", "Bern University Hospital", ident="7601"))
    assert b.link.entity_id == a.link.entity_id == c.link.entity_id
    assert (b.link.state, c.link.state) == (LinkState.MATCH, LinkState.MATCH)
    assert [m.source_id for m in identity.members("Organization", a.link.entity_id)] == [
        "o1",
        "o2",
        "o3",
    ]


def test_devices_match_by_udi_or_manufacturer_model_serial(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="00884838071224", serialNumber="SN1"))
    b = identity.ingest(device("d2", udi="00884838071224"))
    c = identity.ingest(
        device("d3", manufacturer="Philips", modelNumber="MX450", serialNumber="DE123")
    )
    d = identity.ingest(
        device("d4", manufacturer="PHILIPS", modelNumber="mx450", serialNumber="DE123")
    )
    e = identity.ingest(
        device("d5", manufacturer="Philips", modelNumber="MX450", serialNumber="DE999")
    )
    assert b.link.entity_id == a.link.entity_id
    assert d.link.entity_id == c.link.entity_id
    assert e.created and len({a.link.entity_id, c.link.entity_id, e.link.entity_id}) == 3


def test_a_key_shared_by_two_entities_flags_them(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="A"))
    b = identity.ingest(device("d2", udi="B"))
    c = identity.ingest(
        device("d3", udi="A", udiCarrier=[{"deviceIdentifier": "A"}, {"deviceIdentifier": "B"}])
    )
    assert c.link.state == LinkState.POSSIBLE_MATCH
    pair = tuple(sorted((a.link.entity_id, b.link.entity_id)))
    assert c.duplicates == (pair,)
    assert identity.possible_duplicates("Device") == [pair]


def test_reingest_is_stable(identity: IdentityIndex) -> None:
    a = identity.ingest(doctor("p1", npi="1"))
    again = identity.ingest(doctor("p1", npi="1"))
    assert again.link == a.link and not again.created
    renamed = identity.ingest(doctor("p1", family="Wilson", npi="1"))
    assert renamed.link.entity_id == a.link.entity_id


def test_unknown_types_and_sources_are_refused(identity: IdentityIndex) -> None:
    with pytest.raises(InvalidPatient):
        keys_of({"resourceType": "Location", "id": "l1"})
    with pytest.raises(InvalidPatient):
        identity.ingest({"resourceType": "Device"})
    with pytest.raises(LinkageNotFound):
        identity.entity_of("Device", "nope")


# manual decisions ------------------------------------------------------------------------


def test_manual_link_confirms_a_possible_match_and_is_never_changed_automatically(
    identity: IdentityIndex,
) -> None:
    a = identity.ingest(doctor("p1", npi="1"))
    b = identity.ingest(doctor("p2"))
    assert b.link.state == LinkState.POSSIBLE_MATCH
    linked = identity.link("Practitioner", "p2", a.link.entity_id, "dr.cuddy", "same person")
    assert (linked.state, linked.origin, linked.entity_id) == (
        LinkState.MATCH,
        LinkOrigin.MANUAL,
        a.link.entity_id,
    )
    # Its new content carries another entity's licence: an automatic decision would move it.
    c = identity.ingest(doctor("p3", family="Wilson", given="James", licence="L9"))
    again = identity.ingest(doctor("p2", family="Wilson", given="James", licence="L9"))
    assert again.link == linked and again.link.entity_id != c.link.entity_id
    assert not again.created
    # ... but its keys are the new ones: a newcomer with that licence finds both entities.
    d = identity.ingest(doctor("p4", family="Other", given="Name", licence="L9"))
    assert d.link.state == LinkState.POSSIBLE_MATCH and d.duplicates
    events = identity.history("Practitioner", source_id="p2")
    assert [(e.action, e.actor) for e in events] == [
        ("auto-link", "identity"),
        ("link", "dr.cuddy"),
    ]
    assert events[1].detail["reason"] == "same person" and events[1].origin == LinkOrigin.MANUAL


def test_unlink_gives_the_source_its_own_entity_and_a_no_match(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="A"))
    b = identity.ingest(device("d2", udi="A"))
    assert b.link.entity_id == a.link.entity_id
    own = identity.unlink("Device", "d2", a.link.entity_id, "biomed.eve", "two units")
    assert own.entity_id not in (a.link.entity_id, "") and own.origin == LinkOrigin.MANUAL
    assert identity.no_match("Device", "d2") == [a.link.entity_id]
    assert identity.ingest(device("d2", udi="A")).link == own
    assert [m.source_id for m in identity.members("Device", a.link.entity_id)] == ["d1"]
    [event] = [e for e in identity.history("Device", source_id="d2") if e.action == "unlink"]
    assert event.previous_entity_id == a.link.entity_id and event.entity_id == own.entity_id
    # Linking it back by hand overrules the NO_MATCH.
    identity.link("Device", "d2", a.link.entity_id, "biomed.eve")
    assert identity.no_match("Device", "d2") == []


def test_merge_and_unmerge_round_trip_loses_nothing(identity: IdentityIndex) -> None:
    a1 = identity.ingest(org("o1", "Inselspital", ident="1")).link
    a2 = identity.ingest(org("o2", "Inselspital")).link
    b1 = identity.ingest(org("o3", "Bern University Hospital", ident="2")).link
    assert a2.entity_id == a1.entity_id and b1.entity_id != a1.entity_id
    before = {m.source_id: m for m in identity.members("Organization", a1.entity_id)}
    event_id = identity.merge(
        "Organization", a1.entity_id, b1.entity_id, "admin", "one hospital, two names"
    )
    members = identity.members("Organization", b1.entity_id)
    assert {m.source_id for m in members} == {"o1", "o2", "o3"}
    assert all(m.origin == LinkOrigin.MANUAL for m in members if m.source_id != "o3")
    assert identity.members("Organization", a1.entity_id) == []
    assert identity.merged_into("Organization", a1.entity_id) == b1.entity_id
    # A newcomer under the merged-away entity's keys joins the survivor.
    late = identity.ingest(org("o4", "Inselspital", ident="1")).link
    assert late.entity_id == b1.entity_id
    with pytest.raises(InvalidLinkOperation):
        identity.link("Organization", "o3", a1.entity_id, "admin")
    identity.unmerge("Organization", a1.entity_id, "admin", "they are two")
    restored = {m.source_id: m for m in identity.members("Organization", a1.entity_id)}
    assert restored == before
    assert identity.merged_into("Organization", a1.entity_id) is None
    assert {m.source_id for m in identity.members("Organization", b1.entity_id)} == {"o3", "o4"}
    assert identity.no_match("Organization", "o1") == [b1.entity_id]
    assert identity.no_match("Organization", "o3") == [a1.entity_id]
    # Automatic matching does not merge them again: re-ingest and a newcomer of each side.
    assert identity.ingest(org("o1", "Inselspital", ident="1")).link.entity_id == a1.entity_id
    assert identity.ingest(org("o3", "Bern University Hospital", ident="2")).link == b1
    assert identity.ingest(org("o5", "Bern University Hospital")).link.entity_id == b1.entity_id
    history = identity.history("Organization", entity_id=a1.entity_id)
    [merge] = [e for e in history if e.action == "merge"]
    [unmerge] = [e for e in history if e.action == "unmerge"]
    assert merge.event_id == event_id and merge.actor == "admin"
    assert (merge.entity_id, merge.previous_entity_id) == (b1.entity_id, a1.entity_id)
    assert unmerge.detail["merge_event"] == event_id and unmerge.detail["restored"] == ["o1", "o2"]


def test_unmerge_keeps_a_member_relinked_by_hand_since(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="A")).link
    b = identity.ingest(device("d2", udi="B")).link
    c = identity.ingest(device("d3", udi="C")).link
    identity.merge("Device", a.entity_id, b.entity_id, "biomed")
    identity.link("Device", "d1", c.entity_id, "biomed")
    identity.unmerge("Device", a.entity_id, "biomed")
    assert identity.entity_of("Device", "d1").entity_id == c.entity_id
    [event] = [
        e for e in identity.history("Device", entity_id=a.entity_id) if e.action == "unmerge"
    ]
    assert event.detail["skipped"] == ["d1"]


def test_merge_resolves_the_duplicate_flag_and_carries_no_match(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="A")).link
    b = identity.ingest(device("d2", udi="B")).link
    identity.ingest(device("d3", udiCarrier=[{"deviceIdentifier": "A"}, {"deviceIdentifier": "B"}]))
    assert identity.possible_duplicates("Device") == [tuple(sorted((a.entity_id, b.entity_id)))]
    x = identity.ingest(device("d4", udi="A")).link
    identity.unlink("Device", "d4", a.entity_id, "biomed")
    identity.merge("Device", a.entity_id, b.entity_id, "biomed")
    assert identity.possible_duplicates("Device") == []
    assert identity.no_match("Device", "d4") == sorted([a.entity_id, b.entity_id])
    assert x.entity_id == a.entity_id


def test_manual_decisions_refuse_what_does_not_fit(identity: IdentityIndex) -> None:
    a = identity.ingest(device("d1", udi="A")).link
    with pytest.raises(LinkageNotFound):
        identity.link("Device", "nope", a.entity_id, "biomed")
    with pytest.raises(LinkageNotFound):
        identity.link("Device", "d1", "no-such-entity", "biomed")
    with pytest.raises(InvalidLinkOperation):
        identity.unlink("Device", "d1", "other", "biomed")
    with pytest.raises(InvalidLinkOperation):
        identity.merge("Device", a.entity_id, a.entity_id, "biomed")
    with pytest.raises(InvalidLinkOperation):
        identity.unmerge("Device", a.entity_id, "biomed")


def test_automatic_changes_are_in_the_history_once(identity: IdentityIndex) -> None:
    identity.ingest(doctor("p1", npi="1"))
    identity.ingest(doctor("p1", npi="1"))  # the same again: nothing changed
    identity.ingest(doctor("p2", family="Chase", given="Robert", npi="2"))
    identity.ingest(doctor("p1", family="Chase", given="Robert", npi="2"))  # now p2's entity
    events = identity.history("Practitioner", source_id="p1")
    assert [e.action for e in events] == ["auto-link", "auto-relink"]
    assert events[1].rule == f"id:{NPI}|2" and events[1].previous_entity_id == events[0].entity_id
