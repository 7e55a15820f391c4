"""The ASGI middleware every HTTP request passes: authenticate, decide, check, filter.

Why middleware and not only a route dependency: it covers every router, including ones
mounted without the dependency, and it sees the response body, which is where a patient
restriction must finally hold (``security.filter``). The dependency ``caregraph.auth
.authorize`` only asserts that this middleware ran and let the request through.

Open without a token: ``/healthz``, ``/readyz``, the token endpoint, the SMART
configuration and the public keys (none holds patient data).
Errors leave as an OperationOutcome: 401 with ``WWW-Authenticate: Bearer ...``, 403 with
``error="insufficient_scope"``. Every FHIR, linkage and graph request is audited: refusals,
break-glass (before it is let through: no audit, no access) and allowed ones with the status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers

from caregraph.errors import StoreError, StoreUnavailable
from security.audit import AccessRecord
from security.errors import Forbidden, Unauthenticated
from security.filter import filter_body
from security.guard import Decision, Guard
from security.interactions import Access, Area, classify
from security.tokens import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "caregraph.principal"
BREAK_GLASS_HEADER = "x-break-glass-reason"
BREAK_GLASS_FLAG = "X-Break-Glass"
DEFAULT_PUBLIC = frozenset(
    {
        "/healthz",
        "/readyz",
        "/auth/token",
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
        "/.well-known/jwks.json",
    }
)
FHIR_JSON = "application/fhir+json"
REALM = 'Bearer realm="caregraph"'


def _outcome(code: str, text: str) -> bytes:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return json.dumps(body).encode("utf-8")


def _quoted(text: str) -> str:
    """Text safe inside a quoted header parameter: reasons can echo request data (an id
    from the path, a kid), so no control characters, no quotes, bounded length."""
    printable = "".join(c if " " <= c < "\x7f" else "?" for c in text)
    return printable.replace("\\", "/").replace('"', "'")[:200]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]
    raw += [
        (b"content-type", FHIR_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AuthorizationMiddleware:
    """Wraps the whole app; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        *,
        public_paths: frozenset[str] = DEFAULT_PUBLIC,
        max_body_bytes: int = 16 * 1024 * 1024,
        fhir_prefix: str = "/fhir",
    ) -> None:
        self.app = app
        self.guard = guard
        self.public_paths = public_paths
        self.max_body_bytes = max_body_bytes
        self.fhir_prefix = fhir_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = str(scope["method"])
        path = str(scope["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        access = classify(method, path, query, fhir_prefix=self.fhir_prefix)
        try:
            # may fetch the issuer's JWKS over HTTP: off the event loop
            principal = await anyio.to_thread.run_sync(
                self.guard.authenticate, headers.get("authorization")
            )
        except Unauthenticated as exc:
            challenge = REALM
            if exc.error:
                challenge += f', error="{exc.error}", error_description="{_quoted(str(exc))}"'
            await _respond(
                send, 401, _outcome("login", str(exc)), [("WWW-Authenticate", challenge)]
            )
            return
        client = scope.get("client")
        address = str(client[0]) if client else None
        try:
            # decide asks the MPI for linked identities: database work, off the event loop
            decision = await anyio.to_thread.run_sync(
                self.guard.decide, principal, access, headers.get(BREAK_GLASS_HEADER)
            )
            body: bytes | None = None
            if self.guard.needs_body(decision, access):
                body = await self._read_body(receive)
                receive = _replay(body)
            await anyio.to_thread.run_sync(self.guard.check_request, decision, access, body)
            if decision.break_glass:
                await anyio.to_thread.run_sync(
                    lambda: self.guard.audit(
                        _record(principal, access, method, path, address, True, decision),
                        required=True,
                    )
                )
        except Forbidden as exc:
            await self._deny(send, principal, access, method, path, address, str(exc))
            return
        except _TooLarge as exc:
            await _respond(send, 413, _outcome("too-costly", str(exc)), [])
            return
        except StoreError as exc:
            # The store or the MPI could not answer a check: refuse, never guess (fail closed).
            code = 503 if isinstance(exc, StoreUnavailable) else 500
            log.warning("authorization check failed on %s %s: %s", method, path, exc)
            await _respond(send, code, _outcome("transient", "authorization unavailable"), [])
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        status: list[int] = []

        async def answered(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        if access.area is not Area.FHIR or decision.sees_everything:
            await self.app(scope, receive, _flagging(answered, decision))
        elif not await self._filtered(
            scope, receive, answered, decision, access, method, path, address
        ):
            return  # refused and audited on the way out
        if access.area is not Area.OTHER and not decision.break_glass:
            record = _record(principal, access, method, path, address, True, decision)
            done = replace(record, status=status[0] if status else None)
            await anyio.to_thread.run_sync(lambda: self.guard.audit(done))

    async def _deny(
        self,
        send: Send,
        principal: Principal,
        access: Access,
        method: str,
        path: str,
        address: str | None,
        reason: str,
    ) -> None:
        record = AccessRecord(
            principal,
            method,
            path,
            access.interaction,
            access.permission,
            False,
            reason,
            patient=principal.patient,
            target=_target(access),
            client_address=address,
        )
        await anyio.to_thread.run_sync(lambda: self.guard.audit(record))
        challenge = f'{REALM}, error="insufficient_scope", error_description="{_quoted(reason)}"'
        await _respond(send, 403, _outcome("forbidden", reason), [("WWW-Authenticate", challenge)])

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge(f"body larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _filtered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision,
        access: Access,
        method: str,
        path: str,
        address: str | None,
    ) -> bool:
        """Run the app with its response held back, filter it, then send it; False when the
        response had to be refused instead (already audited)."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, hold)
        if start is None:
            return True
        body = b"".join(chunks)
        headers = Headers(raw=start.get("headers", []))
        if "json" in headers.get("content-type", "") and body:
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                data = None
            if data is not None:
                try:
                    shown, _hidden = filter_body(data, decision.view)
                except Forbidden as exc:
                    await self._deny(
                        send, decision.principal, access, method, path, address, str(exc)
                    )
                    return False
                body = json.dumps(shown).encode("utf-8")
        raw = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if start["status"] not in (204, 304):
            raw.append((b"content-length", str(len(body)).encode()))
        if decision.break_glass:
            raw.append((BREAK_GLASS_FLAG.lower().encode(), b"audited"))
        await send({**start, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        return True


class _TooLarge(Exception):
    pass


def _replay(body: bytes) -> Receive:
    """A ``receive`` that yields the already-read body once, then waits like a real one."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}  # pragma: no cover - never reached

    return receive


def _flagging(send: Send, decision: Decision) -> Send:
    if not decision.break_glass:
        return send

    async def flagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (BREAK_GLASS_FLAG.lower().encode(), b"audited")]
            message = {**message, "headers": headers}
        await send(message)

    return flagged


def _target(access: Access) -> str | None:
    if access.resource_type and access.resource_id:
        return f"{access.resource_type}/{access.resource_id}"
    return None


def _record(
    principal: Principal,
    access: Access,
    method: str,
    path: str,
    address: str | None,
    allowed: bool,
    decision: Decision,
) -> AccessRecord:
    return AccessRecord(
        principal,
        method,
        path,
        access.interaction,
        access.permission,
        allowed,
        "break-glass access" if decision.break_glass else "allowed",
        patient=principal.patient,
        target=_target(access),
        break_glass=decision.break_glass,
        client_address=address,
    )
