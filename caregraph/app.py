"""The HTTP app: the health probes, plus the routers each role hands in (FHIR, linkage, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

import caregraph
from caregraph.errors import CaregraphError

Probe = Callable[[], None]

_READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["ready", "not ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_READINESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "every dependency answers",
        "content": {"application/json": {"schema": _READINESS_SCHEMA}},
    },
    503: {
        "description": "some dependency does not answer (its check says why)",
        "content": {"application/json": {"schema": _READINESS_SCHEMA}},
    },
}


def create_app(readiness: dict[str, Probe], routers: list[APIRouter] | None = None) -> FastAPI:
    """Build the app. ``readiness`` maps a dependency name to a probe that raises when down."""
    app = FastAPI(title="caregraph", version=caregraph.__version__)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses=_READINESS_RESPONSES)
    def readyz() -> JSONResponse:
        """Ready: every dependency (database, bus) answers; 503 names the ones that do not."""
        checks: dict[str, str] = {}
        for name, probe in readiness.items():
            try:
                probe()
                checks[name] = "ok"
            except CaregraphError as exc:
                checks[name] = str(exc)
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    for router in routers or []:
        app.include_router(router)
    return app
