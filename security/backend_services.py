"""SMART Backend Services: ``client_credentials`` with a ``private_key_jwt`` assertion.

The client signs a short JWT (``iss`` = ``sub`` = its client_id, ``aud`` = this token
endpoint's URL, ``exp`` at most 5 minutes ahead, a fresh ``jti``) with a key whose public
half it registered (``caregraph client add``); caregraph answers with a short-lived access
token signed by its own key, carrying the granted ``system/`` scopes.

Checked in this order, so nothing is looked up for a malformed request and no key is tried
for an algorithm it was not made for: grant type, assertion type, header algorithm and kid,
the (unverified) issuer names an active client, the key by kid in that client's JWKS, the
signature and claims, the 5-minute bound, then the ``jti`` is spent (single use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from security.clients import Client, ClientRegistry
from security.errors import ClientAuthFailed, Unauthenticated
from security.scopes import parse_scope
from security.tokens import TokenMinter

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300
ASSERTION_ALGORITHMS = ("RS384", "ES384", "RS256")


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    scope: str
    expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenService:
    """Issues access tokens to registered backend clients."""

    def __init__(
        self,
        registry: ClientRegistry,
        minter: TokenMinter,
        *,
        token_lifetime_s: int = 300,
        leeway_s: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.minter = minter
        self.token_lifetime_s = token_lifetime_s
        self.leeway_s = leeway_s
        self._clock = clock

    def issue(self, form: Mapping[str, str], endpoint_url: str) -> IssuedToken:
        """An access token for a valid request to the token endpoint at ``endpoint_url``.

        Raises:
            ClientAuthFailed: with the RFC 6749 error code (``unsupported_grant_type``,
                ``invalid_request``, ``invalid_client``, ``invalid_scope``).
        """
        if form.get("grant_type") != "client_credentials":
            raise ClientAuthFailed(
                "grant_type must be client_credentials", "unsupported_grant_type"
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise ClientAuthFailed(
                f"client_assertion_type must be {ASSERTION_TYPE}", "invalid_request"
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise ClientAuthFailed("client_assertion is missing", "invalid_request")
        client = self._verify(assertion, endpoint_url)
        client_id = client.client_id
        granted = _grant(form.get("scope", ""), client.scope)
        token = self.minter.mint(
            granted,
            subject=client_id,
            client_id=client_id,
            lifetime_s=self.token_lifetime_s,
        )
        return IssuedToken(token, granted, self.token_lifetime_s)

    def _verify(self, assertion: str, endpoint_url: str) -> Client:
        """The client whose valid, unspent assertion this is."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise ClientAuthFailed(f"the client assertion is not a JWT: {exc}") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise ClientAuthFailed(f"assertion algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ClientAuthFailed("the assertion header has no kid")
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise ClientAuthFailed("the assertion's iss and sub must both be the client_id")
        client = self.registry.get(client_id)
        if client is None or not client.active:
            raise ClientAuthFailed("unknown or revoked client")
        try:
            key = client.keys().key_for(kid, alg)
        except Unauthenticated as exc:
            raise ClientAuthFailed(f"the client's key: {exc}") from None
        now = self._clock()
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=endpoint_url,
                issuer=client_id,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise ClientAuthFailed("the client assertion has expired") from None
        except jwt.InvalidAudienceError:
            raise ClientAuthFailed(f"the assertion's aud must be {endpoint_url}") from None
        except jwt.PyJWTError as exc:
            raise ClientAuthFailed(f"the client assertion is invalid: {exc}") from None
        exp = int(claims["exp"])
        if exp > now + MAX_ASSERTION_LIFETIME_S:  # no leeway: the bound is the spec's
            raise ClientAuthFailed("the assertion expires more than 5 minutes ahead")
        self.registry.spend_jti(client_id, str(claims["jti"]), exp, int(now))
        return client


def _grant(requested: str, allowed: str) -> str:
    """The requested scopes the client's registration covers; refuses if none is."""
    allowed_scopes = [s for s in map(parse_scope, allowed.split()) if s is not None]
    granted = []
    for text in requested.split():
        scope = parse_scope(text)
        if scope is None:
            continue
        if any(
            a.context == scope.context
            and a.resource_type in ("*", scope.resource_type)
            and scope.permissions <= a.permissions
            for a in allowed_scopes
        ):
            granted.append(text)
    if not granted:
        raise ClientAuthFailed(
            "none of the requested scopes is granted to this client", "invalid_scope"
        )
    return " ".join(granted)
