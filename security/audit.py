"""AuditEvents for access decisions, shaped after IHE Basic Audit Log Patterns (BALP).

Who (the user, ``fhirUser`` or the token subject), which client, which patient, what
interaction on what, the outcome, and for break-glass the purpose ``BTG`` (v3 ActReason
"break the glass") with the reason given. A sink writes them (to the FHIR store in caregraph);
a failing sink is logged; only an access that must be audited to be allowed (break-glass)
is refused when its AuditEvent cannot be written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from security.errors import Forbidden
from security.tokens import Principal

log = logging.getLogger(__name__)

AuditSink = Callable[[dict[str, Any]], None]

_ACTIONS = {"c": "C", "r": "R", "u": "U", "d": "D", "s": "E"}
REST_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


@dataclass(frozen=True)
class AccessRecord:
    """One access decision to record."""

    principal: Principal
    method: str
    path: str
    interaction: str
    permission: str | None
    allowed: bool
    reason: str
    patient: str | None = None
    target: str | None = None
    break_glass: str | None = None
    client_address: str | None = None
    status: int | None = None  # the HTTP status answered, when the request was let through


def audit_event(record: AccessRecord, now: datetime | None = None) -> dict[str, Any]:
    """The AuditEvent resource (R4) for one access decision."""
    p = record.principal
    who: dict[str, Any] = (
        {"reference": p.fhir_user}
        if p.fhir_user
        else {"identifier": {"system": "urn:caregraph:subject", "value": p.subject}}
    )
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                    "display": "information recipient",
                }
            ]
        },
        "who": who,
        "requestor": True,
    }
    if p.client_id:
        agent["altId"] = p.client_id
    if record.client_address:
        agent["network"] = {"address": record.client_address, "type": "2"}
    entities: list[dict[str, Any]] = []
    if record.patient:
        entities.append(
            {
                "what": {"reference": f"Patient/{record.patient}"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    if record.target:
        entities.append({"what": {"reference": record.target}, "description": record.path})
    else:
        entities.append({"description": f"{record.method} {record.path}"})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": _subtype(record)}
        ],
        "action": _ACTIONS.get(record.permission or "", "E"),
        "recorded": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "outcome": _outcome(record),
        "outcomeDesc": record.reason,
        "agent": [agent],
        "source": {"observer": {"display": "caregraph"}},
        "entity": entities,
    }
    if record.break_glass:
        event["purposeOfEvent"] = [
            {
                "coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}],
                "text": record.break_glass,
            }
        ]
        event["meta"] = {"security": [{"system": ACT_REASON, "code": "BTG"}]}
    return event


def _outcome(record: AccessRecord) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (refused, 4xx), 8 serious (5xx)."""
    if not record.allowed or (record.status is not None and 400 <= record.status < 500):
        return "4"
    if record.status is not None and record.status >= 500:
        return "8"
    return "0"


def _subtype(record: AccessRecord) -> str:
    return {
        "search-type": "search-type",
        "history-system": "history-system",
        "history-type": "history-type",
        "history-instance": "history-instance",
        "transaction": "transaction",
        "capabilities": "capabilities",
    }.get(record.interaction, record.interaction if record.interaction in _REST else "operation")


_REST = frozenset({"read", "vread", "update", "patch", "delete", "create"})


class Auditor:
    """Builds and writes AuditEvents."""

    def __init__(self, sink: AuditSink | None) -> None:
        self._sink = sink

    def record(self, record: AccessRecord, *, required: bool = False) -> dict[str, Any]:
        """Write the event; a sink failure is logged and the request goes on, unless
        ``required``.

        Raises:
            Forbidden: ``required`` and the event could not be written.
        """
        event = audit_event(record)
        if self._sink is None:
            if required:
                raise Forbidden("this access must be audited and no audit log is configured")
            return event
        try:
            self._sink(event)
        except Exception as exc:
            log.exception("could not write the AuditEvent for %s", record.path)
            if required:
                raise Forbidden("this access must be audited and the audit log failed") from exc
        return event
