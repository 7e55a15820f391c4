"""Scopes, interactions, the compartment and the response filter: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from security.compartment import compartment_paths, in_compartment, patient_id_of
from security.errors import Forbidden
from security.filter import View, filter_body
from security.interactions import Area, classify
from security.scopes import Context, ScopeSet, parse_scope


@pytest.mark.parametrize(
    ("text", "context", "type_name", "letters"),
    [
        ("patient/*.rs", Context.PATIENT, "*", "rs"),
        ("user/Observation.rs", Context.USER, "Observation", "rs"),
        ("system/*.cruds", Context.SYSTEM, "*", "cruds"),
        ("user/*.read", Context.USER, "*", "rs"),
        ("patient/Observation.write", Context.PATIENT, "Observation", "cud"),
        ("system/*.*", Context.SYSTEM, "*", "cruds"),
        ("user/Patient.c", Context.USER, "Patient", "c"),
    ],
)
def test_scopes_parse(text: str, context: Context, type_name: str, letters: str) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions) == (
        context,
        type_name,
        frozenset(letters),
    )


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "user/*.sr",
        "user/*.rx",
        "admin/*.rs",
        "patient/Observation.rs?category=vital-signs",
        "user/observation.rs",
    ],
)
def test_scopes_that_grant_nothing(text: str) -> None:
    assert parse_scope(text) is None


def test_scope_set_contexts() -> None:
    scopes = ScopeSet.parse("openid patient/Observation.rs user/Patient.r")
    assert scopes.allows("Observation", "s")
    assert not scopes.allows("Observation", "s", frozenset({Context.USER}))
    assert scopes.allows("Patient", "r", frozenset({Context.USER}))
    assert not scopes.allows("Patient", "u")
    assert not scopes.patient_only
    assert ScopeSet.parse("patient/*.rs launch").patient_only
    assert scopes.has("openid")


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/fhir/Observation", "", ("Observation", "s", "search-type", None)),
        ("POST", "/fhir/Observation/_search", "", ("Observation", "s", "search-type", None)),
        ("GET", "/fhir/Observation/1", "", ("Observation", "r", "read", "1")),
        ("GET", "/fhir/Observation/1/_history/2", "", ("Observation", "r", "vread", "1")),
        ("GET", "/fhir/Observation/1/_history", "", ("Observation", "r", "history-instance", "1")),
        ("GET", "/fhir/Observation/_history", "", ("Observation", "s", "history-type", None)),
        ("GET", "/fhir/_history", "", (None, "s", "history-system", None)),
        ("POST", "/fhir/Observation", "", ("Observation", "c", "create", None)),
        ("PUT", "/fhir/Observation/1", "", ("Observation", "u", "update", "1")),
        ("PATCH", "/fhir/Observation/1", "", ("Observation", "u", "patch", "1")),
        ("DELETE", "/fhir/Observation/1", "", ("Observation", "d", "delete", "1")),
        ("DELETE", "/fhir/Observation", "a=b", ("Observation", "d", "delete", None)),
        ("GET", "/fhir/Patient/1/$everything", "", ("Patient", "r", "operation", "1")),
        ("POST", "/fhir/Patient/$match", "", ("Patient", "s", "operation", None)),
        ("POST", "/fhir", "", (None, None, "transaction", None)),
        ("POST", "/fhir/$process-message", "", (None, "c", "operation-system", None)),
        ("GET", "/linkage/review", "", ("Patient", "r", "linkage", None)),
        ("POST", "/linkage/links", "", ("Patient", "u", "linkage", None)),
        ("GET", "/graph/patients/1/record", "", ("Patient", "r", "graph-patient", "1")),
        ("GET", "/graph/path", "", ("Patient", "r", "linkage", None)),
        ("GET", "/app/", "", (None, None, "web", None)),
    ],
)
def test_interactions(method: str, path: str, query: str, expected: tuple[Any, ...]) -> None:
    access = classify(method, path, query)
    assert (access.resource_type, access.permission, access.interaction, access.resource_id) == (
        expected
    )
    areas = {"/fhir": Area.FHIR, "/linkage": Area.LINKAGE, "/graph": Area.LINKAGE}
    assert access.area is areas.get("/" + path.split("/")[1], Area.OTHER)


def obs(res_id: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "subject": {"reference": subject},
        **extra,
    }


def test_compartment_data_is_derived_from_the_spec() -> None:
    paths = compartment_paths()
    assert paths["Observation"] == ("performer", "subject")
    assert paths["Encounter"] == ("subject",)
    assert "agent.who" in paths["AuditEvent"] and "entity.what" in paths["AuditEvent"]
    assert "Device" not in paths and "Practitioner" not in paths


def test_in_compartment_follows_references() -> None:
    mine = frozenset({"p1"})
    assert in_compartment(obs("o", "Patient/p1"), mine)
    assert in_compartment(obs("o", "Patient/p1/_history/3"), mine)
    assert not in_compartment(obs("o", "Patient/p2"), mine)
    # absolute URLs and logical references fail closed
    assert not in_compartment(obs("o", "https://elsewhere/fhir/Patient/p1"), mine)
    assert not in_compartment(
        {"resourceType": "Observation", "subject": {"identifier": {"value": "p1"}}}, mine
    )
    assert in_compartment(
        {
            "resourceType": "Observation",
            "subject": {"reference": "Group/g"},
            "performer": [{"reference": "Practitioner/x"}, {"reference": "Patient/p1"}],
        },
        mine,
    )
    assert in_compartment({"resourceType": "Patient", "id": "p1"}, mine)
    assert not in_compartment(
        {"resourceType": "Device", "id": "d", "patient": {"reference": "Patient/p1"}}, mine
    )
    assert in_compartment(
        {"resourceType": "AuditEvent", "agent": [{"who": {"reference": "Patient/p1"}}]}, mine
    )
    assert patient_id_of("Patient/x/other/y") is None


def everything(_: str) -> bool:
    return True


def test_searchset_keeps_visible_entries_and_hides_counts() -> None:
    view = View(everything, frozenset({"p1"}))
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "link": [{"relation": "self", "url": "x"}],
        "entry": [
            {"resource": obs("a", "Patient/p1"), "search": {"mode": "match"}},
            {"resource": obs("b", "Patient/p2"), "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "p2"}, "search": {"mode": "include"}},
        ],
    }
    shown, hidden = filter_body(bundle, view)
    assert hidden == 2
    assert [e["resource"]["id"] for e in shown["entry"]] == ["a"]
    assert shown["total"] == 1
    paged = {**bundle, "link": [{"relation": "next", "url": "y"}]}
    assert "total" not in filter_body(paged, view)[0]
    count_only = {"resourceType": "Bundle", "type": "searchset", "total": 40}
    assert "total" not in filter_body(count_only, view)[0]


def test_history_drops_deleted_entries_when_restricted() -> None:
    view = View(everything, frozenset({"p1"}))
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [{"fullUrl": "Observation/b", "request": {"method": "DELETE"}}],
    }
    shown, hidden = filter_body(bundle, view)
    assert hidden == 1 and "entry" not in shown


def test_single_resources_and_transaction_responses() -> None:
    view = View(lambda t: t == "Observation", frozenset({"p1"}))
    assert filter_body(obs("a", "Patient/p1"), view) == (obs("a", "Patient/p1"), 0)
    with pytest.raises(Forbidden):
        filter_body(obs("b", "Patient/p2"), view)
    with pytest.raises(Forbidden):
        filter_body({"resourceType": "Patient", "id": "p1"}, view)  # type not readable
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    assert filter_body(outcome, view)[1] == 0
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"resource": obs("a", "Patient/p1"), "response": {"status": "201 Created"}},
            {"resource": obs("b", "Patient/p2"), "response": {"status": "200 OK"}},
            {"response": {"status": "204 No Content"}},
        ],
    }
    shown, hidden = filter_body(response, view)
    assert hidden == 1
    statuses = [e["response"]["status"] for e in shown["entry"]]
    assert statuses == ["201 Created", "403 Forbidden", "204 No Content"]
    assert "resource" not in shown["entry"][1]


def test_unrestricted_view_hides_only_unreadable_types() -> None:
    view = View(lambda t: t == "Observation", None)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [
            {"resource": obs("a", "Patient/p2"), "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "p2"}, "search": {"mode": "include"}},
        ],
    }
    shown, hidden = filter_body(bundle, view)
    assert hidden == 1 and "total" not in shown
    assert [e["resource"]["id"] for e in shown["entry"]] == ["a"]


def test_message_response_keeps_its_header_and_only_visible_entries() -> None:
    view = View(lambda t: t == "Patient", frozenset({"p1"}))
    answer = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {"resource": {"resourceType": "MessageHeader", "id": "h", "response": {}}},
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": {"resourceType": "Patient", "id": "p2"}},
            {"resource": {"resourceType": "Observation", "id": "o1"}},
        ],
    }
    body, hidden = filter_body(answer, view)
    assert [e["resource"]["id"] for e in body["entry"]] == ["h", "p1"]
    assert hidden == 2
    # a MessageHeader anywhere but first is an ordinary resource
    answer["entry"] = [answer["entry"][1], answer["entry"][0]]
    body, hidden = filter_body(answer, view)
    assert [e["resource"]["id"] for e in body["entry"]] == ["p1"]
    assert hidden == 1
