"""Token validation against the attacks of issue 7, with real keys (no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from security.errors import Unauthenticated
from security.keys import JwkSet, Keys, RemoteJwks, generate_signing_key, thumbprint
from security.tokens import TokenMinter, TokenPolicy, TokenValidator, bearer_token

ISS = "https://idp.example"
AUD = "urn:caregraph:api"


def rsa_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = thumbprint(jwk)
    return key, jwk


@pytest.fixture(scope="module")
def idp() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    return rsa_key()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "u1", "exp": now + 300, "scope": "user/*.rs"}
    return {**base, **overrides}


def sign(key: Any, kid: str, alg: str = "RS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def validator(jwk: dict[str, Any]) -> TokenValidator:
    return TokenValidator(JwkSet({"keys": [jwk]}), TokenPolicy((ISS,), AUD, leeway_s=0))


def test_a_good_token_gives_its_principal(idp: tuple[rsa.RSAPrivateKey, dict[str, Any]]) -> None:
    key, jwk = idp
    token = sign(key, jwk["kid"], "RS384", patient="p1", fhirUser="Practitioner/7")
    principal = validator(jwk).validate(token)
    assert principal.subject == "u1"
    assert principal.patient == "p1"
    assert principal.scopes.allows("Observation", "r")
    assert principal.is_clinician


def _unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(body)}."


def test_alg_none_is_refused(idp: tuple[rsa.RSAPrivateKey, dict[str, Any]]) -> None:
    _, jwk = idp
    token = _unsigned({"alg": "none", "kid": jwk["kid"]}, claims())
    with pytest.raises(Unauthenticated, match="algorithm 'none'"):
        validator(jwk).validate(token)


def test_hs256_signed_with_the_public_key_is_refused(
    idp: tuple[rsa.RSAPrivateKey, dict[str, Any]],
) -> None:
    key, jwk = idp
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": jwk["kid"], "typ": "JWT"}
    # PyJWT refuses to sign with a PEM as HMAC secret, so build the token by hand.
    unsigned = _unsigned(header, claims())[:-1]
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    token = unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="algorithm 'HS256'"):
        validator(jwk).validate(token)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"aud": "someone-else"}, "not for"),
        ({"iss": "https://evil.example"}, "issuer"),
    ],
)
def test_claims_are_checked(
    idp: tuple[rsa.RSAPrivateKey, dict[str, Any]], overrides: dict[str, Any], reason: str
) -> None:
    key, jwk = idp
    with pytest.raises(Unauthenticated, match=reason):
        validator(jwk).validate(sign(key, jwk["kid"], **overrides))


def test_exp_is_required(idp: tuple[rsa.RSAPrivateKey, dict[str, Any]]) -> None:
    key, jwk = idp
    body = claims()
    del body["exp"]
    token = jwt.encode(body, key, algorithm="RS256", headers={"kid": jwk["kid"]})
    with pytest.raises(Unauthenticated, match="exp"):
        validator(jwk).validate(token)


def test_unknown_kid_and_foreign_signature(idp: tuple[rsa.RSAPrivateKey, dict[str, Any]]) -> None:
    key, jwk = idp
    with pytest.raises(Unauthenticated, match="no key with kid"):
        validator(jwk).validate(sign(key, "not-a-kid"))
    other, _ = rsa_key()
    with pytest.raises(Unauthenticated, match="invalid"):
        validator(jwk).validate(sign(other, jwk["kid"]))


def test_a_key_verifies_only_its_own_algorithm_family(
    idp: tuple[rsa.RSAPrivateKey, dict[str, Any]],
) -> None:
    _, rsa_jwk = idp
    ec_key = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(claims(), ec_key, algorithm="ES384", headers={"kid": rsa_jwk["kid"]})
    with pytest.raises(Unauthenticated, match="not a ES384 signing key"):
        validator(rsa_jwk).validate(token)
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthenticated, match="algorithm 'ES256'"):
        validator(rsa_jwk).validate(
            jwt.encode(claims(), p256, algorithm="ES256", headers={"kid": rsa_jwk["kid"]})
        )


def test_minted_tokens_validate_with_the_development_key() -> None:
    key = generate_signing_key()
    minter = TokenMinter(key, "urn:caregraph", AUD)
    token = minter.mint("patient/*.rs", subject="dev", patient="p9", lifetime_s=60)
    assert jwt.get_unverified_header(token) == {"alg": "ES384", "kid": key.kid, "typ": "JWT"}
    policy = TokenPolicy(("urn:caregraph",), AUD)
    principal = TokenValidator(Keys(key), policy).validate(token)
    assert principal.patient == "p9"
    assert not principal.is_clinician
    with pytest.raises(Unauthenticated, match="issuer"):
        TokenValidator(Keys(key), TokenPolicy((ISS,), AUD)).validate(token)


def test_bearer_header_forms() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthenticated):
            bearer_token(bad)


def test_policy_refuses_unpinned_algorithms() -> None:
    with pytest.raises(ValueError, match="HS256"):
        TokenPolicy((ISS,), AUD, algorithms=("RS256", "HS256"))


def test_remote_jwks_refetches_on_unknown_kid_at_most_every_min_refresh(
    idp: tuple[rsa.RSAPrivateKey, dict[str, Any]],
) -> None:
    _, jwk = idp
    now = [0.0]
    fetched: list[str] = []
    published: list[dict[str, Any]] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"keys": list(published)}

    remote = RemoteJwks("https://idp.example/jwks", fetch=fetch, clock=lambda: now[0])
    with pytest.raises(Unauthenticated):
        remote.key_for(jwk["kid"], "RS256")
    assert len(fetched) == 1  # the first fetch, and no second one within min_refresh_s
    published.append(jwk)  # the issuer rotates its keys in
    with pytest.raises(Unauthenticated):
        remote.key_for(jwk["kid"], "RS256")
    assert len(fetched) == 1
    now[0] = 31.0
    assert remote.key_for(jwk["kid"], "RS256") is not None
    assert len(fetched) == 2
