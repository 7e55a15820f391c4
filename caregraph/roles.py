"""One service per role. Each builder takes the shared ``Context`` and returns a ``Service``.

Consumer roles run ``bus.worker.run_consumer`` on a thread; their group names are fixed,
so several processes with the same role share the partitions of their topics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from adapters.dicom.normalize import DicomNormalizer
from adapters.serial.normalize import observation_records
from bus import DEADLETTER, RAW_DEVICE, RAW_DICOM, RAW_HL7V2, Message, Record, fhir_topic
from bus.worker import Handler, run_consumer
from caregraph.app import create_app
from caregraph.auth import authorize
from caregraph.errors import ConfigError
from caregraph.preflight import ensure_port_free
from caregraph.runtime import Service, ThreadService
from caregraph.wiring import Context
from console import build_console_router
from fhir_store.api import build_router
from fhir_store.errors import ResourceGone, ResourceNotFound
from fhir_store.writer import handle_fhir_batch
from linkage.handler import PatientHandler

log = logging.getLogger(__name__)


class ApiService:
    """uvicorn serving the FastAPI app on a thread."""

    name = "api"

    def __init__(self, ctx: Context) -> None:
        s = ctx.settings
        ensure_port_free(s.http_host, s.http_port, "CAREGRAPH_HTTP_PORT", "--http-port")
        app = create_app(
            readiness={"database": ctx.db.ping, "bus": ctx.bus.ping},
            routers=[build_router(ctx.store, authorize), build_console_router()],
        )
        config = uvicorn.Config(
            app, host=s.http_host, port=s.http_port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = ThreadService("api", lambda stop: self._server.run())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.stop()


def consumer_service(
    ctx: Context, name: str, group: str, topics: Sequence[str], handler: Handler
) -> Service:
    def run(stop: threading.Event) -> None:
        run_consumer(ctx.bus, group, topics, handler, stop=stop)

    return ThreadService(name, run)


def publishing(ctx: Context, translate: Callable[[list[Message]], list[Record]]) -> Handler:
    """A handler that publishes what ``translate`` makes of a batch, durably, then returns
    (so the batch is committed only after its output is on the bus)."""

    def handle(messages: list[Message]) -> None:
        records = translate(messages)
        if records:
            ctx.bus.publish_many(records)

    return handle


def _normalizer(ctx: Context) -> Service:
    from adapters.hl7v2.normalizer import hl7_records

    def study(study_id: str) -> dict[str, Any] | None:
        try:
            return ctx.store.read("ImagingStudy", study_id).resource()
        except (ResourceNotFound, ResourceGone):
            return None

    dicom = DicomNormalizer(lookup=study)
    by_topic: dict[str, Callable[[list[Message]], list[Record]]] = {
        RAW_HL7V2: hl7_records,
        RAW_DICOM: dicom.normalize,
        RAW_DEVICE: lambda batch: [r for m in batch for r in observation_records(m)],
    }

    def translate(messages: list[Message]) -> list[Record]:
        out: list[Record] = []
        for topic, fn in by_topic.items():
            mine = [m for m in messages if m.topic == topic]
            if mine:
                out += fn(mine)
        return out

    return consumer_service(
        ctx, "normalizer", "normalizer", list(by_topic), publishing(ctx, translate)
    )


def _store_writer(ctx: Context) -> Service:
    topics = [fhir_topic(t) for t in ctx.store.registry.types]
    return consumer_service(
        ctx, "store-writer", "store-writer", topics, handle_fhir_batch(ctx.store)
    )


def _linkage(ctx: Context) -> Service:
    handler = PatientHandler(ctx.mpi)
    return consumer_service(ctx, "linkage", "linkage", [fhir_topic("Patient")], handler)


def _not_built(role: str, issue: int) -> Callable[[Context], Service]:
    def build(ctx: Context) -> Service:
        raise ConfigError(f"role {role} is not built yet (issue {issue}); leave it out of --role")

    return build


ROLE_BUILDERS: dict[str, Callable[[Context], Service]] = {
    "api": ApiService,
    "mllp": _not_built("mllp", 4),
    "dicom": _not_built("dicom", 4),
    "serial": _not_built("serial", 5),
    "normalizer": _normalizer,
    "store-writer": _store_writer,
    "linkage": _linkage,
}
AVAILABLE_ROLES = tuple(r for r, b in ROLE_BUILDERS.items() if b.__name__ != "build")


def all_topics(ctx: Context) -> list[str]:
    """Every topic the roles use, so they exist before anyone subscribes."""
    fhir = [fhir_topic(t) for t in ctx.store.registry.types]
    return [RAW_HL7V2, RAW_DICOM, RAW_DEVICE, DEADLETTER, *fhir]


def build_services(ctx: Context, roles: Sequence[str]) -> list[Service]:
    """One service per role, in the order given; ``ConfigError`` for an unknown role."""
    unknown = [r for r in roles if r not in ROLE_BUILDERS]
    if unknown:
        known = ", ".join(ROLE_BUILDERS)
        raise ConfigError(f"unknown role {unknown[0]!r}; choose from {known}")
    ctx.bus.ensure_topics(all_topics(ctx))
    return [ROLE_BUILDERS[role](ctx) for role in roles]
