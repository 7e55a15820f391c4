"""Every error reaching the edge has a status and an OperationOutcome; validation says where."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from caregraph.errors import StoreError, StoreUnavailable
from fhir_store import errors, validation
from fhir_store.database import PostgresDatabase, SqliteDatabase
from fhir_store.outcome import for_error
from fhir_store.validation import check_depth, validate_resource

SERVED = ("Patient", "Observation")


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


@pytest.mark.parametrize("cls", _subclasses(errors.FhirError), ids=lambda c: c.__name__)
def test_every_fhir_error_maps_to_a_4xx_outcome(cls: type[errors.FhirError]) -> None:
    status, body = for_error(cls("why", expression="Patient.x"))
    assert 400 <= status < 500
    assert body["issue"][0]["diagnostics"] == "why"
    assert body["issue"][0]["expression"] == ["Patient.x"]


def test_unavailable_is_503_and_anything_else_500_without_leaking() -> None:
    assert for_error(StoreUnavailable("cannot reach x"))[0] == 503
    status, body = for_error(RuntimeError("secret path /etc"))
    assert status == 500 and "secret" not in str(body)


@pytest.mark.parametrize(
    ("db", "exc", "expected"),
    [
        (SqliteDatabase(Path("x")), sqlite3.IntegrityError("UNIQUE"), errors.StoreConflict),
        (SqliteDatabase(Path("x")), sqlite3.OperationalError("unable to open"), StoreUnavailable),
        (SqliteDatabase(Path("x")), sqlite3.OperationalError("disk I/O"), StoreError),
        (
            PostgresDatabase("postgresql://h/db"),
            psycopg.errors.UniqueViolation("dup"),
            errors.StoreConflict,
        ),
        (PostgresDatabase("postgresql://h/db"), psycopg.OperationalError("gone"), StoreUnavailable),
        (PostgresDatabase("postgresql://h/db"), psycopg.errors.SyntaxError("x"), StoreError),
    ],
)
def test_driver_errors_are_wrapped(db: object, exc: Exception, expected: type) -> None:
    wrapped = db.wrap_error(exc)  # type: ignore[attr-defined]
    assert type(wrapped) is expected


def test_validation_reports_each_element() -> None:
    with pytest.raises(errors.InvalidResource) as info:
        validate_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": "high"},
                "subject": {"reference": "Pat ient/1"},
            },
            SERVED,
        )
    where = [w for w, _ in info.value.issues]
    assert "Observation.subject.reference" in where
    assert any(w and w.startswith("Observation.valueQuantity.value") for w in where)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "JSON object"),
        ({"id": "x"}, "resourceType is missing"),
        ({"resourceType": "Observation"}, "does not match"),
    ],
)
def test_shape_errors(data: object, expected: str) -> None:
    with pytest.raises(errors.InvalidResource, match=expected):
        validate_resource(data, SERVED, "Patient")


def test_unserved_type_and_depth() -> None:
    with pytest.raises(errors.NotSupported):
        validate_resource({"resourceType": "Claim"}, SERVED)
    nested: object = "leaf"
    for _ in range(100):
        nested = [nested]
    with pytest.raises(errors.InvalidResource, match="nested deeper"):
        check_depth(nested)
    check_depth([[["fine"]]])


@pytest.mark.parametrize("depth", [0, 1, 2, 63, 64, 65, 66, 200])
@pytest.mark.parametrize("innermost", [1, {}, [], {"a": 1}, [1]])
def test_check_depth_counts_every_level(depth: int, innermost: object) -> None:
    value: object = innermost
    for i in range(depth):
        value = [value] if i % 2 else {"a": value, "flat": 1}
    filled = innermost not in ({}, [])
    deepest = depth + (1 if isinstance(innermost, dict | list) and filled else 0)
    if deepest > validation.MAX_DEPTH:
        with pytest.raises(errors.InvalidResource, match="nested deeper"):
            check_depth(value)
    else:
        check_depth(value)


def test_check_depth_skips_what_it_is_told_to() -> None:
    deep: object = "leaf"
    for _ in range(100):
        deep = [deep]
    check_depth({"entry": [{"resource": deep, "request": {"url": "x"}}]}, skip="resource")
    with pytest.raises(errors.InvalidResource, match="nested deeper"):
        check_depth({"entry": [{"resource": 1, "extension": deep}]}, skip="resource")
