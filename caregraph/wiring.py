"""The composition root: builds the bus, the database, the store and the MPI from settings.

Nothing here runs at import time; ``caregraph.cli`` calls these once per process, and
``caregraph.roles`` builds each role's service from the ``Context``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from adapters.codes import unmatched
from adapters.hl7v2.handoff import Handoff
from bus.base import Bus
from caregraph.settings import Settings
from fhir_store import database as fhir_store_database
from fhir_store.database import Database
from fhir_store.store import FhirStore
from linkage.graph.store import Graph, MpiIdentity
from linkage.handler import publish_goldens
from linkage.identity import IdentityIndex
from linkage.mpi import Mpi
from linkage.sql import SqlIdentityRepository, SqlRepository
from observability.instrument import MeteredBus
from observability.lag import EmbeddedLag, KafkaLag, LagReader
from observability.metrics import Metrics


def build_bus(settings: Settings) -> Bus:
    """Kafka when ``KAFKA_BOOTSTRAP`` is set, else the embedded durable bus in the data dir."""
    if settings.kafka_bootstrap:
        from bus.kafka import KafkaBus

        return KafkaBus(settings.kafka_bootstrap, partitions=settings.kafka_partitions)
    from bus.embedded import EmbeddedBus

    return EmbeddedBus(settings.data_dir / "bus", partitions=settings.kafka_partitions)


def build_lag(settings: Settings) -> LagReader:
    """Consumer lag for ``/metrics``, from the same bus ``build_bus`` opens; it opens nothing
    until the first scrape, and on Kafka reports the groups this process subscribes."""
    if settings.kafka_bootstrap:
        return KafkaLag(settings.kafka_bootstrap, {})
    from bus.embedded import DB_NAME

    return EmbeddedLag(settings.data_dir / "bus" / DB_NAME)


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database seam for the store, the linkage service and the graph."""
    return fhir_store_database.open_database(settings.effective_database_url, migrate=migrate)


@dataclass(eq=False)  # an identity: roles may key caches by the context they run in
class Context:
    """What the roles of one process share: one bus, one database, built once."""

    settings: Settings
    bus: Bus
    db: Database
    metrics: Metrics = field(default_factory=Metrics)
    lag: LagReader | None = None
    #: The MLLP intake's mappings for the HL7 normalizer, when both run in this process
    #: (``roles.build_services``); None otherwise.
    hl7_handoff: Handoff | None = None
    _closed: bool = field(default=False, init=False)

    @cached_property
    def store(self) -> FhirStore:
        return FhirStore(self.db)

    @cached_property
    def mpi(self) -> Mpi:
        # Golden records go to the store beside their sources, via fhir.Patient.
        return Mpi(SqlRepository.open(self.db), golden_listeners=[publish_goldens(self.bus)])

    @cached_property
    def identity(self) -> IdentityIndex:
        return IdentityIndex(SqlIdentityRepository.open(self.db))

    @cached_property
    def graph(self) -> Graph:
        return Graph.open(self.db, MpiIdentity(self.mpi))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.lag is not None:
                self.lag.close()
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
    metrics = Metrics()
    # Consumer lag per group, topic and partition at each scrape; every group a role
    # subscribes through the metered bus is watched.
    lag = build_lag(settings)
    metrics.watch_lag(lag)
    # Unknown codes the adapters passed through, counted where they found them.
    metrics.watch_unmatched(unmatched.TALLY.snapshot)
    # Every publish of every role is traced and counted (messages out, ACK latency, dead
    # letters).
    metered = MeteredBus(bus, metrics, on_subscribe=lag.watch)
    ctx = Context(settings=settings, bus=metered, db=db, metrics=metrics, lag=lag)
    try:
        bus.ping()
    except BaseException:
        ctx.close()
        raise
    return ctx
