"""Builds the authorization pieces of ``security`` from ``Settings``, once per process.

Development mode: caregraph's own EC P-384 key in ``DATA_DIR/security/signing-key.pem``
signs the tokens ``caregraph token`` mints; jwks mode adds the keys of an external
authorization server (``CAREGRAPH_AUTH_JWKS``, tokens with ``iss`` = ``AUTH_JWKS_ISSUER``).
caregraph's own key is trusted in both modes: the token endpoint (Backend Services) signs
with it. It is also caregraph's client key at partners (``CAREGRAPH_PARTNERS_FILE``): it
signs the client assertions traded at their token endpoints, and partners register its
public JWKS (``/.well-known/jwks.json``, or ``caregraph partner jwks``). One key for both
is safe because the two token kinds cannot stand in for each other: an access token has
``iss`` = ``AUTH_ISSUER`` and ``aud`` = ``AUTH_AUDIENCE``, an assertion ``iss`` = ``sub`` =
the client id and ``aud`` = the partner's token URL, and each side checks its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from caregraph.errors import ConfigError
from caregraph.settings import Settings
from fhir_store.database import Database
from fhir_store.errors import ResourceGone, ResourceNotFound
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from messaging.envelope import OPERATION
from messaging.outbox import Outbox
from messaging.partners import Partners, load_partners
from messaging.transfer import Sender
from security.audit import Auditor
from security.audit_log import ChainedAuditLog
from security.backend_services import TokenService
from security.clients import ClientRegistry
from security.guard import Guard
from security.identities import MpiIdentities, NoLinks
from security.keys import (
    KeyLookup,
    Keys,
    RemoteJwks,
    SigningKey,
    load_jwks_file,
    load_or_create_signing_key,
)
from security.middleware import DEFAULT_PUBLIC, AuthorizationMiddleware
from security.tls import client_context, server_context
from security.token_endpoint import build_token_router as build_token_router_for
from security.tokens import TokenMinter, TokenPolicy, TokenValidator


def signing_key_path(settings: Settings) -> Path:
    return settings.data_dir / "security" / "signing-key.pem"


def signing_key(settings: Settings) -> SigningKey:
    """caregraph's own key, created in the data dir on first use.

    Raises:
        ConfigError: the key file is unusable.
    """
    return load_or_create_signing_key(signing_key_path(settings))


def token_policy(settings: Settings) -> TokenPolicy:
    """Issuers, audience and algorithms in force.

    Raises:
        ConfigError: jwks mode without its JWKS and issuer, or unknown algorithms.
    """
    issuers = [settings.auth_issuer]
    if settings.auth_mode == "jwks":
        if not settings.auth_jwks or not settings.auth_jwks_issuer:
            raise ConfigError(
                "CAREGRAPH_AUTH_MODE=jwks needs CAREGRAPH_AUTH_JWKS (a file or https URL) and "
                "CAREGRAPH_AUTH_JWKS_ISSUER (the iss of its tokens)"
            )
        issuers.append(settings.auth_jwks_issuer)
    try:
        return TokenPolicy(tuple(issuers), settings.auth_audience, settings.auth_algorithms)
    except ValueError as exc:
        raise ConfigError(f"CAREGRAPH_AUTH_ALGORITHMS: {exc}") from exc


def external_keys(settings: Settings) -> KeyLookup | None:
    """The external authorization server's keys (jwks mode), or None."""
    if settings.auth_mode != "jwks" or not settings.auth_jwks:
        return None
    source = settings.auth_jwks
    if source.startswith("https://"):
        return RemoteJwks(source)
    if "://" in source:
        raise ConfigError(f"CAREGRAPH_AUTH_JWKS {source!r}: use a file path or an https URL")
    return load_jwks_file(Path(source))


def token_validator(settings: Settings) -> TokenValidator:
    own = signing_key(settings)
    remote = external_keys(settings)
    keys = Keys(own, remote) if remote is not None else Keys(own)
    return TokenValidator(keys, token_policy(settings))


def token_minter(settings: Settings) -> TokenMinter:
    return TokenMinter(signing_key(settings), settings.auth_issuer, settings.auth_audience)


def build_guard(settings: Settings, store: FhirStore, mpi: Mpi | None) -> Guard:
    """The guard of the API: tokens, linked identities from the MPI, store lookups, audit."""

    def lookup(type_name: str, res_id: str) -> dict[str, Any] | None:
        try:
            return store.read(type_name, res_id).resource()
        except (ResourceNotFound, ResourceGone):
            return None

    identities = MpiIdentities(mpi) if mpi is not None else NoLinks()
    # upsert_many keeps the ids the chain recorded, and writes a group in one transaction
    audit_log = ChainedAuditLog(store.db, store.upsert_many)
    return Guard(token_validator(settings), identities, lookup, Auditor(audit_log))


def build_token_router(settings: Settings, db: Database) -> APIRouter:
    """``POST /auth/token`` (Backend Services) and the discovery documents."""
    service = TokenService(ClientRegistry.open(db), token_minter(settings))
    return build_token_router_for(service, signing_key(settings))


