"""HTTP routes of the authorization server side: ``POST /auth/token`` and discovery.

``/.well-known/smart-configuration`` (also under the FHIR base) tells clients where the
token endpoint is and what it accepts; ``/.well-known/jwks.json`` publishes caregraph's
public key, so a partner can verify tokens caregraph issued. All are open (see
``security.middleware.DEFAULT_PUBLIC``).
Errors follow RFC 6749 section 5.2: a JSON body with ``error`` and ``error_description``,
400, or 401 for ``invalid_client``.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
import logging
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from security.backend_services import ASSERTION_ALGORITHMS, TokenService
from security.errors import ClientAuthFailed
from security.keys import SigningKey

log = logging.getLogger(__name__)

TOKEN_PATH = "/auth/token"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


_TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"const": "bearer"},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
    },
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an access token",
        "content": {"application/json": {"schema": _TOKEN_SCHEMA}},
    },
    400: {
        "description": "RFC 6749 5.2 error: invalid_request, unsupported_grant_type, ...",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
    401: {
        "description": "RFC 6749 5.2 error: invalid_client",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
}


def build_token_router(
    service: TokenService, key: SigningKey, fhir_prefix: str = "/fhir"
) -> APIRouter:
    """The token endpoint and discovery documents.

    SMART clients look for the configuration under the FHIR base
    (``/fhir/.well-known/smart-configuration``): include this router *before* the FHIR
    router, whose catch-all would answer that path otherwise.
    """
    router = APIRouter(tags=["auth"])

    @router.post(TOKEN_PATH, responses=_TOKEN_RESPONSES)
    async def token(request: Request) -> JSONResponse:
        """OAuth2 token endpoint: client_credentials with a private_key_jwt assertion."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _error(ClientAuthFailed("request too large", "invalid_request"))
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _error(
                ClientAuthFailed("use application/x-www-form-urlencoded", "invalid_request")
            )
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        endpoint = str(request.url.replace(query=""))
        try:
            issued = await anyio.to_thread.run_sync(service.issue, form, endpoint)
        except ClientAuthFailed as exc:
            log.info("token endpoint refused a client: %s", exc)
            return _error(exc)
        return JSONResponse(issued.to_json(), headers=NO_STORE)

    @router.get(f"{fhir_prefix}/.well-known/smart-configuration")
    @router.get("/.well-known/smart-configuration")
    def smart_configuration(request: Request) -> dict[str, Any]:
        """SMART discovery: the token endpoint and what it supports."""
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": service.minter.issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}{TOKEN_PATH}",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "scopes_supported": ["system/*.cruds", "system/*.rs"],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }

    @router.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        """caregraph's public signing key."""
        return {"keys": [key.public_jwk]}

    return router


def _error(exc: ClientAuthFailed) -> JSONResponse:
    status = 401 if exc.error == "invalid_client" else 400
    return JSONResponse(
        {"error": exc.error, "error_description": str(exc)}, status_code=status, headers=NO_STORE
    )
