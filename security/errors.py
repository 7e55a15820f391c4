"""The security errors, under caregraph's one rooted tree (``caregraph.errors``).

    CaregraphError
    └── SecurityError             an access decision or a credential failed
        ├── Unauthenticated       no token, or a token that does not validate   -> 401
        ├── Forbidden             a valid token that does not allow this        -> 403
        └── ClientAuthFailed      the token endpoint refuses a client (OAuth2 error code)

The HTTP edge (``security.middleware``, ``security.token_endpoint``) turns these into an
OperationOutcome with ``WWW-Authenticate``, or an OAuth2 error body; nothing deeper speaks HTTP.
"""

from __future__ import annotations

from caregraph.errors import CaregraphError


class SecurityError(CaregraphError):
    """An access decision or a credential check failed."""


class Unauthenticated(SecurityError):
    """No bearer token, or one that fails validation; ``error`` is the RFC 6750 code."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.error = error


class Forbidden(SecurityError):
    """The token is valid but does not allow the interaction or the data."""


class ClientAuthFailed(SecurityError):
    """The token endpoint refuses the request; ``error`` is the RFC 6749 error code."""

    def __init__(self, message: str, error: str = "invalid_client") -> None:
        super().__init__(message)
        self.error = error
