"""``--role serial`` end to end: devices registered with the CLI, simulators on real ptys
read by the real drivers, Observations in the store with the patient valid at device time;
the role follows registry changes without a restart; silence raises and clears a
DetectedIssue, visible at ``GET /devices/health``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.observation import Observation

from adapters.registry.alerts import CLEARED, OPEN
from adapters.serial.observation import TAG_SYSTEM, device_resource_id
from caregraph.device_api import build_device_router
from caregraph.errors import StoreUnavailable
from devices.simulators import SimulatorHandle, start_simulator
from devices.simulators.base import DeviceClock
from fhir_store.store import FhirStore
from tests.integration.registry.conftest import Cli, Pipeline, serving_app, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def sims() -> Iterator[Callable[..., SimulatorHandle]]:
    handles: list[SimulatorHandle] = []

    def start(protocol: str, **options: Any) -> SimulatorHandle:
        _, handle = start_simulator(protocol, seed=len(handles) + 1, **options)
        handles.append(handle)
        return handle

    yield start
    for h in handles:
        h.stop()


def _observations(store: FhirStore, *params: tuple[str, str]) -> list[dict[str, Any]]:
    page = store.searching.search("Observation", [*params, ("_count", "1000")])
    return [s.resource() for s in page.matches]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def test_readings_get_the_patient_attached_at_device_time(
    store: FhirStore,
    cli: Cli,
    sims: Callable[..., SimulatorHandle],
    pipeline: Callable[..., Pipeline],
) -> None:
    store.upsert_many(
        [{"resourceType": "Patient", "id": "p-then"}, {"resourceType": "Patient", "id": "p-now"}]
    )
    # The monitor's clock is an hour behind: its readings are about an hour ago.
    late = sims("datex", interval_s=0.2)
    late.simulator.clock = DeviceClock(timedelta(hours=-1))
    lonely = sims("intellivue")
    now = datetime.now(UTC)
    cli("add", "mon-late", "--protocol", "datex", "--port", late.path, "--option", "interval_s=1")
    cli("add", "mon-lonely", "--protocol", "intellivue", "--port", lonely.path,
        "--option", "poll_interval_s=0.2")  # fmt: skip
    # p-then was attached at the device time of the readings; p-now is attached on arrival.
    then_from, then_to = _iso(now - timedelta(hours=3)), _iso(now - timedelta(minutes=30))
    cli("attach", "mon-late", "--patient", "Patient/p-then", "--from", then_from, "--to", then_to)
    cli("attach", "mon-late", "--patient", "Patient/p-now",
        "--from", _iso(now - timedelta(minutes=30)))  # fmt: skip

    p = pipeline(store)
    late_ref = f"Device/{device_resource_id('mon-late')}"
    lonely_ref = f"Device/{device_resource_id('mon-lonely')}"
    wait_for(lambda: len(_observations(store, ("device", late_ref))) >= 5, 30, "5 late readings")
    wait_for(
        lambda: len(_observations(store, ("device", lonely_ref))) >= 5, 30, "5 lonely readings"
    )
    assert sorted(p.role.gateway.devices()) == ["mon-late", "mon-lonely"]

    late_obs = _observations(store, ("device", late_ref))
    for obs in late_obs:
        Observation.model_validate(obs)
        device_time = datetime.fromisoformat(obs["effectiveDateTime"].replace("Z", "+00:00"))
        issued = datetime.fromisoformat(obs["issued"].replace("Z", "+00:00"))
        assert issued - device_time > timedelta(minutes=55)  # device time, not arrival
        assert obs["subject"] == {"reference": "Patient/p-then"}
    assert _observations(store, ("subject", "Patient/p-now")) == []
    assert len(_observations(store, ("subject", "Patient/p-then"))) == len(late_obs)

    lonely_obs = _observations(store, ("device", lonely_ref))
    for obs in lonely_obs:
        Observation.model_validate(obs)
        assert "subject" not in obs
    unassigned = _observations(store, ("_tag", f"{TAG_SYSTEM}|unassigned"))
    assert {o["device"]["reference"] for o in unassigned} == {lonely_ref}
    # The cache reloaded a few times, not once per reading.
    assert 1 <= p.cache.loads < len(late_obs) + len(lonely_obs)


def test_the_role_follows_registry_changes_without_restart(
    sqlite_store: FhirStore,
    sqlite_url: str,
    sims: Callable[..., SimulatorHandle],
    pipeline: Callable[..., Pipeline],
) -> None:
    cli = Cli(sqlite_url)
    store = sqlite_store
    p = pipeline(store, refresh_s=0.2)
    assert p.role.gateway.devices() == []
    first, second = sims("medibus"), sims("medibus")
    cli("add", "vent-1", "--protocol", "medibus", "--port", first.path,
        "--option", "poll_interval_s=0.2")  # fmt: skip
    wait_for(lambda: p.role.gateway.devices() == ["vent-1"], 10, "vent-1 served")
    ref = f"Device/{device_resource_id('vent-1')}"
    wait_for(lambda: len(_observations(store, ("device", ref))) >= 3, 30, "vent-1 readings")

    cli("edit", "vent-1", "--port", second.path, "--baudrate", "9600")
    wait_for(lambda: [h.port for h in p.role.gateway.health()] == [second.path], 10, "new port")
    (moved,) = p.role.gateway.health()
    assert moved.line is not None and moved.line.baudrate == 9600
    before = len(_observations(store, ("device", ref)))
    wait_for(
        lambda: len(_observations(store, ("device", ref))) > before + 2,
        30,
        "readings from the new port",
    )
    assert second.simulator.log, "the second simulator was read"

    # A broken registration is reported, not served, and does not stop the others.
    cli("add", "vent-2", "--protocol", "medibus", "--port", first.path)
    store.upsert_many([_broken_device()])
    wait_for(lambda: len(p.role.board.snapshot()[1]) >= 1, 10, "problem reported")
    _, problems, _, running = p.role.board.snapshot()
    assert running
    assert {pr.device_id for pr in problems} == {"broken-1"}
    wait_for(lambda: sorted(p.role.gateway.devices()) == ["vent-1", "vent-2"], 10, "both served")

    # The database goes away for a while: the drivers keep running, the role keeps trying.
    real = store.searching.search

    def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable("database down")

    store.searching.search = down  # type: ignore[method-assign]
    syncs = p.role.syncs
    time.sleep(1.0)
    assert p.role.alive and p.role.syncs == syncs
    assert sorted(p.role.gateway.devices()) == ["vent-1", "vent-2"]
    store.searching.search = real  # type: ignore[method-assign]
    wait_for(lambda: p.role.syncs > syncs, 10, "sync after the database is back")

    cli("retire", "vent-1")
    cli("retire", "vent-2")
    wait_for(lambda: p.role.gateway.devices() == [], 10, "retired devices stopped")


def _broken_device() -> dict[str, Any]:
    from adapters.registry.device import CONNECTION_URL
    from adapters.serial.observation import DEVICE_ID_SYSTEM

    return {
        "resourceType": "Device",
        "id": "broken-1",
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": "broken-1"}],
        "status": "active",
        "extension": [
            {"url": CONNECTION_URL, "extension": [{"url": "port", "valueString": "/dev/x"}]}
        ],
    }


def test_silence_raises_and_clears_a_detected_issue(
    request: pytest.FixtureRequest,
    sqlite_store: FhirStore,
    sqlite_url: str,
    sims: Callable[..., SimulatorHandle],
    pipeline: Callable[..., Pipeline],
) -> None:
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    cli = Cli(sqlite_url)
    store = sqlite_store
    sim = sims("datex", interval_s=0.1)
    cli("add", "mon-s", "--protocol", "datex", "--port", sim.path, "--option", "interval_s=1")
    p = pipeline(store, silence_alert_s=0.8, refresh_s=0.2)
    app = FastAPI()
    app.include_router(build_device_router(store, p.role.board, lambda: None))
    base = stack.enter_context(serving_app(app))
    client = stack.enter_context(httpx.Client(base_url=base, timeout=10))

    def health() -> dict[str, Any]:
        r = client.get("/devices/health")
        assert r.status_code == 200
        return dict(r.json())

    wait_for(lambda: (health()["devices"] or [{}])[0].get("frames_per_s") or 0 > 0, 15, "frames")
    row = health()["devices"][0]
    assert row["device_id"] == "mon-s" and row["connected"] and not row["silent"]
    assert row["checksum_errors"] == 0 and row["last_frame_at"]
    assert row["line"] == "19200 8E1 RTS/CTS"  # the Datex default, opened as registered

    sim.simulator.faults.add("corrupt_checksum", 3)
    wait_for(lambda: health()["devices"][0]["checksum_errors"] >= 1, 10, "checksum error counted")

    metrics = client.get("/devices/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE caregraph_device_frames_total counter" in metrics.text
    assert (
        'caregraph_device_checksum_errors_total{device="mon-s",protocol="datex"} ' in metrics.text
    )
    assert 'caregraph_device_silent{device="mon-s",protocol="datex"} 0' in metrics.text

    sim.simulator.go_silent(3.0)
    wait_for(lambda: bool(health()["alerts"]), 10, "silence alert")
    view = health()
    (alert,) = view["alerts"]
    assert alert["device_id"] == "mon-s"
    assert view["devices"][0]["silent"] and view["devices"][0]["alert"] == alert["issue"]
    issue = store.read("DetectedIssue", alert["issue"].split("/")[1]).resource()
    assert issue["status"] == OPEN
    assert 'caregraph_device_silent{device="mon-s",protocol="datex"} 1' in (
        client.get("/devices/metrics").text
    )
    assert issue["implicated"][0]["reference"] == f"Device/{device_resource_id('mon-s')}"

    wait_for(lambda: not health()["alerts"], 20, "alert cleared when frames return")
    issue = store.read("DetectedIssue", issue["id"]).resource()
    assert issue["status"] == CLEARED and "end" in issue["identifiedPeriod"]
    assert not health()["devices"][0]["silent"]
    # Frames after the silence are stored too; the stream goes on.
    assert json.dumps(health()["devices"][0]["stats"])
