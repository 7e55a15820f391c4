"""``POST /fhir/$send-transfer`` and ``$send-observations`` in-process (httpx's ASGI
transport), with a fixed principal as ``authorize``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.parameters import Parameters

from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from messaging.api import build_router
from messaging.outbox import DeliveryStatus, Outbox
from messaging.partners import Partners, parse_partners
from messaging.transfer import Sender
from security.identities import MpiIdentities
from security.keys import generate_signing_key
from security.scopes import ScopeSet
from security.tokens import Principal

from .conftest import HOSPITAL_PATIENT
from .messages import encounter

B = {
    "name": "hospital-b",
    "fhir_base": "https://b.example/fhir",
    "token_url": "https://b.example/auth/token",
    "client_id": "cg-a",
    "events": ["transfer"],
}


def principal(scope: str) -> Callable[[], Principal]:
    def authorize() -> Principal:
        return Principal(subject="clerk", client_id=None, scopes=ScopeSet.parse(scope))

    return authorize


def app_for(store: FhirStore, mpi: Mpi, scope: str = "user/*.cruds") -> tuple[FastAPI, Outbox]:
    outbox = Outbox.open(store.db)
    partners = Partners(parse_partners({"partners": [B]}), generate_signing_key())
    sender = Sender(
        store,
        partners,
        outbox,
        "https://a.example/fhir/$process-message",
        MpiIdentities(mpi).linked,
    )
    app = FastAPI()
    app.include_router(build_router(store, mpi, principal(scope), outbox=outbox, sender=sender))
    return app, outbox


def post(app: FastAPI, path: str, body: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                path,
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/fhir+json"},
            )

    return asyncio.run(send())


def parameters(**values: Any) -> dict[str, Any]:
    parameter = []
    for name, value in values.items():
        kind = {"patient": "Reference", "partner": "String", "hours": "Decimal"}[name]
        parameter.append({"name": name, f"value{kind}": value})
    return {"resourceType": "Parameters", "parameter": parameter}


def test_a_transfer_is_queued_and_its_status_linked(store: FhirStore, mpi: Mpi) -> None:
    store.update("Encounter", "e1", encounter("e1", HOSPITAL_PATIENT))
    app, outbox = app_for(store, mpi)
    body = parameters(
        patient={"reference": f"Patient/{HOSPITAL_PATIENT}"}, partner="hospital-b", hours=2
    )
    resp = post(app, "/fhir/$send-transfer", body)
    assert resp.status_code == 202, resp.text
    Parameters.model_validate(resp.json())
    parts = {p["name"]: p for p in resp.json()["parameter"][0]["part"]}
    message_id = parts["id"]["valueString"]
    assert parts["status"]["valueCode"] == "pending"
    assert resp.headers["content-location"].startswith("http://test/fhir/$outbox-status?id=urn")
    row = outbox.get(message_id)
    assert row is not None and row.status is DeliveryStatus.PENDING and row.partner == "hospital-b"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/fhir/$send-transfer",
            parameters(patient={"reference": "Patient/nobody"}, partner="hospital-b"),
            404,
            "not-found",
        ),
        (
            "/fhir/$send-transfer",
            parameters(patient={"reference": "Patient/h1"}, partner="hospital-z"),
            422,
            "business-rule",
        ),
        (
            "/fhir/$send-observations",
            parameters(patient={"reference": "Patient/h1"}, partner="hospital-b"),
            422,
            "business-rule",
        ),
        ("/fhir/$send-transfer", parameters(partner="hospital-b"), 400, None),
        (
            "/fhir/$send-transfer",
            parameters(patient={"reference": "Patient/h1"}, partner="hospital-b", hours=-1),
            400,
            None,
        ),
        ("/fhir/$send-transfer", {"resourceType": "Patient"}, 400, None),
    ],
)
def test_what_cannot_be_sent_is_said(
    store: FhirStore, mpi: Mpi, path: str, body: Any, status: int, code: str | None
) -> None:
    app, outbox = app_for(store, mpi)
    resp = post(app, path, body)
    assert resp.status_code == status, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    if code:
        assert resp.json()["issue"][0]["code"] == code
    assert outbox.recent() == []


def test_sending_needs_read_access_to_what_is_sent(store: FhirStore, mpi: Mpi) -> None:
    app, outbox = app_for(store, mpi, scope="user/Patient.rs user/Encounter.rs")
    body = parameters(patient={"reference": "Patient/h1"}, partner="hospital-b")
    resp = post(app, "/fhir/$send-transfer", body)
    assert resp.status_code == 403
    assert "Observation" in resp.json()["issue"][0]["diagnostics"]
    assert outbox.recent() == []
