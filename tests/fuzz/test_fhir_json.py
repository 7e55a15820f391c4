"""FHIR JSON input through the REST API (create, update, transaction Bundle) on a AsgiClient
over SQLite: whatever the body, the answer is a 2xx or a 4xx with an OperationOutcome, never
a 5xx. Seeded with deep nesting, huge numbers, NaN and Infinity, lone surrogates, invalid
UTF-8, a byte-order mark, duplicate keys and wrong types in a valid Observation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import example, given
from hypothesis import strategies as st

from fhir_store.api import build_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from tests.fuzz.support import budget, time_limit
from tests.support.asgi import AsgiClient

FHIR_JSON = {"content-type": "application/fhir+json"}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-11-25T21:00:00Z",
    "valueQuantity": {"value": 61, "unit": "/min", "system": "http://unitsofmeasure.org"},
}


def _allow_all() -> None:
    """No authorization here: the harness is about what the body does."""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiClient]:
    path: Path = tmp_path_factory.mktemp("fuzz-fhir") / "store.sqlite3"
    db = open_database(f"sqlite:///{path}")
    app = FastAPI()
    app.include_router(build_router(FhirStore(db), _allow_all, max_body_bytes=1 << 20))
    yield AsgiClient(app)
    db.close()


def _check(response: Any) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", " ", "2026-13-45", "9" * 40, "\ud800", "Patient/", "#", "urn:uuid:x"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    [*OBSERVATION, "id", "meta", "extension", "component", "contained", "text"]
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@budget(120)
@given(
    st.dictionaries(fields, json_values, max_size=3), st.sets(st.sampled_from(list(OBSERVATION)))
)
def test_a_valid_observation_with_odd_fields_never_gets_a_5xx(
    client: AsgiClient, changes: dict[str, Any], removed: set[str]
) -> None:
    body = {k: v for k, v in OBSERVATION.items() if k not in removed} | changes
    with time_limit():
        _check(client.post("/fhir/Observation", content=_dumps(body), headers=FHIR_JSON))
        _check(
            client.put(
                "/fhir/Observation/fz1", content=_dumps({**body, "id": "fz1"}), headers=FHIR_JSON
            )
        )


HUGE_BODY = (
    b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":'
    + b"9" * 5000
    + b"}"
)
NESTED = b'{"resourceType":"Observation","extension":' + b"[" * 50_000 + b"]" * 50_000 + b"}"


@budget(120)
@given(st.one_of(st.binary(max_size=400), json_values.map(_dumps)))
@example(NESTED)
@example(HUGE_BODY)
@example(b'{"a":' * 20_000 + b"1" + b"}" * 20_000)
@example(b"[" * 100_000)
@example(
    b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e999}}'
)
@example(
    b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":NaN}}'
)
@example(b'{"resourceType":"Observation","status":"final","code":{"text":"\\ud800"}}')
@example(b'{"resourceType":"Observation","status":"final","code":{"text":"\xff\xfe"}}')
@example(b'\xef\xbb\xbf{"resourceType":"Observation","status":"final","code":{"text":"x"}}')
@example(b'{"resourceType":"Observation","resourceType":"Patient"}')
@example(
    b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"id":"'
    + b"a" * 100
    + b'"}'
)
@example(b"")
@example(b"null")
def test_any_body_never_gets_a_5xx(client: AsgiClient, body: bytes) -> None:
    with time_limit():
        _check(client.post("/fhir/Observation", content=body, headers=FHIR_JSON))


entries = st.lists(
    st.fixed_dictionaries(
        {
            "request": st.fixed_dictionaries(
                {
                    "method": st.sampled_from(["POST", "PUT", "DELETE", "GET", "X"]),
                    "url": st.sampled_from(
                        [
                            "Observation",
                            "Observation/fz2",
                            "Patient/p1",
                            "",
                            "Observation?code=x",
                            "../x",
                        ]
                    ),
                }
            )
        },
        optional={
            "resource": json_values | st.just(OBSERVATION),
            "fullUrl": st.sampled_from(["urn:uuid:1", "urn:uuid:1", "x"]),
        },
    ),
    max_size=4,
)


@budget(80)
@given(st.sampled_from(["transaction", "batch", "history", "x"]), entries)
def test_bundles_never_get_a_5xx(client: AsgiClient, kind: str, bundle_entries: list[Any]) -> None:
    body = {"resourceType": "Bundle", "type": kind, "entry": bundle_entries}
    with time_limit():
        _check(client.post("/fhir", content=_dumps(body), headers=FHIR_JSON))


# Found by this harness: json refuses integers over 4300 digits with a plain ValueError.
def test_a_huge_integer_is_a_400(client: AsgiClient) -> None:
    body = HUGE_BODY
    _check(client.post("/fhir/Observation", content=body, headers=FHIR_JSON))
