"""Fixtures: a store on SQLite and PostgreSQL, the ``caregraph device`` CLI run in-process
against it, and the device pipeline (serial role, device normalizer with the registry's
patient lookup, store writer) on an in-memory bus."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.serial.normalize import PatientByHint
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE, fhir_topic
from bus.worker import run_consumer
from caregraph.cli import app
from caregraph.device_registry import AssociationCache, HealthBoard, SerialRole
from devices.serial import run_normalizer
from devices.serial.gateway import SerialGateway
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from fhir_store.writer import handle_fhir_batch
from tests.support.services import serve_app


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/registry.sqlite3"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[FhirStore]:
    """A store on SQLite only (tests of timing that need not run twice)."""
    db = open_database(sqlite_url)
    try:
        yield FhirStore(db)
    finally:
        db.close()


@pytest.fixture
def store(db_url: str) -> Iterator[FhirStore]:
    db = open_database(db_url)
    try:
        yield FhirStore(db)
    finally:
        db.close()


@dataclass
class Cli:
    """``caregraph device ...`` against one database, as a user would type it."""

    db_url: str
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        result = self.runner.invoke(app, ["device", *args, "--database-url", self.db_url])
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Pipeline:
    """What ``caregraph up --role serial --role normalizer --role store-writer`` runs for
    devices, on one bus and one store."""

    store: FhirStore
    role: SerialRole
    cache: AssociationCache
    stop: threading.Event
    threads: list[threading.Thread]


@pytest.fixture
def pipeline() -> Iterator[Callable[..., Pipeline]]:
    """Start the device pipeline on a store: ``pipeline(store, silence_alert_s=...)``."""
    started: list[Pipeline] = []

    def start(
        store: FhirStore,
        *,
        silence_alert_s: float = 30.0,
        refresh_s: float = 0.3,
        patient_by_hint: PatientByHint | None = None,
    ) -> Pipeline:
        bus = MemoryBus(partitions=2)
        bus.ensure_topics([RAW_DEVICE, fhir_topic("Observation")])
        gateway = SerialGateway(bus, silence_alert_s=silence_alert_s)
        role = SerialRole(store, gateway, HealthBoard(), refresh_s=refresh_s)
        cache = AssociationCache(store, max_age_s=0.5)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=run_normalizer,
                args=(bus, stop),
                kwargs={"resolver": cache, "patient_by_hint": patient_by_hint},
                daemon=True,
            ),
            threading.Thread(
                target=run_consumer,
                args=(bus, "store-writer", [fhir_topic("Observation")], handle_fhir_batch(store)),
                kwargs={"stop": stop, "poll_timeout_s": 0.1},
                daemon=True,
            ),
        ]
        for t in threads:
            t.start()
        role.start()
        p = Pipeline(store, role, cache, stop, threads)
        started.append(p)
        return p

    yield start
    for p in started:
        p.role.stop()
        p.stop.set()
        for t in p.threads:
            t.join(10)
        assert not any(t.is_alive() for t in p.threads)
        assert p.role.gateway.devices() == []


serving_app = serve_app  # the name the registry tests import
