"""A biomedical engineer sees what a device really sent: its last raw frames (hex and
ASCII), the frames its driver rejected on the line (with the reason) and the dead letters
concerning it, with the error.

Everything between the device and the page is real: a Medibus ventilator simulator on a
pseudo-terminal, the serial gateway reading it, the device normalizer (which dead-letters
the one frame whose items are malformed although its checksum holds), the trail tap
(``run_consumer`` with ``DeviceTrail.record``) on one bus, and the ``/devices`` router with
the trail behind the authorization middleware (``served.py``; the demo does not mount the
trail yet).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from playwright.sync_api import Browser, Page, expect

from adapters.serial import medibus as mb
from adapters.serial.observation import device_resource_id
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, RAW_DEVICE
from bus.worker import run_consumer
from caregraph.auth import authorize
from caregraph.device_api import (
    DEAD,
    FRAME,
    REJECTED,
    TRAIL_GROUP,
    TRAIL_TOPICS,
    DeviceTrail,
    build_device_router,
)
from caregraph.device_registry import HealthBoard
from devices.serial import run_normalizer
from devices.serial.gateway import DeviceConnection, SerialGateway
from devices.simulators.medibus import MedibusVentilator
from devices.simulators.pty import PtyPort
from fhir_store.store import FhirStore
from tests.e2e.console.conftest import Watched, axe_violations, screenshot
from tests.e2e.console.served import Served
from tests.integration.registry.conftest import wait_for

pytestmark = pytest.mark.e2e

DEVICE = "icu-vent-7"


class BadOnce(MedibusVentilator):
    """A ventilator whose next measured-data answer loses its last byte before the
    checksum is computed: a firmware fault the checksum cannot catch."""

    def __init__(self, port: PtyPort, *, seed: int = 1) -> None:
        super().__init__(port, seed=seed)
        self.bad_pending = threading.Event()

    def _reply(self, cmd: int, data: bytes = b"", values: object = None) -> None:
        if cmd == mb.MEASURED_CP1 and self.bad_pending.is_set():
            self.bad_pending.clear()
            data = data[:-1]
        super()._reply(cmd, data, values)  # type: ignore[arg-type]


class Line:
    """The ventilator, the gateway, the normalizer and the trail tap on one bus."""

    def __init__(self, tmp: Path, trail: DeviceTrail) -> None:
        self.trail = trail
        self.bus = MemoryBus(partitions=2)
        self.bus.ensure_topics([RAW_DEVICE, DEADLETTER])
        self.port = PtyPort(tmp / "ttyVENT7")
        self.sim = BadOnce(self.port, seed=7)
        self.gateway = SerialGateway(self.bus)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=run_normalizer, args=(self.bus, self.stop), daemon=True),
            threading.Thread(
                target=run_consumer,
                args=(self.bus, TRAIL_GROUP, TRAIL_TOPICS, trail.record),
                kwargs={"stop": self.stop, "poll_timeout_s": 0.1},
                daemon=True,
            ),
        ]

    def __enter__(self) -> Line:
        self.sim.start()
        for t in self.threads:
            t.start()
        self.gateway.apply([DeviceConnection(DEVICE, "medibus", str(self.port.path), {})])
        return self

    def __exit__(self, *exc: object) -> None:
        self.gateway.apply([])
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.sim.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Line]]:
    trails: list[DeviceTrail] = []

    def routers(store: FhirStore) -> list[APIRouter]:
        trails.append(DeviceTrail.open(store.db))
        return [build_device_router(store, HealthBoard(), authorize, trail=trails[0])]

    with Served(tmp_path, routers) as app, Line(tmp_path, trails[0]) as line:
        device = {
            "resourceType": "Device",
            "id": device_resource_id(DEVICE),
            "identifier": [{"system": "urn:caregraph:device", "value": DEVICE}],
            "status": "active",
            "deviceName": [{"name": "ICU ventilator 7", "type": "user-friendly-name"}],
        }
        app.store.update("Device", str(device["id"]), device)
        yield app, line


def test_engineer_sees_the_raw_frames_and_the_dead_letter_of_a_ventilator(
    served: tuple[Served, Line], page: Page, watched: Watched, browser: Browser
) -> None:
    app, line = served
    wait_for(lambda: len(line.trail.newest(DEVICE, FRAME)) >= 2, 30, "frames on the trail")
    url = app.app_url + f"#/device/{device_resource_id(DEVICE)}"
    page.goto(url)
    page.get_by_label("Access token").fill(app.token)
    page.get_by_role("button", name="Sign in").click()
    card = page.get_by_role("region", name="Raw frames and dead letters")
    frames = card.locator('table[data-kind="frames"] tbody tr')
    expect(frames.first).to_be_visible()
    # Medibus answers as the device sent them: SOH, the echoed command, items, checksum, CR.
    expect(frames.first.locator("pre.ascii")).to_contain_text("<SOH>")
    expect(frames.first.locator("pre.ascii")).to_contain_text("<CR>")
    expect(frames.first.locator("pre.hex")).to_contain_text("01 ")
    expect(card.get_by_text("No dead letters")).to_be_visible()

    line.sim.bad_pending.set()
    wait_for(lambda: bool(line.trail.newest(DEVICE, DEAD)), 30, "the dead letter")
    dead = card.locator('table[data-kind="dead-letters"] tbody tr')
    expect(dead).to_have_count(1, timeout=15_000)  # the page polls: no reload
    expect(dead.first).to_contain_text("WireError")
    expect(dead.first).to_contain_text("6-byte items")
    expect(dead.first).to_contain_text("device-normalizer")
    (letter,) = line.trail.newest(DEVICE, DEAD)
    shown = dead.first.locator("pre.hex").inner_text()
    assert bytes.fromhex("".join(shown.split())) == letter.raw  # every byte, 16 a row
    assert len(shown.splitlines()) == -(-len(letter.raw) // 16)
    screenshot(page, "device-trail")
    watched.assert_clean()

    violations = axe_violations(browser, url, 'table[data-kind="dead-letters"]', app.token)
    assert violations == [], violations


def test_engineer_sees_a_frame_the_driver_rejected_with_its_reason(
    served: tuple[Served, Line], page: Page, watched: Watched
) -> None:
    app, line = served
    wait_for(lambda: len(line.trail.newest(DEVICE, FRAME)) >= 1, 30, "frames on the trail")
    page.goto(app.app_url + f"#/device/{device_resource_id(DEVICE)}")
    page.get_by_label("Access token").fill(app.token)
    page.get_by_role("button", name="Sign in").click()
    card = page.get_by_role("region", name="Raw frames and dead letters")
    expect(card.get_by_text("No rejected frames")).to_be_visible()

    line.sim.faults.add("corrupt_checksum", 1)  # a bad checksum: the driver refuses it
    wait_for(lambda: bool(line.trail.newest(DEVICE, REJECTED)), 30, "the rejected frame")
    rejected = card.locator('table[data-kind="rejected"] tbody tr')
    expect(rejected).to_have_count(1, timeout=15_000)  # the page polls: no reload
    expect(rejected.first).to_contain_text("checksum")
    expect(rejected.first.locator("pre.ascii")).to_contain_text("<SOH>")
    (entry,) = line.trail.newest(DEVICE, REJECTED)
    shown = rejected.first.locator("pre.hex").inner_text()
    assert bytes.fromhex("".join(shown.split())) == entry.raw
    # a refused frame is no dead letter: nothing downstream ever saw it
    expect(card.get_by_text("No dead letters")).to_be_visible()
    watched.assert_clean()
