"""Errors of the FHIR store, under ``caregraph.errors`` (the one rooted tree).

    CaregraphError
    └── StoreError                 (caregraph.errors)
        ├── StoreUnavailable       (caregraph.errors) the database cannot be reached
        ├── StoreConflict          a uniqueness constraint refused a write (lost a race)
        └── FhirError              a request the store refuses; ``status`` is its HTTP code
            ├── ResourceNotFound   404: no such type/id/version
            ├── ResourceGone       410: the resource was deleted
            ├── VersionConflict    409/412: If-Match stale, or a concurrent writer won
            ├── InvalidResource    400/422: content that is not a valid FHIR resource
            ├── InvalidSearch      400: a search parameter or value the server cannot honour
            ├── NotSupported       400/501: an interaction or feature not implemented
            └── PreconditionFailed 412: a conditional interaction matched more than one

The API edge turns each ``FhirError`` into an OperationOutcome with ``status``, ``code``
(an IssueType) and ``expression`` (the element or parameter at fault) from the exception.
"""

from __future__ import annotations

from caregraph.errors import StoreError


class StoreConflict(StoreError):
    """A uniqueness constraint refused a write (a concurrent writer won the race)."""


class FhirError(StoreError):
    """A request the store refuses, with what an OperationOutcome needs to say why."""

    status = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        expression: str | None = None,
        status: int | None = None,
        issues: list[tuple[str | None, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression
        #: Every problem found, as (element or parameter, why); at least the message itself.
        self.issues = issues or [(expression, message)]
        if status is not None:
            self.status = status


class ResourceNotFound(FhirError):
    status = 404
    code = "not-found"


class ResourceGone(FhirError):
    status = 410
    code = "deleted"


class VersionConflict(FhirError):
    status = 412
    code = "conflict"


class InvalidResource(FhirError):
    status = 400
    code = "structure"


class InvalidSearch(FhirError):
    status = 400
    code = "invalid"


class NotSupported(FhirError):
    status = 400
    code = "not-supported"


class PreconditionFailed(FhirError):
    status = 412
    code = "multiple-matches"
