"""The one authorization dependency every HTTP route goes through.

The work is done by ``security.middleware.AuthorizationMiddleware`` (installed on the app by
``caregraph.security_wiring.install``): it validates the bearer token, enforces the SMART
scopes and the patient restriction, and filters responses. This dependency hands the
validated ``Principal`` to a route and fails closed: an app built without the middleware
answers 401 on every route that depends on it, instead of serving data to anyone.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from security.middleware import PRINCIPAL_KEY, REALM
from security.tokens import Principal


def authorize(request: Request) -> Principal:
    """The principal the middleware validated for this request.

    Raises:
        HTTPException: 401 when no middleware validated a token (FhirRoute turns it into an
            OperationOutcome, keeping ``WWW-Authenticate``).
    """
    state = request.scope.get("state") or {}
    principal = state.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise HTTPException(
            status_code=401,
            detail="this request needs a validated bearer access token",
            headers={"WWW-Authenticate": REALM},
        )
    return principal


def actor(request: Request) -> str:
    """Who made a manual decision (link, merge, ...), as the validated token names them."""
    principal = authorize(request)
    return principal.fhir_user or principal.subject
