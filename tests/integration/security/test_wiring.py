"""Settings to validators: jwks mode trusts the configured issuer's keys and its own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from caregraph import security_wiring
from caregraph.errors import ConfigError
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from security.errors import Unauthenticated

pytestmark = pytest.mark.integration

IDP = "https://idp.hospital.example"


def jwks_file(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    path = tmp_path / "idp-jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig"}]}))
    return key, path


def test_jwks_mode_validates_the_idp_tokens(tmp_path: Path) -> None:
    key, path = jwks_file(tmp_path)
    settings = Settings(
        data_dir=tmp_path,
        auth_mode="jwks",
        auth_jwks=str(path),
        auth_jwks_issuer=IDP,
        auth_audience="https://caregraph.hospital.example/fhir",
    )
    validator = security_wiring.token_validator(settings)
    claims = {
        "iss": IDP,
        "aud": settings.auth_audience,
        "sub": "nurse-7",
        "exp": int(time.time()) + 60,
        "scope": "user/Observation.rs",
        "fhirUser": "Practitioner/7",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "idp-1"})
    assert validator.validate(token).fhir_user == "Practitioner/7"
    # RS384 is pinned too; an issuer the settings do not name is not trusted
    assert (
        validator.validate(
            jwt.encode(claims, key, algorithm="RS384", headers={"kid": "idp-1"})
        ).subject
        == "nurse-7"
    )
    forged_issuer = {**claims, "iss": "https://elsewhere.example"}
    with pytest.raises(Unauthenticated, match="issuer"):
        validator.validate(
            jwt.encode(forged_issuer, key, algorithm="RS256", headers={"kid": "idp-1"})
        )
    # development tokens are not minted in jwks mode
    with pytest.raises(ConfigError, match="development mode"):
        mint_development_token(settings, "user/*.rs")


def test_jwks_mode_needs_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CAREGRAPH_AUTH_JWKS"):
        security_wiring.token_validator(Settings(data_dir=tmp_path, auth_mode="jwks"))
    bad = Settings(
        data_dir=tmp_path, auth_mode="jwks", auth_jwks="http://idp/jwks", auth_jwks_issuer=IDP
    )
    with pytest.raises(ConfigError, match="https"):
        security_wiring.token_validator(bad)
    missing = Settings(
        data_dir=tmp_path,
        auth_mode="jwks",
        auth_jwks=str(tmp_path / "nope.json"),
        auth_jwks_issuer=IDP,
    )
    with pytest.raises(ConfigError, match=r"nope\.json"):
        security_wiring.token_validator(missing)
    with pytest.raises(ConfigError, match="ALGORITHMS"):
        security_wiring.token_validator(Settings(data_dir=tmp_path, auth_algorithms=("HS256",)))


def test_the_signing_key_is_kept_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = security_wiring.signing_key(settings)
    assert security_wiring.signing_key(settings).kid == first.kid
    token = mint_development_token(settings, "user/*.rs", patient="p1")
    assert security_wiring.token_validator(settings).validate(token).patient == "p1"
    security_wiring.signing_key_path(settings).write_text("not a key")
    with pytest.raises(ConfigError, match="signing key"):
        security_wiring.signing_key(settings)
