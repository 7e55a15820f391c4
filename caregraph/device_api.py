"""``GET /devices/health`` (what a biomedical engineer checks first) and
``GET /devices/metrics`` (the same counters for Prometheus): one router.

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
from fastapi.responses import PlainTextResponse

from adapters.registry.alerts import ALERT_SYSTEM, OPEN, SILENT
from caregraph.device_registry import HealthBoard, HealthRow, all_resources
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


# (name, type, help, value of a row): the counters a monitoring system scrapes.
_METRICS: tuple[tuple[str, str, str, Callable[[HealthRow], float | None]], ...] = (
    (
        "caregraph_device_connected",
        "gauge",
        "1 while the port is open",
        lambda r: float(r.health.connected),
    ),
    (
        "caregraph_device_silent",
        "gauge",
        "1 while silent beyond the alert threshold",
        lambda r: float(r.health.silent),
    ),
    (
        "caregraph_device_frames_total",
        "counter",
        "valid frames received",
        lambda r: _stat(r, "frames"),
    ),
    (
        "caregraph_device_checksum_errors_total",
        "counter",
        "frames with a bad checksum",
        lambda r: _stat(r, "checksum_errors"),
    ),
    (
        "caregraph_device_reconnects_total",
        "counter",
        "sessions ended and the port opened again",
        lambda r: _stat(r, "reconnects"),
    ),
    (
        "caregraph_device_last_frame_timestamp_seconds",
        "gauge",
        "Unix time of the last valid frame",
        lambda r: r.health.last_frame_at.timestamp() if r.health.last_frame_at else None,
    ),
    (
        "caregraph_device_frames_per_second",
        "gauge",
        "valid frames per second over the last interval",
        lambda r: r.frames_per_s,
    ),
)


def _stat(row: HealthRow, key: str) -> float | None:
    value = row.health.stats.get(key)
    return float(value) if isinstance(value, int | float) else None


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(rows: list[HealthRow]) -> str:
    """The health rows in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for name, kind, text, value_of in _METRICS:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for row in rows:
            value = value_of(row)
            if value is not None:
                h = row.health
                labels = f'device="{_label(h.device_id)}",protocol="{_label(h.protocol)}"'
                lines.append(f"{name}{{{labels}}} {value:g}")
    return "\n".join(lines) + "\n"


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

    @router.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The same figures for a Prometheus scraper (this process's serial role)."""
        rows, _, _, _ = board.snapshot()
        return PlainTextResponse(
            prometheus_text(rows), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return router
