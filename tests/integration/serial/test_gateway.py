"""SerialGateway: drivers follow configuration changes without a restart; health shows
silence."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE
from devices.serial.gateway import DeviceConnection, SerialGateway
from devices.simulators import start_simulator
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration


def _count(bus: MemoryBus, device_id: str) -> int:
    return sum(1 for m in bus.snapshot(RAW_DEVICE) if m.key == device_id.encode())


def test_apply_starts_stops_and_restarts_drivers(tmp_path: Path) -> None:
    fast = {"poll_interval_s": 0.1, "silence_timeout_s": 1.0, "reconnect_delay_s": 0.1}
    _, mon1 = start_simulator("intellivue", tmp_path / "tty1", seed=1)
    _, mon2 = start_simulator("medibus", tmp_path / "tty2", seed=2)
    _, mon3 = start_simulator("intellivue", tmp_path / "tty3", seed=3)
    bus = MemoryBus()
    gw = SerialGateway(bus, silence_alert_s=0.5)
    a = DeviceConnection("mon-a", "intellivue", str(tmp_path / "tty1"), fast)
    b = DeviceConnection("vent-b", "medibus", str(tmp_path / "tty2"), fast)
    try:
        gw.apply([a, b])
        wait_for(lambda: _count(bus, "mon-a") >= 3 and _count(bus, "vent-b") >= 3, 20, "both")
        assert gw.devices() == ["mon-a", "vent-b"]
        driver_a = gw._running["mon-a"].driver

        # Remove b, move a to another monitor: b stops, a restarts on the new port.
        a2 = DeviceConnection("mon-a", "intellivue", str(tmp_path / "tty3"), fast)
        gw.apply([a2])
        assert gw.devices() == ["mon-a"]
        assert gw._running["mon-a"].driver is not driver_a
        n_b = _count(bus, "vent-b")
        wait_for(lambda: mon3.simulator.polls_answered >= 3, 20, "new port polled")
        assert _count(bus, "vent-b") == n_b  # b really stopped

        # Same configuration again: nothing restarts.
        same = gw._running["mon-a"].driver
        gw.apply([a2])
        assert gw._running["mon-a"].driver is same

        (h,) = gw.health()
        assert h.connected and not h.silent and h.stats["frames"] > 0
        mon3.simulator.go_silent(30)
        later = datetime.now(UTC) + timedelta(seconds=2)
        (h,) = gw.health(later)
        assert h.silent and h.silent_for_s is not None and h.silent_for_s > 0.5

        with pytest.raises(ValueError):
            gw.apply([a2, a2])
        with pytest.raises(ValueError):
            gw.apply([DeviceConnection("x", "carrier-pigeon", "/dev/null")])
        assert gw.devices() == ["mon-a"]  # a bad configuration changes nothing
    finally:
        stop = threading.Event()
        stop.set()
        gw.run(stop)
        for h in (mon1, mon2, mon3):
            h.stop()
    assert gw.devices() == []
