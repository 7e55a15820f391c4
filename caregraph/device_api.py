"""``GET /devices/health``: what a biomedical engineer checks first (one router).

Live figures (connected, last frame, frames/s, checksum errors, reconnects, silence) come
from the ``HealthBoard`` the serial role of this process fills every few seconds; the open
silence alerts come from the store (``DetectedIssue``, see ``adapters.registry.alerts``), so
a process that runs ``api`` without ``serial`` still shows them. Mount it with
``app.include_router(build_device_router(ctx.store, health_board(ctx), authorize))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends

from adapters.registry.alerts import ALERT_SYSTEM, OPEN, SILENT
from caregraph.device_registry import HealthBoard, all_resources
from fhir_store.store import FhirStore


def open_alerts(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open silence issues among ``resources``, newest first."""
    out = []
    for r in resources:
        codes = r.get("code", {}).get("coding", [])
        if r.get("status") == OPEN and any(
            c.get("system") == ALERT_SYSTEM and c.get("code") == SILENT for c in codes
        ):
            ident = (r.get("implicated") or [{}])[0].get("identifier") or {}
            out.append(
                {
                    "issue": f"DetectedIssue/{r['id']}",
                    "device_id": ident.get("value"),
                    "since": r.get("identifiedPeriod", {}).get("start"),
                    "detail": r.get("detail"),
                }
            )
    return sorted(out, key=lambda a: str(a["since"]), reverse=True)


def build_device_router(
    store: FhirStore, board: HealthBoard, authorize: Callable[..., Any], *, prefix: str = "/devices"
) -> APIRouter:
    """The ``/devices`` router; every route depends on ``authorize``."""
    router = APIRouter(prefix=prefix, tags=["devices"], dependencies=[Depends(authorize)])

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Per served device: connection, last frame, frames/s, errors, silence, alert."""
        rows, problems, updated, running = board.snapshot()
        return {
            "serial_role": running,
            "updated_at": updated.isoformat() if updated else None,
            "devices": [r.as_json() for r in rows],
            "not_served": [
                {"device_id": p.device_id, "resource": p.resource, "reason": p.reason}
                for p in problems
            ],
            "alerts": open_alerts(list(all_resources(store, "DetectedIssue"))),
        }

    return router
