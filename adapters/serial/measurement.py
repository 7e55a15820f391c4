"""The one normalized reading every serial protocol decodes to.

A ``Measurement`` carries what the FHIR mapping and, later, the device registry need: the
device (so the patient can be resolved from the association valid at ``device_time``), the
code in IEEE 11073 MDC and the vendor's own code, the value or why there is none, the unit in
MDC and UCUM, both clocks, and where it came from (message id and position, for deterministic
ids; the raw frame, for replay and audit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit as IEEE 11073 MDC code (``None`` when MDC has none) and UCUM code."""

    ucum: str
    mdc: int | None = None
    display: str = ""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One reading of one device.

    Exactly one of ``value``, ``text`` (a device alarm's phrase) and ``absent_reason`` is
    set. ``absent_reason`` is a code of the FHIR ``data-absent-reason`` system
    (``positive-infinity`` for over range, ``error`` for a sensor not calibrated, ...), so a
    sentinel is never stored as a number.
    """

    device_id: str
    protocol: str
    vendor_code: str
    label: str
    value: Decimal | None
    absent_reason: str | None
    unit: Unit | None
    device_time: datetime | None
    received_at: datetime
    message_id: str
    position: int
    mdc_code: int | None = None
    loinc: str | None = None
    comparator: str | None = None
    status: str = "final"
    category: str = "vital-signs"
    specimen_id: str | None = None
    patient_hint: str | None = None
    # The identifier system ``patient_hint`` belongs to, when the registration says.
    patient_id_system: str | None = None
    text: str | None = None
    raw: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.value, self.absent_reason, self.text))
        if given != 1:
            raise ValueError("a measurement has exactly one of value, text, absent_reason")
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if self.device_time is not None and self.device_time.tzinfo is None:
            raise ValueError("device_time must be timezone-aware")


def local_zone(offset_minutes: int) -> timezone:
    """The fixed zone a device clock is set to (ASTM and Datex times carry no offset)."""
    return timezone(timedelta(minutes=offset_minutes))
