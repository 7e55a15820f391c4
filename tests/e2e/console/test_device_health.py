"""The device list with the serial gateway's live figures (``/devices/health``).

The demo does not mount the ``/devices`` router yet, so this uses the app served in-process
(``served.py``) with ``build_device_router`` over a ``HealthBoard`` the test publishes to,
as the serial role would: one monitor on its line, one whose cable was pulled.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from adapters.serial.observation import device_resource_id
from caregraph.auth import authorize
from caregraph.device_api import build_device_router
from caregraph.device_registry import HealthBoard, HealthRow, Problem
from devices.serial.gateway import DeviceHealth
from tests.e2e.console.conftest import Watched, screenshot
from tests.e2e.console.served import Served

pytestmark = pytest.mark.e2e


def _device(device_id: str, name: str) -> dict[str, object]:
    return {
        "resourceType": "Device",
        "id": device_resource_id(device_id),
        "identifier": [{"system": "urn:caregraph:device", "value": device_id}],
        "status": "active",
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, HealthBoard]]:
    board = HealthBoard()
    with Served(tmp_path, lambda store: [build_device_router(store, board, authorize)]) as s:
        yield s, board


def test_device_list_shows_the_serial_line_and_flags_a_disconnected_monitor(
    served: tuple[Served, HealthBoard], page: Page, watched: Watched
) -> None:
    app, board = served
    now = datetime.now(UTC)
    for device_id, name in (("bed-3-monitor", "Bed 3 monitor"), ("bed-4-monitor", "Bed 4")):
        device = _device(device_id, name)
        app.store.update("Device", str(device["id"]), device)
    on_line = DeviceHealth(
        "bed-3-monitor", "intellivue", "/dev/ttyUSB0", True, now, 0.2, False,
        {"frames": 1200, "checksum_errors": 2, "reconnects": 0},
    )  # fmt: skip
    pulled = DeviceHealth(
        "bed-4-monitor", "datex", "/dev/ttyUSB1", False, now - timedelta(minutes=3), 180.0,
        True, {"frames": 40, "checksum_errors": 0, "reconnects": 5},
    )  # fmt: skip
    board.publish(
        [HealthRow(on_line, 1.5, None), HealthRow(pulled, 0.0, None)],
        [Problem("bed-9-pump", "Device/x", "no protocol configured")],
        now,
    )

    page.goto(app.app_url + "#/devices")
    page.get_by_label("Access token").fill(app.token)
    page.get_by_role("button", name="Sign in").click()
    good = page.locator(f'tr[data-device="{device_resource_id("bed-3-monitor")}"]')
    bad = page.locator(f'tr[data-device="{device_resource_id("bed-4-monitor")}"]')
    expect(good.locator("td").nth(6)).to_have_text("connected · 1.5 frames/s · 2 checksum errors")
    expect(bad.locator("td").nth(6)).to_have_text("disconnected · 0 frames/s · 5 reconnects")
    expect(bad).to_have_attribute("data-state", "silent")
    expect(bad).to_have_class("silent")
    expect(page.get_by_text("Not served by the serial gateway: bed-9-pump")).to_be_visible()
    screenshot(page, "devices-serial-line")
    watched.assert_clean()
