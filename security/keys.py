"""Verification keys (JWKS, looked up by ``kid``) and caregraph's own signing key.

A JWKS source is a file or an ``https://`` URL; a URL is fetched with httpx, kept for
``ttl_s`` and refetched early (at most every ``min_refresh_s``) when a token names a ``kid``
not in it, so a key rotation at the issuer does not need a restart, and a flood of tokens with
made-up ``kid`` values does not become a flood of fetches.

The development signing key is an EC P-384 key (ES384) created once in the data dir with
mode 0600; its ``kid`` is its RFC 7638 thumbprint, so the same key always has the same kid.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from caregraph.errors import ConfigError
from security.errors import Unauthenticated

#: The algorithms a token may be signed with, and the key type (and curve) each needs.
KEY_TYPES: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "ES384": ("EC", "P-384"),
}


class KeyLookup(Protocol):
    """Finds the verification key for a token's ``kid`` and algorithm."""

    def key_for(self, kid: str, alg: str) -> Any:
        """The key object for ``jwt.decode``.

        Raises:
            Unauthenticated: no key with that ``kid``, or it does not fit ``alg``.
        """
        ...


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """A key may verify only the algorithm family it was made for (no RSA key as an HMAC
    secret, no P-256 key for ES384), and only if it is meant for signatures."""
    if alg not in KEY_TYPES:
        return False
    kty, crv = KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    if jwk.get("use", "sig") != "sig":
        return False
    return bool(jwk.get("alg", alg) == alg)


class JwkSet:
    """A parsed JWKS: ``kid`` -> public JWK; keys without a ``kid`` cannot be looked up."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a JWKS needs a 'keys' array")
        self._keys: dict[str, dict[str, Any]] = {}
        for jwk in keys:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                # Only the public members: a JWKS that leaked a private key must not make
                # caregraph hold it.
                self._keys[jwk["kid"]] = {k: v for k, v in jwk.items() if k not in _PRIVATE}

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def get(self, kid: str) -> dict[str, Any] | None:
        return self._keys.get(kid)

    def key_for(self, kid: str, alg: str) -> Any:
        jwk = self._keys.get(kid)
        if jwk is None:
            raise Unauthenticated(f"no key with kid {kid!r}")
        if not _fits(jwk, alg):
            raise Unauthenticated(f"key {kid!r} is not a {alg} signing key")
        try:
            return jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"key {kid!r} is unusable: {exc}") from exc


_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def load_jwks_file(path: Path) -> JwkSet:
    """A JWKS from a JSON file.

    Raises:
        ConfigError: the file is missing or is not a JWKS.
    """
    try:
        return JwkSet(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the JWKS {path}: {exc}; check CAREGRAPH_AUTH_JWKS") from exc


class RemoteJwks:
    """A JWKS at an https URL, cached; refetched on an unknown ``kid`` (rate-limited)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 300.0,
        min_refresh_s: float = 30.0,
        fetch: Callable[[str], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._fetch = fetch or _http_get_json
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: JwkSet | None = None
        self._fetched_at = float("-inf")

    def _refresh(self, *, force: bool) -> JwkSet | None:
        now = self._clock()
        with self._lock:
            age = now - self._fetched_at
            stale = self._keys is None or age >= self._ttl_s
            if stale or (force and age >= self._min_refresh_s):
                # Keep the old keys on a failed fetch; try again after min_refresh_s.
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self._keys = JwkSet(self._fetch(self.url))
                self._fetched_at = now
            return self._keys

    def key_for(self, kid: str, alg: str) -> Any:
        keys = self._refresh(force=False)
        if keys is None or keys.get(kid) is None:
            keys = self._refresh(force=True)
        if keys is None:
            raise Unauthenticated(f"the issuer's keys at {self.url} cannot be fetched")
        return keys.key_for(kid, alg)


def _http_get_json(url: str) -> Mapping[str, Any]:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return data


class Keys:
    """Several key sources tried in order (configured JWKS, then the development key)."""

    def __init__(self, *sources: KeyLookup) -> None:
        self._sources = sources

    def key_for(self, kid: str, alg: str) -> Any:
        last: Unauthenticated | None = None
        for source in self._sources:
            try:
                return source.key_for(kid, alg)
            except Unauthenticated as exc:
                last = exc
        raise last or Unauthenticated(f"no key with kid {kid!r}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an EC or RSA public key."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("utf-8")).digest())


@dataclass(frozen=True)
class SigningKey:
    """A private EC P-384 key with its public JWK; ``kid`` is the thumbprint."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str
    public_jwk: dict[str, Any]
    alg: str = "ES384"

    @classmethod
    def from_private(cls, key: ec.EllipticCurvePrivateKey) -> SigningKey:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        kid = thumbprint(jwk)
        return cls(key, kid, {**jwk, "kid": kid, "use": "sig", "alg": "ES384"})

    def jwks(self) -> JwkSet:
        return JwkSet({"keys": [self.public_jwk]})

    def key_for(self, kid: str, alg: str) -> Any:
        return self.jwks().key_for(kid, alg)


def generate_signing_key() -> SigningKey:
    return SigningKey.from_private(ec.generate_private_key(ec.SECP384R1()))


def load_or_create_signing_key(path: Path) -> SigningKey:
    """caregraph's own key in the data dir, created on first use (mode 0600).

    Raises:
        ConfigError: the file exists but is not an EC P-384 private key, or cannot be written.
    """
    try:
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
                loaded.curve, ec.SECP384R1
            ):
                raise ConfigError(f"{path} is not an EC P-384 private key; move it away")
            return SigningKey.from_private(loaded)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return SigningKey.from_private(key)
    except FileExistsError:
        return load_or_create_signing_key(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use the signing key {path}: {exc}") from exc
