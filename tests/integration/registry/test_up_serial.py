"""``caregraph up --role serial --role normalizer --role store-writer`` as a real process:
devices registered with ``caregraph device``, read from simulators on ptys, stored with
their patient; a device added while it runs is picked up without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.serial.observation import device_resource_id
from devices.simulators import SimulatorHandle, start_simulator
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from tests.integration.registry.conftest import Cli, wait_for
from tests.support.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def sims() -> Iterator[list[SimulatorHandle]]:
    handles: list[SimulatorHandle] = []
    yield handles
    for h in handles:
        h.stop()


def _count(store: FhirStore, *params: tuple[str, str]) -> int:
    page = store.searching.search("Observation", [*params, ("_summary", "count")])
    return int(page.total or 0)


def test_up_serial_reads_registered_devices(tmp_path: Path, sims: list[SimulatorHandle]) -> None:
    data = tmp_path / "data"
    cli = Cli(f"sqlite:///{data.resolve()}/caregraph.sqlite3")
    first = start_simulator("medibus", seed=3)[1]
    second = start_simulator("astm", seed=4, interval_s=0.3)[1]
    sims.extend([first, second])
    cli("add", "vent-1", "--protocol", "medibus", "--port", first.path,
        "--option", "poll_interval_s=0.3")  # fmt: skip
    db = open_database(cli.db_url)
    store = FhirStore(db)
    store.upsert_many([{"resourceType": "Patient", "id": "p-1"}])
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    cli("attach", "vent-1", "--patient", "Patient/p-1", "--from", since)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "caregraph.cli", "up", "--data-dir", str(data),
         "--role", "serial", "--role", "normalizer", "--role", "store-writer",
         "--http-port", str(free_port())],  # the probes and metrics listen there
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        vent = ("device", f"Device/{device_resource_id('vent-1')}")
        wait_for(lambda: _count(store, vent) >= 3, 60, "ventilator readings in the store")
        assert _count(store, vent, ("subject", "Patient/p-1")) == _count(store, vent)

        cli("add", "lab-1", "--protocol", "astm", "--port", second.path)
        lab = ("device", f"Device/{device_resource_id('lab-1')}")
        wait_for(lambda: _count(store, lab) >= 1, 60, "analyzer results after registration")
        assert _count(store, lab, ("_tag", "urn:caregraph:tag|unassigned")) == _count(store, lab)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        db.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
