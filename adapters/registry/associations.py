"""Time-bounded patient attachment: R4 ``DeviceUseStatement`` and the index that resolves
each reading's patient at its device time (pure).

A statement counts for ``[timingPeriod.start, timingPeriod.end)``; no end = still attached.
``entered-in-error`` and ``intended`` statements never count (a mistake, or a plan).
Where periods overlap, the statement that started last wins: the newer attachment is the
engineer's latest word.

The index is built once from all statements (by the composition root, refreshed every few
seconds) and then answers ``subject_at`` with a dict lookup and a bisect, so the device
normalizer resolves a reading's patient without a query.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.ids import deterministic_id
from adapters.registry.timing import instant, parse_instant
from adapters.serial.observation import DEVICE_ID_SYSTEM
from caregraph.errors import MappingError

NOT_COUNTED = frozenset({"entered-in-error", "intended"})


@dataclass(frozen=True, slots=True)
class Attachment:
    """``device_id`` was attached to ``subject`` (a Reference dict) during the period."""

    device_id: str
    subject: Mapping[str, Any]
    start: datetime
    end: datetime | None
    statement_id: str
    status: str = "active"

    def valid_at(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when < self.end)


def attachment_id(device_id: str, subject_ref: str, start: datetime) -> str:
    """Deterministic, so registering the same attachment twice is one statement."""
    return deterministic_id("DeviceUseStatement", device_id, subject_ref, instant(start))


def statement_resource(
    device_id: str,
    device_ref: str,
    subject: Mapping[str, Any],
    start: datetime,
    end: datetime | None,
    recorded: datetime,
) -> dict[str, Any]:
    """The DeviceUseStatement for one attachment.

    Raises:
        MappingError: ``end`` is not after ``start``, or ``subject`` has no reference.
    """
    if end is not None and end <= start:
        raise MappingError(
            f"the attachment ends ({instant(end)}) before it starts ({instant(start)})",
            "DeviceUseStatement.timingPeriod",
        )
    ref = subject.get("reference")
    if not isinstance(ref, str) or not ref:
        raise MappingError("the patient must be a reference", "DeviceUseStatement.subject")
    period = {"start": instant(start)}
    if end is not None:
        period["end"] = instant(end)
    return {
        "resourceType": "DeviceUseStatement",
        "id": attachment_id(device_id, ref, start),
        "status": "active" if end is None or end > recorded else "completed",
        "subject": dict(subject),
        "device": {
            "reference": device_ref,
            "identifier": {"system": DEVICE_ID_SYSTEM, "value": device_id},
        },
        "timingPeriod": period,
        "recordedOn": instant(recorded),
    }


def ended(statement: Mapping[str, Any], end: datetime, recorded: datetime) -> dict[str, Any]:
    """``statement`` closed at ``end`` (an open attachment that a new one replaces)."""
    out = copy.deepcopy(dict(statement))
    out.pop("meta", None)
    out["timingPeriod"] = {**out.get("timingPeriod", {}), "end": instant(end)}
    if out.get("status") == "active" and end <= recorded:
        out["status"] = "completed"
    return out


def attachment_from_statement(
    resource: Mapping[str, Any], device_ids: Mapping[str, str]
) -> Attachment | None:
    """The attachment a stored statement records, or ``None`` if it does not count.

    ``device_ids`` maps ``Device/<id>`` references to device ids (registered Devices);
    a statement may instead name the device by its ``urn:caregraph:device`` identifier.

    Raises:
        MappingError: the statement counts but has no usable device, subject or start.
    """
    if resource.get("status") in NOT_COUNTED:
        return None
    where = f"DeviceUseStatement/{resource.get('id')}"
    device = resource.get("device") or {}
    device_id = device_ids.get(str(device.get("reference")))
    ident = device.get("identifier") or {}
    if device_id is None and ident.get("system") == DEVICE_ID_SYSTEM:
        device_id = ident.get("value")
    if not device_id:
        raise MappingError("the device is neither registered nor identified", f"{where}.device")
    subject = resource.get("subject")
    if not isinstance(subject, Mapping) or not subject.get("reference"):
        raise MappingError("the subject is not a reference", f"{where}.subject")
    period = resource.get("timingPeriod") or {}
    if "start" not in period:
        raise MappingError("an attachment needs timingPeriod.start", f"{where}.timingPeriod")
    start = parse_instant(period["start"], f"{where}.timingPeriod.start")
    end = parse_instant(period["end"], f"{where}.timingPeriod.end") if "end" in period else None
    kept = {k: subject[k] for k in ("reference", "display") if k in subject}
    return Attachment(
        str(device_id), kept, start, end, str(resource.get("id")), resource.get("status", "")
    )


class AssociationIndex:
    """Answers "which patient was device D attached to at time T" without I/O."""

    def __init__(self, attachments: Iterable[Attachment] = ()) -> None:
        by_device: dict[str, list[Attachment]] = {}
        for a in attachments:
            by_device.setdefault(a.device_id, []).append(a)
        self._lists = {d: sorted(v, key=lambda a: a.start) for d, v in by_device.items()}
        self._starts = {d: [a.start for a in v] for d, v in self._lists.items()}

    def __len__(self) -> int:
        return sum(len(v) for v in self._lists.values())

    def attachments(self, device_id: str) -> list[Attachment]:
        return list(self._lists.get(device_id, ()))

    def subject_at(self, device_id: str, when: datetime) -> Mapping[str, Any] | None:
        """The subject Reference valid at ``when``, or ``None`` (unassigned)."""
        items = self._lists.get(device_id)
        if not items:
            return None
        i = bisect.bisect_right(self._starts[device_id], when)
        # Latest start first; an earlier one still counts if its period covers ``when``.
        for a in reversed(items[:i]):
            if a.end is None or when < a.end:
                return a.subject
        return None
