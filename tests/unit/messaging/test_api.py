"""The router in-process (httpx's ASGI transport), with a fixed principal as ``authorize``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.parameters import Parameters

from caregraph.errors import StoreUnavailable
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from messaging.api import build_router
from messaging.identity import local_id
from messaging.outbox import Outbox
from security.scopes import ScopeSet
from security.tokens import Principal

from .messages import PARTNER, transfer

URL = "/fhir/$process-message"


def principal(scope: str) -> Callable[[], Principal]:
    def authorize() -> Principal:
        return Principal(subject="hospital-b", client_id="hospital-b", scopes=ScopeSet.parse(scope))

    return authorize


def post(app: FastAPI, body: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            return await client.post(
                URL, content=content, headers={"Content-Type": "application/fhir+json"}
            )

    return asyncio.run(send())


def app_for(store: FhirStore, mpi: Mpi, scope: str = "system/*.cruds") -> FastAPI:
    app = FastAPI()
    app.include_router(build_router(store, mpi, principal(scope)))
    return app


def answer(resp: httpx.Response) -> tuple[str, dict[str, Any]]:
    body = resp.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "message"
    header, outcome = (e["resource"] for e in body["entry"])
    return header["response"]["code"], outcome


def test_a_message_is_processed_and_a_repeat_gets_the_original_response(
    store: FhirStore, mpi: Mpi
) -> None:
    app = app_for(store, mpi)
    first = post(app, transfer("m1"))
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/fhir+json")
    code, outcome = answer(first)
    assert code == "ok"
    pid = local_id(PARTNER, "Patient", "p1")
    texts = [i["diagnostics"] for i in outcome["issue"]]
    assert f"stored Patient/{pid}" in texts
    # The repeat carries other content: it is the same message, so nothing new happens.
    changed = transfer("m1", family="Other")
    again = post(app, changed)
    assert again.json() == first.json()
    assert store.read("Patient", pid).resource()["name"][0]["family"] == "Andersen"


@pytest.mark.parametrize(
    "body",
    [b"not json", {"resourceType": "Bundle", "type": "transaction", "entry": []}],
)
def test_what_is_not_a_message_gets_a_400_operation_outcome(
    store: FhirStore, mpi: Mpi, body: Any
) -> None:
    resp = post(app_for(store, mpi), body)
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_invalid_content_gets_a_fatal_error_that_a_repeat_gets_again(
    store: FhirStore, mpi: Mpi
) -> None:
    app = app_for(store, mpi)
    data = transfer("m1")
    del data["entry"][2]["resource"]["status"]
    first = post(app, data)
    assert first.status_code == 200
    code, outcome = answer(first)
    assert code == "fatal-error"
    assert "Encounter.status" in json.dumps(outcome)
    assert post(app, transfer("m1")).json() == first.json()


def test_a_partner_without_write_scopes_gets_fatal_error_forbidden(
    store: FhirStore, mpi: Mpi
) -> None:
    resp = post(app_for(store, mpi, "system/Patient.cu system/Encounter.cu"), transfer("m1"))
    code, outcome = answer(resp)
    assert code == "fatal-error"
    assert outcome["issue"][0]["code"] == "forbidden"
    assert "Observation" in outcome["issue"][0]["diagnostics"]


def test_a_database_outage_is_transient_and_not_remembered(
    store: FhirStore, mpi: Mpi, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(store, mpi)
    real = store.upsert_many

    def down(resources: Any) -> None:
        raise StoreUnavailable("cannot reach the database")

    monkeypatch.setattr(store, "upsert_many", down)
    failed = post(app, transfer("m1"))
    assert failed.status_code == 503
    assert failed.headers["retry-after"]
    assert answer(failed)[0] == "transient-error"
    monkeypatch.setattr(store, "upsert_many", real)
    retried = post(app, transfer("m1"))
    assert retried.status_code == 200
    assert answer(retried)[0] == "ok"


def get(app: FastAPI, url: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(url)

    return asyncio.run(send())


def test_delivery_status_is_readable_as_parameters(store: FhirStore, mpi: Mpi) -> None:
    outbox = Outbox.open(store.db)
    app = FastAPI()
    app.include_router(build_router(store, mpi, principal("system/*.cruds"), outbox=outbox))
    message_id = outbox.enqueue("hospital-b", PARTNER, transfer("out-1"))
    one = get(app, f"/fhir/$outbox-status?id={message_id}")
    assert one.status_code == 200
    body = one.json()
    Parameters.model_validate(body)
    parts = {p["name"]: p for p in body["parameter"][0]["part"]}
    assert parts["status"]["valueCode"] == "pending"
    assert parts["attempts"]["valueInteger"] == 0
    assert "nextAttempt" in parts
    assert get(app, "/fhir/$outbox-status?status=delivered").json()["parameter"] == []
    assert len(get(app, "/fhir/$outbox-status").json()["parameter"]) == 1
    assert get(app, "/fhir/$outbox-status?id=nope").status_code == 404
    assert get(app, "/fhir/$outbox-status?status=lost").status_code == 400


def test_a_bug_is_a_500_fatal_error_that_is_not_remembered(
    store: FhirStore, mpi: Mpi, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(store, mpi)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(mpi, "ingest", broken)
    failed = post(app, transfer("m1"))
    assert failed.status_code == 500
    code, outcome = answer(failed)
    assert code == "fatal-error" and outcome["issue"][0]["code"] == "exception"
    assert "a bug" not in failed.text  # internals stay inside
    monkeypatch.undo()
    assert answer(post(app, transfer("m1")))[0] == "ok"


def test_a_client_may_send_only_as_the_partners_it_speaks_for(store: FhirStore, mpi: Mpi) -> None:
    def speaks_for(caller: Principal, endpoint: str) -> bool:
        return caller.client_id == "hospital-b" and endpoint == PARTNER

    app = FastAPI()
    app.include_router(build_router(store, mpi, principal("system/*.cruds"), speaks_for=speaks_for))
    spoofed = transfer("m1")
    spoofed["entry"][0]["resource"]["source"]["endpoint"] = "https://hospital-c.example/fhir"
    refused = post(app, spoofed)
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert answer(post(app, transfer("m1")))[0] == "ok"