def install(
    app: FastAPI,
    guard: Guard,
    token_router: APIRouter | None = None,
    public_paths: Iterable[str] = (),
) -> None:
    """Put the authorization middleware in front of every route of ``app``, and serve the
    token endpoint (open: a client has no token before it).

    ``public_paths``: more exact paths that hold no data and need no token, e.g. the
    console's sign-in page and assets (``console.public_paths()``).
    """
    if token_router is not None:
        app.include_router(token_router)
    open_paths = DEFAULT_PUBLIC | frozenset(public_paths)
    app.add_middleware(AuthorizationMiddleware, guard=guard, public_paths=open_paths)
    _document_authorization(app, open_paths)


#: What the middleware answers a refused request with (``security.middleware._outcome``).
_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                },
            },
        },
    },
}
_REFUSALS = {
    "401": "no valid bearer access token (WWW-Authenticate: Bearer ...)",
    "403": "the token's scopes or patient context do not allow this (insufficient_scope)",
}


def _document_authorization(app: FastAPI, open_paths: frozenset[str]) -> None:
    """Say in the OpenAPI schema what the middleware does: every operation but the open
    ones needs a SMART bearer token and may answer 401 or 403 with an OperationOutcome."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        components = spec.setdefault("components", {})
        components.setdefault("securitySchemes", {})["smart"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "SMART on FHIR access token (scopes such as system/*.rs)",
        }
        components.setdefault("schemas", {})["OperationOutcome"] = _OUTCOME_SCHEMA
        outcome = {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
        for path, operations in spec.get("paths", {}).items():
            if path in open_paths:
                continue
            for operation in operations.values():
                operation.setdefault("security", [{"smart": []}])
                responses = operation.setdefault("responses", {})
                for status, text in _REFUSALS.items():
                    responses.setdefault(
                        status,
                        {"description": text, "content": {"application/fhir+json": outcome}},
                    )
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def partners(settings: Settings) -> Partners:
    """The partners of ``CAREGRAPH_PARTNERS_FILE`` (none when unset), with caregraph's own
    key (the one ``/.well-known/jwks.json`` publishes) for its client assertions.

    Raises:
        ConfigError: the file is unreadable or invalid, or the key is unusable.
    """
    if settings.partners_file is None:
        return Partners([], signing_key(settings))
    return Partners(load_partners(settings.partners_file), signing_key(settings))


def message_endpoint(settings: Settings) -> str:
    """caregraph's own ``$process-message`` URL as partners reach it: the source endpoint
    of what it sends, hence the name partners know it by."""
    return f"{settings.effective_public_url}/fhir/{OPERATION}"


def message_sender(
    settings: Settings,
    store: FhirStore,
    mpi: Mpi,
    outbox: Outbox | None = None,
    configured: Partners | None = None,
) -> Sender:
    """What queues messages about patients for partners (the CLI, ``$send-transfer``).
    ``configured``: the partners if already loaded (else read from the settings).

    Raises:
        ConfigError: as :func:`partners`.
    """
    return Sender(
        store,
        configured if configured is not None else partners(settings),
        outbox or Outbox.open(store.db),
        message_endpoint(settings),
        MpiIdentities(mpi).linked,
    )


def https_files(settings: Settings) -> tuple[str, str] | None:
    """uvicorn's ``ssl_certfile`` and ``ssl_keyfile`` when ``CAREGRAPH_TLS_CERT_FILE`` and
    ``..._KEY_FILE`` are set; None for plain HTTP.

    Raises:
        ConfigError: only one of the two is set, or a file is unreadable.
    """
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("set both CAREGRAPH_TLS_CERT_FILE and CAREGRAPH_TLS_KEY_FILE, or neither")
    server_context(cert, key)  # fail now, with the setting's name, not in uvicorn's thread
    return str(cert), str(key)


def mllp_tls(settings: Settings) -> ssl.SSLContext | None:
    """The MLLP listener's TLS context (mutual TLS with ``CAREGRAPH_TLS_CLIENT_CA_FILE``)."""
    files = https_files(settings)
    if files is None:
        return None
    return server_context(Path(files[0]), Path(files[1]), settings.tls_client_ca_file)


def mllp_return_tls(settings: Settings) -> ssl.SSLContext | None:
    """The context application ACKs are delivered with (``CAREGRAPH_HL7_ACK_TLS_CA_FILE``);
    caregraph's own certificate is presented when it has one, for receivers that want
    mutual TLS."""
    if settings.hl7_ack_tls_ca_file is None:
        return None
    files = https_files(settings)
    cert, key = (Path(files[0]), Path(files[1])) if files else (None, None)
    return client_context(settings.hl7_ack_tls_ca_file, cert, key)


def stored_audit_events(store: FhirStore, page_size: int = 500) -> Iterator[dict[str, Any]]:
    """Every AuditEvent in the store, page by page (for ``caregraph audit verify``)."""
    offset = 0
    while True:
        params = [("_count", str(page_size)), ("_offset", str(offset)), ("_sort", "_id")]
        page = store.searching.search("AuditEvent", params)
        for stored in page.matches:
            yield stored.resource()
        if not page.has_next:
            return
        offset += page_size


def verify_audit_log(store: FhirStore) -> list[str]:
    """Problems in the audit chain ([] when intact)."""
    log = ChainedAuditLog(store.db, lambda events: None)
    return log.verify(stored_audit_events(store))
