"""Errors of the linkage service, under ``caregraph.errors`` (the one rooted tree).

    CaregraphError
    ├── MappingError               (caregraph.errors)
    │   └── InvalidPatient         not a Patient resource, or no id to link it by
    └── LinkageError               a request the MPI refuses; ``status`` is its HTTP code
        ├── LinkageNotFound        404: no such source record, golden record or event
        └── InvalidLinkOperation   409: the request contradicts the current links

Storage failures stay ``StoreError`` (raised by the database seam).
"""

from __future__ import annotations

from caregraph.errors import CaregraphError, MappingError


class InvalidPatient(MappingError):
    """The resource cannot be linked: not a Patient, or without an id."""


class LinkageError(CaregraphError):
    """A linkage request that cannot be carried out."""

    status = 400


class LinkageNotFound(LinkageError):
    status = 404


class InvalidLinkOperation(LinkageError):
    status = 409
