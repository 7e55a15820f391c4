"""One service per role. Each builder takes the shared ``Context`` and returns a ``Service``.

Consumer roles run ``bus.worker.run_consumer`` on a thread; their group names are fixed,
so several processes with the same role share the partitions of their topics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from adapters.dicom.normalize import DicomNormalizer
from adapters.hl7v2.handoff import Handoff
from adapters.hl7v2.normalizer import ACK_HL7V2, Hl7v2Normalizer
from bus import DEADLETTER, RAW_DEVICE, RAW_DICOM, RAW_HL7V2, Message, Record, fhir_topic
from bus.headers import make_headers
from bus.topics import RAW_DEVICE_REJECTED
from bus.worker import BATCH_SIZE, Handler, WorkerStats, run_consumer
from caregraph import security_wiring
from caregraph.app import create_app
from caregraph.auth import actor, authorize
from caregraph.backpressure import BacklogGate, StoreWriterBacklog
from caregraph.device_api import TRAIL_GROUP, TRAIL_TOPICS, build_device_router, device_trail
from caregraph.device_registry import build_resolver, build_serial_role, health_board
from caregraph.errors import ConfigError
from caregraph.patient_hints import PatientHints
from caregraph.preflight import ensure_port_free, is_loopback
from caregraph.runtime import Service, ThreadService
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from caregraph.wiring import Context
from console import SignInOptions, SmartClient, build_console_router
from console import public_paths as console_public_paths
from devices.dicom.scp import DicomGateway
from devices.mllp.dedup import AckCache
from devices.mllp.listener import MllpListener
from devices.mllp.returns import ReturnChannel, parse_routes
from devices.serial.normalizer import normalize_batch as normalize_device_batch
from fhir_store.api import build_router
from fhir_store.errors import ResourceGone, ResourceNotFound
from fhir_store.records import Stored, WriteListener
from fhir_store.writer import WRITE_BATCH, WRITE_LINGER_S, handle_fhir_batch
from linkage.api import build_router as build_linkage_router
from linkage.graph.api import build_router as build_graph_router
from linkage.graph.handler import GRAPH_TYPES, GraphHandler
from linkage.handler import FHIR_JSON, IDENTITY_TYPES, IdentityHandler, PatientHandler
from linkage.survivorship import is_golden
from messaging.api import build_router as build_messaging_router
from messaging.outbox import Outbox
from messaging.partners import Partners
from observability.instrument import instrument_handler
from observability.metrics import build_metrics_router
from security.allowlists import facility_allowlist

log = logging.getLogger(__name__)


def build_api_app(ctx: Context, partners: Partners, outbox: Outbox) -> FastAPI:
    """The api role's HTTP app, every router behind the authorization middleware, as
    ``ApiService`` serves it (tests build the very same app without uvicorn)."""
    s = ctx.settings
    app = create_app(
        readiness={"database": ctx.db.ping, "bus": ctx.bus.ping},
        # the token router first: SMART discovery lives under /fhir too
        routers=[
            security_wiring.build_token_router(s, ctx.db),
            # before the store's router, whose catch-all would answer Patient/$match
            build_linkage_router(
                ctx.mpi, authorize, identity=ctx.identity, actor_of=actor, store=ctx.store
            ),
            build_graph_router(ctx.graph, authorize),
            build_messaging_router(
                ctx.store,
                ctx.mpi,
                authorize,
                outbox=outbox,
                speaks_for=partners.speaks_for,
                sender=security_wiring.message_sender(s, ctx.store, ctx.mpi, outbox, partners),
            ),
            build_router(ctx.store, authorize, on_written=rest_writes_to_linkage(ctx)),
            build_device_router(ctx.store, health_board(ctx), authorize, trail=device_trail(ctx)),
            build_console_router(sign_in=console_sign_in(s)),
            build_metrics_router(ctx.metrics),
        ],
    )
    guard = security_wiring.build_guard(s, ctx.store, ctx.mpi)
    # /metrics holds counters, never patient data; Prometheus scrapes it without a token
    public = {*console_public_paths(development_sign_in=offers_development_sign_in(s)), "/metrics"}
    security_wiring.install(app, guard, public_paths=public)
    return app


#: What the linkage role consumes from ``fhir.*``, and so what a REST write is published for.
LINKED_TYPES = frozenset({"Patient", *IDENTITY_TYPES, *GRAPH_TYPES})


def rest_writes_to_linkage(ctx: Context) -> WriteListener:
    """Resources written over REST, published on their ``fhir.<type>`` topic when the
    linkage role consumes it: Patients are linked, staff, organizations and devices
    identified, and the care graph updated as for the gateways' (the store writer finds
    them unchanged). Golden Patients are the index's own output and deletions are not
    links: neither goes."""

    def publish(written: list[Stored]) -> None:
        records = []
        for stored in written:
            if stored.type not in LINKED_TYPES or stored.deleted:
                continue
            if stored.type == "Patient" and is_golden(stored.resource()):
                continue
            message_id = f"rest:{stored.type}/{stored.id}/_history/{stored.version}"
            records.append(
                Record(
                    fhir_topic(stored.type),
                    stored.content.encode(),
                    stored.id.encode(),
                    make_headers("caregraph:api", message_id, FHIR_JSON),
                )
            )
        if records:
            ctx.bus.publish_many(records)

    return publish


def offers_development_sign_in(s: Settings) -> bool:
    """The development sign-in mints a token for whoever asks: only in development auth
    mode and only on loopback, even when ``--insecure`` lets the api listen elsewhere."""
    return s.auth_mode == "development" and is_loopback(s.http_host)


def console_sign_in(s: Settings) -> SignInOptions:
    """The console's sign-in: a development sign-in that mints caregraph's own tokens
    (``offers_development_sign_in``), or SMART authorization code with PKCE against the
    hospital's authorization server (jwks mode; what is not configured is shown on the
    page). Development mode off loopback offers only the token form."""
    if offers_development_sign_in(s):

        def mint(scope: str, subject: str, patient: str | None) -> str:
            return mint_development_token(s, scope, subject=subject, patient=patient)

        return SignInOptions(mint=mint)
    if s.auth_mode == "development":
        return SignInOptions()
    issuer = s.auth_jwks_issuer
    smart = (
        SmartClient(
            issuer,
            authorization_endpoint=s.console_authorization_endpoint,
            token_endpoint=s.console_token_endpoint,
            client_id=s.console_client_id,
        )
        if issuer
        else None
    )
    return SignInOptions(smart=smart, issuer=issuer)


class ApiService:
    """uvicorn serving the FastAPI app on a thread, and the delivery of partner messages.

    Delivery is part of this role, not a role of its own: the api already holds messaging
    (``$process-message`` in, ``$outbox-status``), the outbox is a database table, not a
    topic, so delivery needs no consumer group, and several api processes deliver side by
    side safely (outbox claims are disjoint). It runs only when partners are configured
    (``CAREGRAPH_PARTNERS_FILE``), as a thread beside uvicorn.
    """

    name = "api"

    def __init__(self, ctx: Context) -> None:
        s = ctx.settings
        ensure_port_free(s.http_host, s.http_port, "CAREGRAPH_HTTP_PORT", "--http-port")
        partners = security_wiring.partners(s)
        outbox = Outbox.open(ctx.db)
        app = build_api_app(ctx, partners, outbox)
        cert, key = security_wiring.https_files(s) or (None, None)
        config = uvicorn.Config(
            app,
            host=s.http_host,
            port=s.http_port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        self._server = uvicorn.Server(config)
        self._thread = ThreadService("api", lambda stop: self._server.run())
        self._delivery = (
            ThreadService("delivery", partners.worker(outbox, idle_s=s.outbox_poll_s))
            if len(partners)
            else None
        )

    def start(self) -> None:
        self._thread.start()
        if self._delivery is not None:
            self._delivery.start()

    def stop(self) -> None:
        if self._delivery is not None:
            self._delivery.stop()
        self._server.should_exit = True
        self._thread.stop()

    @property
    def alive(self) -> bool:
        delivering = self._delivery is None or self._delivery.alive
        return self._thread.alive and delivering


def consumer_service(
    ctx: Context,
    name: str,
    group: str,
    topics: Sequence[str],
    handler: Handler,
    *,
    linger_s: float = 0.0,
    batch_size: int = BATCH_SIZE,
) -> Service:
    """A ``run_consumer`` thread whose counters and messages in show up in ``/metrics``."""
    stats = WorkerStats()
    ctx.metrics.watch_worker(group, stats)
    metered = instrument_handler(handler, ctx.metrics)

    def run(stop: threading.Event) -> None:
        run_consumer(
            ctx.bus,
            group,
            topics,
            metered,
            stop=stop,
            stats=stats,
            linger_s=linger_s,
            batch_size=batch_size,
        )

    return ThreadService(name, run)


def publishing(ctx: Context, translate: Callable[[list[Message]], list[Record]]) -> Handler:
    """A handler that publishes what ``translate`` makes of a batch, durably, then returns
    (so the batch is committed only after its output is on the bus)."""

    def handle(messages: list[Message]) -> None:
        records = translate(messages)
        if records:
            ctx.bus.publish_many(records)

    return handle


class ServiceGroup:
    """Several services started and stopped as one role."""

    def __init__(self, name: str, members: Sequence[Service]) -> None:
        self.name = name
        self.members = list(members)

    def start(self) -> None:
        for member in self.members:
            member.start()

    def stop(self) -> None:
        for member in reversed(self.members):
            member.stop()

    @property
    def alive(self) -> bool:
        return all(getattr(m, "alive", True) for m in self.members)


def normalizers(ctx: Context) -> dict[str, tuple[str, Handler]]:
    """Per raw topic, its consumer group and the handler that publishes its FHIR records."""

    def study(study_id: str) -> dict[str, Any] | None:
        try:
            return ctx.store.read("ImagingStudy", study_id).resource()
        except (ResourceNotFound, ResourceGone):
            return None

    # Each reading's patient: the id the device reported (lab analyzers), else the
    # attachment valid at its device time, from a cached index.
    resolver = build_resolver(ctx)
    hints = PatientHints(ctx.store)

    def device_handler(batch: list[Message]) -> None:
        normalize_device_batch(ctx.bus, batch, "normalizer-device", resolver, hints)

    dicom = DicomNormalizer(lookup=study)
    hl7 = Hl7v2Normalizer(
        ctx.bus,
        group="normalizer-hl7v2",
        application_acks=bool(parse_routes(ctx.settings.hl7_ack_routes)),
        handoff=ctx.hl7_handoff,
    )
    return {
        RAW_HL7V2: (hl7.group, hl7),
        RAW_DICOM: ("normalizer-dicom", publishing(ctx, dicom.normalize)),
        RAW_DEVICE: ("normalizer-device", device_handler),
    }


def _normalizer(ctx: Context) -> Service:
    """raw.* -> fhir.*: one consumer group per raw topic, so each scales on its own."""
    return ServiceGroup(
        "normalizer",
        [
            consumer_service(ctx, f"normalizer:{topic}", group, [topic], handler)
            for topic, (group, handler) in normalizers(ctx).items()
        ],
    )


def _mllp(ctx: Context) -> Service:
    s = ctx.settings
    ensure_port_free(s.http_host, s.mllp_port, "CAREGRAPH_MLLP_PORT", "--mllp-port")
    cache = AckCache(path=s.data_dir / "mllp-acks.sqlite3")
    facilities = facility_allowlist(s.hl7_allowed_facilities)
    gate = BacklogGate(StoreWriterBacklog(s), s.mllp_hold_backlog) if s.mllp_hold_backlog else None
    listener = MllpListener(
        s.http_host,
        s.mllp_port,
        ctx.bus,
        ack_cache=cache,
        tls=security_wiring.mllp_tls(s),
        allow_facility=facilities.allows if facilities else None,
        map_content=s.hl7_intake == "full",
        handoff=ctx.hl7_handoff,
        admit=gate.admit if gate else None,
    )
    ctx.metrics.watch_listener("mllp", listener.stats)
    gateway: Service = StartStop("mllp", listener.start, listener.stop)
    if gate is not None:
        # stopped first (a group stops in reverse): the held ACKs go before the listener
        # closes their connections
        gateway = ServiceGroup("mllp", [gateway, gate])
    routes = parse_routes(s.hl7_ack_routes)
    if not routes:
        return gateway
    # enhanced mode: application ACKs go to each sender's own return address
    returns = ReturnChannel(
        ctx.bus,
        routes,
        delivered=AckCache(path=s.data_dir / "mllp-returns.sqlite3"),
        tls=security_wiring.mllp_return_tls(s),
    )
    return ServiceGroup(
        "mllp",
        [gateway, consumer_service(ctx, "mllp:returns", returns.group, [ACK_HL7V2], returns)],
    )


def _dicom(ctx: Context) -> Service:
    s = ctx.settings
    ensure_port_free(s.http_host, s.dicom_port, "CAREGRAPH_DICOM_PORT", "--dicom-port")

    def studies(params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """C-FIND at study and series level, answered from the stored ImagingStudies."""
        page = ctx.store.searching.search("ImagingStudy", params)
        return [x.resource() for x in (*page.matches, *page.included)]

    gateway = DicomGateway(
        s.data_dir / "dicom",
        ctx.bus,
        ae_title=s.dicom_ae,
        host=s.http_host,
        port=s.dicom_port,
        allowed_callers=s.dicom_allowed_callers,
        study_search=studies,
    )
    return StartStop("dicom", gateway.start, gateway.stop)


@dataclass
class StartStop:
    """A component that already runs its own threads behind ``start``/``stop``."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


