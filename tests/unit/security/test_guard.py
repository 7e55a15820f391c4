"""The access policy with fakes: restriction, break-glass, request checks."""

from __future__ import annotations

from typing import Any

import pytest

from security.audit import Auditor
from security.errors import Forbidden
from security.guard import Guard
from security.interactions import classify
from security.keys import generate_signing_key
from security.scopes import ScopeSet
from security.tokens import Principal, TokenPolicy, TokenValidator


class Linked:
    def linked(self, patient_id: str) -> frozenset[str]:
        return frozenset({patient_id, f"{patient_id}-other-identity"})


STORE: dict[tuple[str, str], dict[str, Any]] = {
    ("Observation", "mine"): {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1-other-identity"},
    },
    ("Observation", "theirs"): {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p2"},
    },
}


def guard() -> Guard:
    validator = TokenValidator(generate_signing_key(), TokenPolicy(("i",), "a"))
    return Guard(validator, Linked(), lambda t, i: STORE.get((t, i)), Auditor(None))


def who(scope: str, patient: str | None = None, fhir_user: str | None = None) -> Principal:
    return Principal("s", None, ScopeSet.parse(scope), patient=patient, fhir_user=fhir_user)


def check(
    principal: Principal,
    method: str,
    path: str,
    body: bytes | None = None,
    break_glass: str | None = None,
) -> None:
    g = guard()
    access = classify(method, path, "")
    decision = g.decide(principal, access, break_glass)
    g.check_request(decision, access, body)


def test_restricted_targets_follow_linked_identities() -> None:
    patient = who("patient/*.cruds", patient="p1")
    check(patient, "GET", "/fhir/Observation/mine")
    check(patient, "DELETE", "/fhir/Observation/mine")
    with pytest.raises(Forbidden):
        check(patient, "GET", "/fhir/Observation/theirs")
    with pytest.raises(Forbidden):
        check(patient, "GET", "/fhir/Patient/p2/$everything")
    check(patient, "GET", "/fhir/Patient/p1-other-identity/$everything")


def test_patient_scopes_need_a_patient_and_user_scopes_need_none() -> None:
    with pytest.raises(Forbidden):
        check(who("patient/*.rs"), "GET", "/fhir/Observation/theirs")
    check(who("user/Observation.r"), "GET", "/fhir/Observation/theirs")
    with pytest.raises(Forbidden):
        check(who("user/Observation.r"), "GET", "/fhir/Observation")  # s, not r


def test_break_glass_rules() -> None:
    clinician = who("user/*.rs", patient="p1", fhir_user="Practitioner/9")
    with pytest.raises(Forbidden):
        check(clinician, "GET", "/fhir/Observation/theirs")
    check(clinician, "GET", "/fhir/Observation/theirs", break_glass="code blue")
    with pytest.raises(Forbidden, match="longer"):
        check(clinician, "GET", "/fhir/Observation/theirs", break_glass="x" * 501)
    as_patient = who("user/*.rs", patient="p1", fhir_user="Patient/p1")
    with pytest.raises(Forbidden, match="clinician"):
        check(as_patient, "GET", "/fhir/Observation/theirs", break_glass="curious")
    unrestricted = who("user/*.rs")
    with pytest.raises(Forbidden, match="patient context"):
        check(unrestricted, "GET", "/fhir/Observation/theirs", break_glass="why not")
    # under break-glass, patient/ scopes no longer count: only the user's own
    mixed = who("patient/*.cruds user/Observation.rs", patient="p1")
    with pytest.raises(Forbidden):
        check(mixed, "DELETE", "/fhir/Observation/theirs", break_glass="code blue")


def test_transactions_are_checked_entry_by_entry() -> None:
    writer = who("user/Observation.cruds")
    ok = (
        b'{"resourceType":"Bundle","type":"transaction","entry":['
        b'{"request":{"method":"DELETE","url":"Observation/theirs"}}]}'
    )
    check(writer, "POST", "/fhir", ok)
    other_type = ok.replace(b"Observation/theirs", b"Patient/p2")
    with pytest.raises(Forbidden, match="entry 0"):
        check(writer, "POST", "/fhir", other_type)
    absolute = ok.replace(b"Observation/theirs", b"http://x/fhir/Observation/theirs")
    with pytest.raises(Forbidden, match="not an interaction"):
        check(writer, "POST", "/fhir", absolute)
    with pytest.raises(Forbidden, match=r"request\.url"):
        check(writer, "POST", "/fhir", b'{"resourceType":"Bundle","entry":[{}]}')
    check(writer, "POST", "/fhir", b"not json")  # the handler answers 400, nothing touched
