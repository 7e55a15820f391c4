"""The silence alert on a device, as an R4 ``DetectedIssue`` (pure).

Why DetectedIssue and not Flag: R4 ``Flag.subject`` cannot reference a Device, while
``DetectedIssue.implicated`` takes any resource. One issue per device and silence episode
(the id derives from the device and the start), so the serial role's repeated checks
rewrite the same resource instead of piling up new ones:

- raised: ``status`` ``preliminary`` (still going on), ``identifiedPeriod.start`` = the last
  good frame (or when the gateway started reading a device that never sent one);
- cleared: ``status`` ``final``, ``identifiedPeriod.end`` = when frames returned, and a
  ``mitigation`` saying so.

Search them with ``code=urn:caregraph:device-alert|silent`` (and ``status=preliminary`` for
the open ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.ids import deterministic_id
from adapters.registry.timing import instant
from adapters.serial.observation import DEVICE_ID_SYSTEM

ALERT_SYSTEM = "urn:caregraph:device-alert"
SILENT = "silent"
OPEN = "preliminary"
CLEARED = "final"


def silence_issue_id(device_id: str, since: datetime) -> str:
    return deterministic_id("DetectedIssue", "silent", device_id, instant(since))


def silence_issue(
    device_id: str,
    device_ref: str,
    since: datetime,
    threshold_s: float,
    detected: datetime,
    cleared: datetime | None = None,
) -> dict[str, Any]:
    """The DetectedIssue for one silence of ``device_id`` that began at ``since``."""
    period = {"start": instant(since)}
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": silence_issue_id(device_id, since),
        "status": OPEN if cleared is None else CLEARED,
        "code": {
            "coding": [{"system": ALERT_SYSTEM, "code": SILENT, "display": "Device silent"}],
            "text": "Device silent",
        },
        "severity": "high",
        "implicated": [
            {
                **({"reference": device_ref} if device_ref else {}),
                "identifier": {"system": DEVICE_ID_SYSTEM, "value": device_id},
            }
        ],
        "detail": (
            f"No valid frame from {device_id} for more than {threshold_s:g} s"
            f" (detected {instant(detected)})."
        ),
        "identifiedPeriod": period,
    }
    if cleared is not None:
        period["end"] = instant(cleared)
        issue["mitigation"] = [
            {"action": {"text": "Valid frames arrived again"}, "date": instant(cleared)}
        ]
    return issue
