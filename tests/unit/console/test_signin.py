"""The console's sign-in routes: the options the page reads, and the development sign-in
that mints a real caregraph token (development mode only; absent otherwise)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from caregraph.security_cli import mint_development_token
from caregraph.security_wiring import token_validator
from caregraph.settings import Settings
from console import DEMO_USERS, SignInOptions, SmartClient, build_console_router, public_paths


def call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.request(method, url, **kwargs)

    return asyncio.run(send())


def app_with(options: SignInOptions | None) -> FastAPI:
    app = FastAPI()
    app.include_router(build_console_router(sign_in=options))
    return app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def mint_of(settings: Settings) -> Any:
    def mint(scope: str, subject: str, patient: str | None) -> str:
        return mint_development_token(settings, scope, subject=subject, patient=patient)

    return mint


def test_without_a_minter_there_is_no_development_sign_in() -> None:
    app = app_with(None)
    options = call(app, "GET", "/app/sign-in/options").json()
    assert options == {"development": None, "issuer": None, "smart": None}
    body = {"subject": "x", "scope": "user/*.rs"}
    assert call(app, "POST", "/app/sign-in/development", json=body).status_code == 404


def test_development_sign_in_mints_a_token_the_api_accepts(settings: Settings) -> None:
    app = app_with(SignInOptions(mint=mint_of(settings)))
    options = call(app, "GET", "/app/sign-in/options").json()
    assert [u["subject"] for u in options["development"]["users"]] == [
        u.subject for u in DEMO_USERS
    ]
    body = {"subject": "ward-nurse", "scope": " patient/*.rs  launch/patient", "patient": "p-7"}
    response = call(app, "POST", "/app/sign-in/development", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["token_type"] == "Bearer" and out["patient"] == "p-7"
    assert out["scope"] == "patient/*.rs launch/patient"
    principal = token_validator(settings).validate(out["access_token"])
    assert (principal.subject, principal.patient) == ("ward-nurse", "p-7")
    assert principal.scopes.allows("Observation", "r")
    assert not principal.scopes.allows("Observation", "c")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"subject": "a", "scope": "user/*.rs user/Devise.rx"}, "not a SMART scope"),
        ({"subject": "a", "scope": "openid fhirUser"}, "at least one resource scope"),
        ({"subject": "a", "scope": "patient/*.rs"}, "need a patient"),
        ({"subject": "a b", "scope": "user/*.rs"}, "user name"),
        ({"subject": "a", "scope": "user/*.rs", "patient": "../x"}, "not a FHIR id"),
    ],
)
def test_development_sign_in_refuses_what_would_mislead(
    settings: Settings, body: dict[str, str], why: str
) -> None:
    app = app_with(SignInOptions(mint=mint_of(settings)))
    response = call(app, "POST", "/app/sign-in/development", json=body)
    assert response.status_code == 422
    assert why in response.text


def test_jwks_mode_options_say_what_a_smart_sign_in_still_lacks() -> None:
    smart = SmartClient("https://idp.example/realms/h", token_endpoint="https://idp.example/t")
    options = call(app_with(SignInOptions(smart=smart)), "GET", "/app/sign-in/options").json()
    assert options["development"] is None
    assert options["issuer"] == "https://idp.example/realms/h"
    assert options["smart"]["missing"] == ["authorization_endpoint", "client_id"]


def test_only_development_mode_makes_the_minting_route_public() -> None:
    assert "/app/sign-in/options" in public_paths()
    assert "/app/sign-in/development" not in public_paths()
    assert "/app/sign-in/development" in public_paths(development_sign_in=True)