def _serial(ctx: Context) -> Service:
    board = health_board(ctx)
    ctx.metrics.watch_silent_devices(lambda: sum(r.health.silent for r in board.snapshot()[0]))
    return build_serial_role(ctx)


def _store_writer(ctx: Context) -> Service:
    topics = [fhir_topic(t) for t in ctx.store.registry.types]
    write = handle_fhir_batch(ctx.store)

    def timed(batch: list[Message]) -> None:
        with ctx.metrics.time_db_write("fhir-batch"):
            write(batch)

    # the last raw frames and dead letters of each device, for the console's device page
    trail = consumer_service(
        ctx, "device-trail", TRAIL_GROUP, list(TRAIL_TOPICS), device_trail(ctx).record
    )
    return ServiceGroup(
        "store-writer",
        [
            consumer_service(
                ctx,
                "store-writer",
                "store-writer",
                topics,
                timed,
                linger_s=WRITE_LINGER_S,
                batch_size=WRITE_BATCH,
            ),
            trail,
        ],
    )


def _linkage(ctx: Context) -> Service:
    """The patient index, staff/organization/device identity and the care graph."""
    patients = [fhir_topic("Patient"), fhir_topic("Parameters")]  # Parameters: A40 merges
    return ServiceGroup(
        "linkage",
        [
            consumer_service(ctx, "linkage:mpi", "linkage", patients, PatientHandler(ctx.mpi)),
            consumer_service(
                ctx,
                "linkage:identity",
                "linkage-identity",
                [fhir_topic(t) for t in IDENTITY_TYPES],
                IdentityHandler(ctx.identity),
            ),
            consumer_service(
                ctx,
                "linkage:graph",
                "linkage-graph",
                [fhir_topic(t) for t in GRAPH_TYPES],
                GraphHandler(ctx.graph),
                # a transaction per batch on the store's database, between the store
                # writer's: batches of 500 fell behind the writer's of 5,000
                batch_size=WRITE_BATCH,
            ),
        ],
    )


