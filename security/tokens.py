"""Bearer JWTs: validation against pinned algorithms and keys, and minting with our own key.

Validation order matters: the header's ``alg`` is checked against the pinned list *before*
any key is looked up, so ``alg: none`` and ``HS256`` (signed with a public key as the HMAC
secret) never reach a verifier; the key comes from the ``kid`` and must fit the algorithm;
then PyJWT checks the signature, ``exp`` (required), ``nbf``, ``iss`` and ``aud``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from security.errors import Unauthenticated
from security.keys import KEY_TYPES, KeyLookup, SigningKey
from security.scopes import Context, ScopeSet

DEFAULT_ALGORITHMS = ("RS256", "RS384", "ES384")


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid access token must say: who issued it, for whom, signed how."""

    issuers: tuple[str, ...]
    audience: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = [a for a in self.algorithms if a not in KEY_TYPES]
        if not self.issuers:
            raise ValueError("at least one issuer must be trusted")
        if unknown or not self.algorithms:
            raise ValueError(
                f"algorithms must be some of {', '.join(KEY_TYPES)}; not {unknown or 'none'}"
            )


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the validated token says.

    ``patient``: the patient context (the token sees only that patient's compartment).
    ``fhir_user``: e.g. ``Practitioner/123``; a clinician may use break-glass.
    """

    subject: str
    client_id: str | None
    scopes: ScopeSet
    patient: str | None = None
    fhir_user: str | None = None
    token_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_clinician(self) -> bool:
        """A user (not a patient, not a backend service) acting with ``user/`` scopes."""
        if Context.USER not in self.scopes.contexts():
            return False
        return self.fhir_user is None or not self.fhir_user.startswith(("Patient/", "Person/"))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header.

    Raises:
        Unauthenticated: no header, or not a bearer token (``error`` empty, per RFC 6750 3.1).
    """
    if not authorization:
        raise Unauthenticated("this request needs a bearer access token", error="")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'", error="")
    return token.strip()


class TokenValidator:
    """Turns a bearer token into a ``Principal`` or raises ``Unauthenticated``."""

    def __init__(self, keys: KeyLookup, policy: TokenPolicy) -> None:
        self._keys = keys
        self.policy = policy

    def validate(self, token: str) -> Principal:
        """Check header, key, signature and claims.

        Raises:
            Unauthenticated: anything wrong, with the reason (never the token itself).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not a JWT: {exc}") from None
        alg = header.get("alg")
        if alg not in self.policy.algorithms:
            raise Unauthenticated(
                f"algorithm {alg!r} is not accepted; use {', '.join(self.policy.algorithms)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token header has no kid")
        key = self._keys.key_for(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.policy.audience,
                issuer=self.policy.issuers,
                leeway=self.policy.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for {self.policy.audience}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token's issuer is not trusted here") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is invalid: {exc}") from None
        return principal_of(claims)


def principal_of(claims: Mapping[str, Any]) -> Principal:
    """The principal of validated claims (``scope`` a space-separated string, SMART style)."""
    scope = claims.get("scope", "")
    if isinstance(scope, list):
        scope = " ".join(str(s) for s in scope)
    patient = claims.get("patient")
    fhir_user = claims.get("fhirUser")
    client_id = claims.get("client_id") or claims.get("azp")
    return Principal(
        subject=str(claims["sub"]),
        client_id=str(client_id) if client_id else None,
        scopes=ScopeSet.parse(str(scope)),
        patient=str(patient) if patient else None,
        fhir_user=str(fhir_user) if fhir_user else None,
        token_id=str(claims["jti"]) if claims.get("jti") else None,
        claims=dict(claims),
    )


class TokenMinter:
    """Signs access tokens with caregraph's own key (development mode, token endpoint)."""

    def __init__(
        self,
        key: SigningKey,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self._clock = clock

    def mint(
        self,
        scope: str,
        *,
        subject: str,
        patient: str | None = None,
        fhir_user: str | None = None,
        client_id: str | None = None,
        lifetime_s: int = 3600,
    ) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        if patient:
            claims["patient"] = patient
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if client_id:
            claims["client_id"] = client_id
        return jwt.encode(
            claims, self.key.private_key, algorithm=self.key.alg, headers={"kid": self.key.kid}
        )
