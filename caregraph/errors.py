"""The one rooted exception hierarchy of caregraph.

    CaregraphError
    ├── ConfigError            settings that cannot work (bad URL, unwritable dir, port in use)
    ├── BusError               the bus seam (Kafka or embedded)
    │   └── BusUnavailable     the broker or the log cannot be reached
    ├── StoreError             the database seam
    │   └── StoreUnavailable   the database cannot be reached
    ├── MappingError           content that cannot be translated (carries where and why)
    └── SecurityError          (security/errors.py) access refused
        ├── Unauthenticated    no valid token: 401
        ├── Forbidden          the token does not allow it: 403
        └── ClientAuthFailed   a Backend Services client assertion was refused

Packages add their own leaves (e.g. ``fhir_store.errors``, ``linkage.errors``,
``bus.errors``) under these branches.

Third-party errors are wrapped at their seam with ``raise ... from exc``; the edges (HL7 ACK,
DICOM status, FHIR OperationOutcome, CLI) turn these into what their peer understands.
"""


class CaregraphError(Exception):
    """Root of every error caregraph raises on purpose."""


class ConfigError(CaregraphError):
    """A setting cannot work; the message says what is wrong and how to fix it."""


class BusError(CaregraphError):
    """The bus failed to publish, consume or commit."""


class BusUnavailable(BusError):
    """The broker (or the embedded log) cannot be reached."""


class StoreError(CaregraphError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class MappingError(CaregraphError):
    """Content that cannot be mapped; ``location`` names the segment/field or element."""

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location
