"""AuditEvents built by security.audit are valid R4 resources (checked with fhir.resources)."""

from __future__ import annotations

from fhir.resources.R4B.auditevent import AuditEvent

from security.audit import AccessRecord, audit_event
from security.audit_log import CHAIN_URL, GENESIS, _with_chain, chain_hash
from security.scopes import ScopeSet
from security.tokens import Principal


def _principal(**kwargs: str) -> Principal:
    return Principal(subject="u1", client_id="app", scopes=ScopeSet.parse("user/*.rs"), **kwargs)


def test_break_glass_event_is_valid_fhir() -> None:
    record = AccessRecord(
        _principal(fhir_user="Practitioner/7", patient="p1"),
        "GET",
        "/fhir/Observation/o1",
        "read",
        "r",
        True,
        "break-glass access",
        patient="p1",
        target="Observation/o1",
        break_glass="cardiac arrest",
        client_address="10.0.0.5",
        status=200,
    )
    event = audit_event(record)
    event = _with_chain(event, 1, GENESIS, chain_hash(GENESIS, event))
    AuditEvent.model_validate(event)
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert event["agent"][0]["altId"] == "app"
    assert event["extension"][0]["url"] == CHAIN_URL
    assert event["action"] == "R" and event["outcome"] == "0"


def test_refusal_event_is_valid_fhir() -> None:
    record = AccessRecord(
        _principal(), "DELETE", "/fhir/Observation", "delete", "d", False, "no scope grants 'd'"
    )
    event = audit_event(record)
    AuditEvent.model_validate(event)
    assert event["agent"][0]["who"]["identifier"]["value"] == "u1"
    assert event["outcome"] == "4" and event["action"] == "D"
    server_error = AccessRecord(
        _principal(), "GET", "/fhir/X", "search-type", "s", True, "allowed", status=503
    )
    assert audit_event(server_error)["outcome"] == "8"
