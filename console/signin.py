"""How the console gets a token: ``GET /app/sign-in/options`` says which ways this caregraph
offers, and in development auth mode ``POST /app/sign-in/development`` mints one.

Development mode already lets anyone who can read the data dir mint any token
(``caregraph token``), and the launcher serves it on loopback only; the development sign-in
is the same thing through the page, for the demo. It exists only when the composition root
passes a ``mint`` function, which it does in development mode alone: in jwks mode the route
is not there at all (404), not merely refused.

In jwks mode tokens come from the hospital's authorization server. The options then name
its issuer and, when configured (``SmartClient``), its authorization and token endpoints
and the console's client id: the page runs the SMART authorization-code flow with PKCE
itself (``static/js/smart.js``), and the router adds the token endpoint's origin to the
page's ``connect-src``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from security.scopes import parse_scope

# (scope, subject, patient or None) -> a signed access token.
Mint = Callable[[str, str, str | None], str]

# Scopes that grant no resource access but a SMART client may ask for.
_OTHER_SCOPES = frozenset({"openid", "fhirUser", "profile", "launch/patient", "offline_access"})
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
LIFETIME_S = 3600


@dataclass(frozen=True)
class DevUser:
    """A person to sign in as, with the scopes their role would get."""

    subject: str
    label: str
    scope: str
    needs_patient: bool = False


# The people of the demo, by what they do: what the sign-in form offers first.
DEMO_USERS: tuple[DevUser, ...] = (
    DevUser("dr-clinician", "Clinician: every record", "user/*.cruds"),
    DevUser(
        "biomed-engineer",
        "Biomedical engineer: devices and their readings",
        "user/Device.cruds user/DeviceMetric.rs user/DeviceUseStatement.cruds "
        "user/Observation.rs user/Location.rs",
    ),
    DevUser("auditor", "Auditor: read everything, change nothing", "user/*.rs"),
    DevUser("ward-nurse", "Nurse: one patient's records", "patient/*.rs", needs_patient=True),
)


@dataclass(frozen=True)
class SmartClient:
    """The page as a SMART public client (authorization code with PKCE, S256) of the
    hospital's authorization server, in jwks mode. ``None`` fields are what is missing;
    with none missing the sign-in page offers "Sign in with <issuer>".

    The server must accept ``{origin}/app/`` as a redirect URI of ``client_id``, answer
    the token request from the browser (CORS for caregraph's origin), and issue tokens
    caregraph accepts (``iss`` = CAREGRAPH_AUTH_JWKS_ISSUER, ``aud`` =
    CAREGRAPH_AUTH_AUDIENCE, SMART ``scope``, optional ``patient``). ``audience`` is sent
    as the SMART ``aud`` parameter (default: this server's FHIR base URL).
    """

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    scope: str = "openid fhirUser user/*.rs"
    audience: str | None = None

    @property
    def missing(self) -> list[str]:
        return [
            name
            for name in ("authorization_endpoint", "token_endpoint", "client_id")
            if getattr(self, name) is None
        ]

    @property
    def token_origin(self) -> str | None:
        """``scheme://host[:port]`` of the token endpoint (for the page's CSP)."""
        if not self.token_endpoint:
            return None
        parts = urlsplit(self.token_endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            return None
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class SignInOptions:
    """What ``build_signin_router`` offers; ``mint`` only in development mode."""

    mint: Mint | None = None
    users: tuple[DevUser, ...] = DEMO_USERS
    smart: SmartClient | None = None
    issuer: str | None = None


class DevelopmentRequest(BaseModel):
    subject: str = Field(min_length=1, max_length=64)
    scope: str = Field(min_length=1, max_length=2000)
    patient: str | None = Field(default=None, max_length=64)


def check_request(body: DevelopmentRequest) -> tuple[str, str, str | None]:
    """The (scope, subject, patient) to mint, normalized.

    Raises:
        HTTPException: 422 saying what is wrong: an unknown scope (a typo would otherwise
            be a token that silently grants nothing), a bad subject or patient id, or
            ``patient/`` scopes without a patient.
    """
    scopes = body.scope.split()
    unknown = [s for s in scopes if s not in _OTHER_SCOPES and parse_scope(s) is None]
    if unknown:
        raise HTTPException(422, f"not a SMART scope: {', '.join(unknown)}")
    if not any(parse_scope(s) for s in scopes):
        raise HTTPException(422, "choose at least one resource scope (e.g. user/*.rs)")
    subject = body.subject.strip()
    if not _SUBJECT.match(subject):
        raise HTTPException(422, "the user name may hold letters, digits and _ . @ - only")
    patient = (body.patient or "").strip() or None
    if patient is not None and not _FHIR_ID.match(patient):
        raise HTTPException(422, f"{patient!r} is not a FHIR id")
    if patient is None and any(s.startswith("patient/") for s in scopes):
        raise HTTPException(422, "patient/ scopes need a patient")
    return " ".join(scopes), subject, patient


def build_signin_router(options: SignInOptions, *, prefix: str = "/app") -> APIRouter:
    """``GET {prefix}/sign-in/options`` always; ``POST {prefix}/sign-in/development`` only
    with ``options.mint``. Both are public paths (``signin_public_paths``)."""
    router = APIRouter(prefix=f"{prefix}/sign-in", tags=["console"], include_in_schema=False)

    @router.get("/options")
    def sign_in_options() -> dict[str, Any]:
        """Which sign-in this caregraph offers (holds no data)."""
        smart = options.smart
        return {
            "development": (
                {"users": [asdict(u) for u in options.users], "lifetime_s": LIFETIME_S}
                if options.mint is not None
                else None
            ),
            "issuer": options.issuer or (smart.issuer if smart else None),
            "smart": {**asdict(smart), "missing": smart.missing} if smart else None,
        }

    mint = options.mint
    if mint is None:
        return router

    @router.post("/development")
    def development_sign_in(body: DevelopmentRequest) -> dict[str, Any]:
        """A development token for whom the form names (development auth mode only)."""
        scope, subject, patient = check_request(body)
        token = mint(scope, subject, patient)
        out: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": LIFETIME_S,
            "scope": scope,
        }
        if patient is not None:
            out["patient"] = patient
        return out

    return router


def signin_public_paths(*, development: bool, prefix: str = "/app") -> frozenset[str]:
    """The sign-in paths the authorization middleware must let through without a token."""
    paths = {f"{prefix}/sign-in/options"}
    if development:
        paths.add(f"{prefix}/sign-in/development")
    return frozenset(paths)
