"""Who may send to the edge listeners: DICOM calling AE titles and HL7 sending facilities.

The HTTP API authorizes with tokens; DICOM and MLLP peers carry no token, so they are
allowlisted by what their protocol says about them (the calling AE title with the host it
connects from; MSH-4 sending facility), plus TLS where the peer supports it.

Settings (``caregraph.settings``):
    CAREGRAPH_DICOM_ALLOWED_CALLERS='{"CT1": {"hosts": ["10.0.0.5"], "operations": ["store"]}}'
    CAREGRAPH_DICOM_ALLOWED_CALLERS='CT1@10.0.0.5:store;PACS@10.0.0.9/104:find,move'
    CAREGRAPH_HL7_ALLOWED_FACILITIES="HIS,LAB"
Unset means "accept any" (one-machine demo); a deployment sets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

DicomOperation = Literal["echo", "store", "find", "get", "move"]
ALL_OPERATIONS: frozenset[str] = frozenset({"echo", "store", "find", "get", "move"})


def _default_operations() -> list[DicomOperation]:
    return ["echo", "store"]


class DicomCaller(BaseModel):
    """One allowlisted calling AE: the hosts it may connect from (empty: any host), the
    DIMSE operations it may ask for (C-ECHO always, as a connectivity test) and the port its
    own SCP listens on, which makes it a C-MOVE destination. The DICOM gateway enforces it
    (``devices.dicom.access.caller_policy`` reads these models)."""

    hosts: list[str] = Field(default_factory=list)
    operations: list[DicomOperation] = Field(default_factory=_default_operations)
    port: int | None = Field(None, ge=1, le=65535)


@dataclass(frozen=True)
class FacilityAllowlist:
    """MSH-4 sending facilities (namespace id, the first component) that may send HL7."""

    facilities: frozenset[str]

    def allows(self, sending_facility: str) -> bool:
        """``sending_facility`` as MSH-4 carries it (``HIS^1.2.3^ISO`` or ``HIS``)."""
        namespace = sending_facility.split("^", 1)[0].strip()
        return namespace in self.facilities


def facility_allowlist(setting: tuple[str, ...] | None) -> FacilityAllowlist | None:
    """None when unset or empty (every facility accepted)."""
    if not setting:
        return None
    return FacilityAllowlist(frozenset(f.strip() for f in setting if f.strip()))
