"""Sending outbox messages to partner Endpoints, authenticated as caregraph itself.

caregraph is a SMART Backend Services client of each partner: it signs a client assertion
with its own key (``security.keys.SigningKey``, ES384, the partner registered its public
JWKS), trades it at the partner's token endpoint for an access token, and sends each message
Bundle to the partner's ``$process-message`` with it. HTTP goes through an ``httpx.Client``
the caller owns (tests hand in one with ``httpx.MockTransport``).

What an attempt's result means is one table, :func:`classify`: the outbox retries what may
succeed later and fails what never will.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import httpx
import jwt

from messaging.outbox import Claimed, Outbox
from security.keys import SigningKey

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenRefused(Exception):
    """The partner's token endpoint refused caregraph's credentials (a retry may work once
    the partner fixes the registration, so the outbox retries it)."""


@dataclass
class ClientCredentials:
    """caregraph's registration at one partner; caches the token until shortly before expiry."""

    token_url: str
    client_id: str
    key: SigningKey
    scope: str = "system/*.cu"
    clock: Callable[[], float] = time.time
    _token: str | None = None
    _expires_at: float = 0.0

    def token(self, http: httpx.Client) -> str:
        """A current access token, asked for when none is cached or it is about to expire.

        Raises:
            TokenRefused: the token endpoint said no. httpx.TransportError: unreachable.
        """
        now = self.clock()
        if self._token is not None and now < self._expires_at - 30:
            return self._token
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": int(now) + 240,  # partners refuse assertions living beyond 5 minutes
            "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode(
            claims, self.key.private_key, algorithm=self.key.alg, headers={"kid": self.key.kid}
        )
        response = http.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        if response.status_code != 200:
            raise TokenRefused(f"token endpoint answered {response.status_code}: {response.text}")
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # a row is retried, not stuck until its lease ends, when the answer is garbage
            raise TokenRefused(f"token endpoint answered without a usable token: {exc!r}") from exc
        if not isinstance(token, str) or not token:
            raise TokenRefused("token endpoint answered without an access_token string")
        self._token = token
        self._expires_at = now + lifetime
        return self._token

    def forget(self) -> None:
        """Drop the cached token (the partner answered 401: ask for a new one next time)."""
        self._token = None


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"


_RETRY_STATUSES = frozenset({401, 408, 425, 429, 500, 502, 503, 504})


def classify(status: int, body: str) -> tuple[Verdict, str | None, str]:
    """(verdict, the response message's code if any, why) for a partner's HTTP answer."""
    code: str | None = None
    try:
        data = json.loads(body)
        header = data["entry"][0]["resource"]
        if header.get("resourceType") == "MessageHeader":
            code = str(header["response"]["code"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        code = None
    if code == "ok" and status == 200:
        return Verdict.DELIVERED, code, "ok"
    if code == "transient-error" or status in _RETRY_STATUSES:
        return Verdict.RETRY, code, f"HTTP {status}, response {code or 'none'}"
    return Verdict.FAIL, code, f"HTTP {status}, response {code or 'none'}: {body[:500]}"


class Deliverer:
    """Sends due outbox rows; one ``run_once`` is one pass, ``run`` loops until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        credentials: Mapping[str, ClientCredentials],
        http: httpx.Client,
    ) -> None:
        self._outbox = outbox
        self._credentials = credentials
        self._http = http

    def run_once(self, limit: int = 50) -> int:
        """Attempt every due row (up to ``limit``); returns how many were attempted."""
        claimed = self._outbox.claim_due(limit)
        for item in claimed:
            self._attempt(item)
        return len(claimed)

    def run(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        """Deliver until ``stop`` is set, pausing ``idle_s`` when nothing was due. One row's
        failure is recorded on the row; the loop itself only stops when asked."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("outbox pass failed; trying again")
                busy = 0
            if not busy:
                stop.wait(idle_s)

    def _attempt(self, item: Claimed) -> None:
        credentials = self._credentials.get(item.partner)
        if credentials is None:
            self._outbox.failed(item, f"no credentials configured for partner {item.partner!r}")
            return
        try:
            token = credentials.token(self._http)
            response = self._http.post(
                item.endpoint,
                content=item.bundle.encode(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": FHIR_JSON,
                    "Accept": FHIR_JSON,
                },
            )
        except (httpx.HTTPError, TokenRefused) as exc:
            self._outbox.retry(item, f"{type(exc).__name__}: {exc}")
            return
        verdict, code, why = classify(response.status_code, response.text)
        if response.status_code == 401:
            credentials.forget()
        if verdict is Verdict.DELIVERED:
            self._outbox.delivered(item, code or "ok", response.text)
        elif verdict is Verdict.RETRY:
            self._outbox.retry(item, why, code)
        else:
            self._outbox.failed(item, why, code, response.text)
