"""jwks mode: the console signs in with the hospital's authorization server through SMART
App Launch (standalone, authorization code with PKCE S256), as a public client.

The authorization server here is a small one the test runs on its own port. It does what
a real one must for this flow and checks every step: the authorize request (client id,
registered redirect URI, S256 challenge, state), then the token request (the code once
only, the same redirect URI, and ``BASE64URL(SHA-256(code_verifier))`` equal to the
challenge), and it answers the browser's token request with CORS for caregraph's origin.
It signs tokens with its own key, whose JWKS caregraph trusts (CAREGRAPH_AUTH_JWKS).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from playwright.sync_api import Page, expect

from console import SmartClient
from security.keys import generate_signing_key
from security.tokens import TokenMinter
from tests.e2e.console.conftest import Watched, screenshot
from tests.e2e.console.served import Served
from tests.support.services import serve_app

pytestmark = pytest.mark.e2e

CLIENT_ID = "caregraph-console"
ISSUER = "https://idp.hospital.example/realms/ward"


@dataclass
class Idp:
    """The authorization server's state, for the test to look at."""

    console_origin: str = ""
    user: str = "dr-smart"
    scope_granted: str = "user/Patient.rs user/Observation.rs"
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    minter: TokenMinter = field(
        default_factory=lambda: TokenMinter(generate_signing_key(), ISSUER, "urn:caregraph:api")
    )

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            redirect = q.get("redirect_uri", "")
            if q.get("client_id") != CLIENT_ID or redirect != f"{self.console_origin}/app/":
                raise HTTPException(400, "unknown client or unregistered redirect URI")
            if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
                raise HTTPException(400, "authorization code with PKCE S256 only")
            challenge = q.get("code_challenge", "")
            if len(challenge) != 43 or not q.get("state"):
                raise HTTPException(400, "a code challenge and a state are required")
            # The user signs in here and consents (a real server shows its pages).
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": challenge, "redirect_uri": redirect}
            answer = urlencode({"code": code, "state": q["state"]})
            return RedirectResponse(f"{redirect}?{answer}", status_code=302)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode()))
            grant_type, code = form.get("grant_type"), form.get("code", "")
            redirect_uri, client_id = form.get("redirect_uri"), form.get("client_id", "")
            code_verifier = form.get("code_verifier", "")
            cors = {"Access-Control-Allow-Origin": self.console_origin}
            issued = self.codes.pop(code, None)  # single use
            digest = hashlib.sha256(code_verifier.encode()).digest()
            proof = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            self.exchanges.append({"client_id": client_id, "verifier": code_verifier})
            if (
                grant_type != "authorization_code"
                or issued is None
                or client_id != CLIENT_ID
                or redirect_uri != issued["redirect_uri"]
                or proof != issued["challenge"]
            ):
                return JSONResponse({"error": "invalid_grant"}, status_code=400, headers=cors)
            access = self.minter.mint(self.scope_granted, subject=self.user, client_id=client_id)
            body = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": self.scope_granted,
            }
            return JSONResponse(body, headers={**cors, "Cache-Control": "no-store"})

        return app


@pytest.fixture
def idp_and_app(tmp_path: Path) -> Iterator[tuple[Idp, Served]]:
    idp = Idp()
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(json.dumps({"keys": [idp.minter.key.public_jwk]}))
    with serve_app(idp.app()) as idp_base:
        smart = SmartClient(
            ISSUER,
            authorization_endpoint=f"{idp_base}/authorize",
            token_endpoint=f"{idp_base}/token",
            client_id=CLIENT_ID,
            scope="openid fhirUser user/Patient.rs user/Observation.rs",
        )
        auth: dict[str, Any] = {
            "auth_mode": "jwks",
            "auth_jwks": str(jwks),
            "auth_jwks_issuer": ISSUER,
        }
        with Served(tmp_path, smart=smart, auth=auth) as app:
            idp.console_origin = app.app_url.removesuffix("/app/")
            app.store.update(
                "Patient",
                "smart-1",
                {"resourceType": "Patient", "id": "smart-1", "name": [{"family": "Pkce"}]},
            )
            yield idp, app


def test_sign_in_with_the_hospital_authorization_server(
    idp_and_app: tuple[Idp, Served], page: Page, watched: Watched
) -> None:
    idp, app = idp_and_app
    page.goto(app.app_url + "#/patients")
    expect(page.get_by_role("heading", name="Development sign-in")).to_have_count(0)
    page.get_by_role("button", name=f"Sign in with {ISSUER}").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator(".session .who")).to_contain_text("dr-smart")
    assert "code=" not in page.url and "state=" not in page.url  # the code leaves no trace
    assert page.url.endswith("/app/#/patients")
    (exchange,) = idp.exchanges
    assert len(exchange["verifier"]) >= 43 and exchange["client_id"] == CLIENT_ID
    assert idp.codes == {}  # the code was spent
    # Only what the granted scopes allow: patients, not devices or linkage review.
    sections = [a.inner_text() for a in page.locator("nav a[data-section]").all() if a.is_visible()]
    assert sections == ["Patients", "Linkage review"]
    page.get_by_label("Name").fill("Pkce")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table tbody tr")).to_have_count(1)
    screenshot(page, "sign-in-smart")
    watched.assert_clean()


def test_an_answer_for_another_tab_is_refused(
    idp_and_app: tuple[Idp, Served], page: Page, watched: Watched
) -> None:
    _, app = idp_and_app
    # A code and state this tab never asked for (e.g. a link planted by someone else).
    page.goto(app.app_url + "?code=stolen&state=not-mine#/patients")
    alert = page.get_by_role("alert").first
    expect(alert).to_contain_text("state mismatch")
    assert "code=" not in page.url
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    watched.assert_clean()
