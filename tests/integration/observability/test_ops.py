"""The ops server on a real loopback socket, probed and scraped with an HTTP client."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from caregraph.errors import StoreUnavailable
from observability.metrics import Metrics
from observability.ops import OpsServer

pytestmark = pytest.mark.integration


class Database:
    up = True

    def ping(self) -> None:
        if not self.up:
            raise StoreUnavailable("cannot reach PostgreSQL at\n db:5432")


@pytest.fixture
def database() -> Database:
    return Database()


@pytest.fixture
def ops(database: Database) -> Iterator[OpsServer]:
    server = OpsServer("127.0.0.1", 0, {"database": database.ping, "bus": lambda: None}, Metrics())
    server.start()
    yield server
    server.stop()


def url(ops: OpsServer, path: str) -> str:
    return f"http://127.0.0.1:{ops.port}{path}"


def test_healthz_and_unknown_paths(ops: OpsServer) -> None:
    assert ops.alive and ops.port > 0
    response = httpx.get(url(ops, "/healthz"))
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert httpx.get(url(ops, "/fhir/Patient")).status_code == 404


def test_readyz_names_the_failing_dependency(ops: OpsServer, database: Database) -> None:
    ready = httpx.get(url(ops, "/readyz"))
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "bus": "ok"}}
    database.up = False
    down = httpx.get(url(ops, "/readyz"))
    assert down.status_code == 503
    assert down.json()["checks"] == {"database": "cannot reach PostgreSQL at db:5432", "bus": "ok"}


def test_metrics_scrape_sees_values_move(ops: OpsServer) -> None:
    def handled() -> float:
        text = httpx.get(url(ops, "/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "caregraph_messages_in_total":
                    return sample.value
        return 0.0

    assert handled() == 0.0
    ops.metrics.record_in("serial/datex", "raw.device", 5)
    assert handled() == 5.0


def test_stop_frees_the_port_and_a_taken_port_fails_start(ops: OpsServer) -> None:
    port = ops.port
    with pytest.raises(OSError):
        OpsServer("127.0.0.1", port, {}, Metrics()).start()
    ops.stop()
    assert not ops.alive
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
