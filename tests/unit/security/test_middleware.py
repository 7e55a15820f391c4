"""The middleware with fakes around it: failures of the checks fail closed, bodies replay."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from caregraph.errors import StoreUnavailable
from security.audit import Auditor
from security.guard import Guard
from security.identities import NoLinks
from security.keys import generate_signing_key
from security.middleware import PRINCIPAL_KEY, AuthorizationMiddleware
from security.tokens import TokenMinter, TokenPolicy, TokenValidator

AUD = "urn:test"


def app_with(lookup: Any, audited: list[dict[str, Any]]) -> tuple[FastAPI, TokenMinter]:
    key = generate_signing_key()
    validator = TokenValidator(key, TokenPolicy(("urn:caregraph",), AUD))
    guard = Guard(validator, NoLinks(), lookup, Auditor(audited.append))
    app = FastAPI()

    @app.put("/fhir/Observation/{res_id}")
    async def put(request: Request, res_id: str) -> dict[str, Any]:
        body = json.loads(await request.body())
        principal = request.scope["state"][PRINCIPAL_KEY]
        return {**body, "id": res_id, "seen_by": principal.subject}

    app.add_middleware(AuthorizationMiddleware, guard=guard)
    return app, TokenMinter(key, "urn:caregraph", AUD)


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "subject": {"reference": f"Patient/{subject}"}}


@pytest.mark.anyio
async def test_a_failing_store_lookup_refuses_with_503() -> None:
    def lookup(type_name: str, res_id: str) -> dict[str, Any] | None:
        raise StoreUnavailable("database down")

    audited: list[dict[str, Any]] = []
    app, minter = app_with(lookup, audited)
    token = minter.mint("patient/*.cruds", subject="s", patient="p1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.put(
            "/fhir/Observation/o1",
            json=observation("p1"),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 503
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.anyio
async def test_the_checked_body_reaches_the_route_unchanged() -> None:
    audited: list[dict[str, Any]] = []
    app, minter = app_with(lambda t, i: None, audited)
    token = minter.mint("patient/*.cruds", subject="s", patient="p1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        headers = {"Authorization": f"Bearer {token}"}
        ok = await client.put("/fhir/Observation/o1", json=observation("p1"), headers=headers)
        refused = await client.put("/fhir/Observation/o2", json=observation("p9"), headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["subject"] == {"reference": "Patient/p1"}
    assert ok.json()["seen_by"] == "s"
    assert refused.status_code == 403
    assert [e["outcome"] for e in audited] == ["0", "4"]
