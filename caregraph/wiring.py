"""The composition root: builds the bus, the database and each role's service from settings.

Nothing here runs at import time; ``caregraph.cli`` calls these once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn

from bus.base import Bus
from caregraph.app import create_app
from caregraph.errors import ConfigError
from caregraph.preflight import ensure_port_free
from caregraph.runtime import Service, ThreadService
from caregraph.settings import Settings
from fhir_store import database as fhir_store_database
from fhir_store.database import Database

log = logging.getLogger(__name__)


def build_bus(settings: Settings) -> Bus:
    """Kafka when ``KAFKA_BOOTSTRAP`` is set, else the embedded durable bus in the data dir."""
    if settings.kafka_bootstrap:
        from bus.kafka import KafkaBus

        return KafkaBus(settings.kafka_bootstrap, partitions=settings.kafka_partitions)
    from bus.embedded import EmbeddedBus

    return EmbeddedBus(settings.data_dir / "bus", partitions=settings.kafka_partitions)


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database seam for the store, the linkage service and the graph."""
    return fhir_store_database.open_database(settings.effective_database_url, migrate=migrate)


@dataclass
class Context:
    """What the roles of one process share."""

    settings: Settings
    bus: Bus
    db: Database

    def close(self) -> None:
        self.bus.close()
        self.db.close()


def open_context(settings: Settings) -> Context:
    """Open the database (migrating it) and the bus, pinging both so failures come early."""
    db = open_database(settings)
    try:
        db.ping()
        bus = build_bus(settings)
    except BaseException:
        db.close()
        raise
    ctx = Context(settings=settings, bus=bus, db=db)
    try:
        bus.ping()
    except BaseException:
        ctx.close()
        raise
    return ctx


class ApiService:
    """uvicorn serving the FastAPI app on a thread."""

    name = "api"

    def __init__(self, ctx: Context) -> None:
        app = create_app(readiness={"database": ctx.db.ping, "bus": ctx.bus.ping})
        config = uvicorn.Config(
            app,
            host=ctx.settings.http_host,
            port=ctx.settings.http_port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = ThreadService("api", lambda stop: self._server.run())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.stop()


RoleBuilder = Callable[[Context], Service]


def _api(ctx: Context) -> Service:
    s = ctx.settings
    ensure_port_free(s.http_host, s.http_port, "CAREGRAPH_HTTP_PORT", "--http-port")
    return ApiService(ctx)


def _not_built(role: str, issue: int) -> RoleBuilder:
    def build(ctx: Context) -> Service:
        raise ConfigError(f"role {role} is not built yet (issue {issue}); leave it out of --role")

    return build


ROLE_BUILDERS: dict[str, RoleBuilder] = {
    "api": _api,
    "mllp": _not_built("mllp", 4),
    "dicom": _not_built("dicom", 4),
    "serial": _not_built("serial", 5),
    "normalizer": _not_built("normalizer", 4),
    "store-writer": _not_built("store-writer", 3),
    "linkage": _not_built("linkage", 6),
}
AVAILABLE_ROLES = tuple(r for r, b in ROLE_BUILDERS.items() if b.__name__ != "build")


def build_services(ctx: Context, roles: Sequence[str]) -> list[Service]:
    """One service per role, in the order given; ``ConfigError`` for an unknown role."""
    services = []
    for role in roles:
        builder = ROLE_BUILDERS.get(role)
        if builder is None:
            known = ", ".join(ROLE_BUILDERS)
            raise ConfigError(f"unknown role {role!r}; choose from {known}")
        services.append(builder(ctx))
    return services
