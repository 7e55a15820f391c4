"""Identity rules for Practitioner, Organization and Device (run again on SQL databases)."""

from __future__ import annotations

from typing import Any

import pytest

from linkage.errors import InvalidPatient, LinkageNotFound
from linkage.identity import IdentityIndex, keys_of
from linkage.links import LinkState

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
