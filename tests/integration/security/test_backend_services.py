"""SMART Backend Services over HTTP: a registered client gets a token with a signed
assertion; replays, late expiries, unknown keys and revoked clients are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from caregraph import security_wiring
from caregraph.settings import Settings
from security.keys import thumbprint
from tests.integration.security.conftest import Api, observation

pytestmark = pytest.mark.integration

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Partner:
    """A backend client with an RSA key, registered with ``scope``."""

    def __init__(self, api: Api, scope: str = "system/*.rs") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        self.kid = thumbprint(jwk)
        self.client = api.registry.add(
            "Hospital B", {"keys": [{**jwk, "kid": self.kid, "alg": "RS384"}]}, scope
        )
        self.endpoint = f"{api.base}/auth/token"

    def assertion(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client.client_id,
            "sub": self.client.client_id,
            "aud": self.endpoint,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
            **overrides,
        }
        kid = claims.pop("kid", self.kid)
        return jwt.encode(claims, self.key, algorithm="RS384", headers={"kid": kid})

    def ask(self, assertion: str, scope: str = "system/*.rs") -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        return httpx.post(self.endpoint, data=form, headers={"Content-Type": FORM})


def test_a_partner_gets_a_token_and_uses_it(api: Api) -> None:
    partner = Partner(api)
    response = partner.ask(partner.assertion())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["scope"] == "system/*.rs"
    assert 0 < body["expires_in"] <= 300
    assert response.headers["cache-control"] == "no-store"
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    searched = httpx.get(f"{api.base}/fhir/Observation", headers=auth)
    assert searched.status_code == 200
    assert len(searched.json()["entry"]) == 3
    created = httpx.post(f"{api.base}/fhir/Observation", json=observation("x", "b"), headers=auth)
    assert created.status_code == 403


def error_of(response: httpx.Response) -> str:
    assert response.status_code in (400, 401), response.text
    return str(response.json()["error"])


def test_assertion_attacks_are_refused(api: Api) -> None:
    partner = Partner(api)
    once = partner.assertion()
    assert partner.ask(once).status_code == 200
    assert error_of(partner.ask(once)) == "invalid_client"  # replayed jti
    late = partner.assertion(exp=int(time.time()) + 302)
    assert error_of(partner.ask(late)) == "invalid_client"
    assert error_of(partner.ask(partner.assertion(kid="unknown"))) == "invalid_client"
    assert (
        error_of(partner.ask(partner.assertion(aud="https://elsewhere/token"))) == "invalid_client"
    )
    assert error_of(partner.ask(partner.assertion(exp=int(time.time()) - 60))) == "invalid_client"
    stranger = ec.generate_private_key(ec.SECP384R1())
    forged = jwt.encode(
        {
            "iss": partner.client.client_id,
            "sub": partner.client.client_id,
            "aud": partner.endpoint,
            "exp": int(time.time()) + 60,
            "jti": "x",
        },
        stranger,
        algorithm="ES384",
        headers={"kid": partner.kid},
    )
    assert error_of(partner.ask(forged)) == "invalid_client"
    assert error_of(partner.ask(partner.assertion(), scope="system/*.cruds")) == "invalid_scope"
    assert error_of(partner.ask(partner.assertion(), scope="user/*.rs")) == "invalid_scope"
    plain = httpx.post(partner.endpoint, data={"grant_type": "password"})
    assert error_of(plain) == "unsupported_grant_type"
    assert api.registry.revoke(partner.client.client_id)
    assert error_of(partner.ask(partner.assertion())) == "invalid_client"


def test_discovery_is_open(api: Api) -> None:
    config = httpx.get(f"{api.base}/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == f"{api.base}/auth/token"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    keys = httpx.get(f"{api.base}/.well-known/jwks.json").json()["keys"]
    assert keys[0]["kid"] == security_wiring.signing_key(api.settings).kid
    assert "d" not in keys[0]


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "caregraph.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_free,
        check=False,
    )


def test_cli_clients_and_development_tokens(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "partner.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    added = run(
        "client",
        "add",
        "--name",
        "Hospital B",
        "--jwks",
        str(jwks),
        "--scope",
        "system/*.rs",
        data_dir=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.strip()
    listed = run("client", "list", data_dir=tmp_path)
    assert client_id in listed.stdout and "active" in listed.stdout and "k1" in listed.stdout
    bad = run(
        "client",
        "add",
        "--name",
        "X",
        "--jwks",
        str(jwks),
        "--scope",
        "user/*.rs",
        data_dir=tmp_path,
    )
    assert bad.returncode == 2 and "system/" in bad.stderr
    assert run("client", "revoke", client_id, data_dir=tmp_path).returncode == 0
    assert "revoked" in run("client", "list", data_dir=tmp_path).stdout
    assert run("client", "revoke", client_id, data_dir=tmp_path).returncode == 2

    minted = run("token", "--scope", "patient/*.rs", "--patient", "p1", data_dir=tmp_path)
    assert minted.returncode == 0, minted.stderr
    principal = security_wiring.token_validator(Settings(data_dir=tmp_path)).validate(
        minted.stdout.strip()
    )
    assert principal.patient == "p1"
    assert (tmp_path / "security" / "signing-key.pem").stat().st_mode & 0o077 == 0