ROLE_BUILDERS: dict[str, Callable[[Context], Service]] = {
    "api": ApiService,
    "mllp": _mllp,
    "dicom": _dicom,
    "serial": _serial,
    "normalizer": _normalizer,
    "store-writer": _store_writer,
    "linkage": _linkage,
}
AVAILABLE_ROLES = tuple(ROLE_BUILDERS)


def all_topics(ctx: Context) -> list[str]:
    """Every topic the roles use, so they exist before anyone subscribes."""
    fhir = {fhir_topic(t) for t in (*ctx.store.registry.types, *GRAPH_TYPES, "Parameters")}
    raw = [RAW_HL7V2, RAW_DICOM, RAW_DEVICE, RAW_DEVICE_REJECTED]
    return [*raw, DEADLETTER, ACK_HL7V2, *sorted(fhir)]


def build_services(ctx: Context, roles: Sequence[str]) -> list[Service]:
    """One service per role, in the order given; ``ConfigError`` for an unknown role."""
    unknown = [r for r in roles if r not in ROLE_BUILDERS]
    if unknown:
        known = ", ".join(ROLE_BUILDERS)
        raise ConfigError(f"unknown role {unknown[0]!r}; choose from {known}")
    ctx.bus.ensure_topics(all_topics(ctx))
    if "mllp" in roles and "normalizer" in roles:
        ctx.hl7_handoff = Handoff()  # the normalizer takes what the intake mapped
    return [ROLE_BUILDERS[role](ctx) for role in roles]
