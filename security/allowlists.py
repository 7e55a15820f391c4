"""Who may send to the edge listeners: DICOM calling AE titles and HL7 sending facilities.

The HTTP API authorizes with tokens; DICOM and MLLP peers carry no token, so they are
allowlisted by what their protocol says about them (the calling AE title with the host it
connects from; MSH-4 sending facility), plus TLS where the peer supports it.

Settings (``caregraph.settings``):
    CAREGRAPH_DICOM_ALLOWED_CALLERS='{"CT1": {"hosts": ["10.0.0.5"], "operations": ["store"]}}'
    CAREGRAPH_HL7_ALLOWED_FACILITIES="HIS,LAB"
Unset means "accept any" (one-machine demo); a deployment sets both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

DicomOperation = Literal["echo", "store", "find", "get", "move"]
ALL_OPERATIONS: frozenset[str] = frozenset({"echo", "store", "find", "get", "move"})


def _default_operations() -> list[DicomOperation]:
    return ["echo", "store"]


class DicomCaller(BaseModel):
    """One allowlisted calling AE: the hosts it may connect from (empty: any host) and the
    DIMSE operations it may ask for (C-ECHO always, as a connectivity test)."""

    hosts: list[str] = Field(default_factory=list)
    operations: list[DicomOperation] = Field(default_factory=_default_operations)


@dataclass(frozen=True)
class DicomAllowlist:
    """Calling AE title -> what it may do; built once from the setting."""

    callers: Mapping[str, DicomCaller]

    def gateway_callers(self) -> dict[str, set[str]]:
        """The shape ``DicomGateway(allowed_callers=...)`` takes: AE -> hosts."""
        return {ae.strip(): set(c.hosts) for ae, c in self.callers.items()}

    def allows(self, calling_ae: str, host: str, operation: str) -> bool:
        caller = self.callers.get(calling_ae.strip())
        if caller is None or (caller.hosts and host not in caller.hosts):
            return False
        return operation == "echo" or operation in caller.operations


def dicom_allowlist(setting: Mapping[str, DicomCaller] | None) -> DicomAllowlist | None:
    """None when unset (every caller accepted)."""
    return None if setting is None else DicomAllowlist(dict(setting))


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
