"""OperationOutcome bodies: the one place errors become what a FHIR client understands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from caregraph.errors import StoreUnavailable
from fhir_store.errors import FhirError

FHIR_JSON = "application/fhir+json"


def outcome(
    issues: Sequence[tuple[str | None, str]], code: str, severity: str = "error"
) -> dict[str, Any]:
    """An OperationOutcome with one issue per (element or parameter, why)."""
    entries = []
    for expression, text in issues:
        issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
        if expression:
            issue["expression"] = [expression]
        entries.append(issue)
    return {"resourceType": "OperationOutcome", "issue": entries}


def for_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """HTTP status and OperationOutcome for any error reaching the edge (never a bare 500)."""
    if isinstance(exc, FhirError):
        return exc.status, outcome(exc.issues, exc.code)
    if isinstance(exc, StoreUnavailable):
        return 503, outcome([(None, str(exc))], "transient")
    return 500, outcome([(None, f"internal error: {type(exc).__name__}")], "exception")


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
