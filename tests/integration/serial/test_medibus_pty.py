"""Medibus ventilator simulator on a real pty, read by MedibusDriver through pyserial."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devices.serial.medibus import MedibusDriver
from devices.simulators.medibus import MedibusVentilator
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration

FAST = {
    "poll_interval_s": 0.05,
    "keepalive_s": 0.3,
    "response_timeout_s": 0.3,
    "silence_timeout_s": 1.0,
    "reconnect_delay_s": 0.1,
}


def _parts(r: Any) -> tuple[MedibusVentilator, MedibusDriver]:
    return r.sim.simulator, r.driver


def _settle(r: Any) -> None:
    r.sim.simulator.go_silent(60)
    r.stop.set()
    r.thread.join(timeout=5)


def test_measured_data_alarms_and_keepalive(rig: Any) -> None:
    r = rig("medibus", {"keepalive_s": 0.2}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 20, 20, "20 responses")
    wait_for(lambda: sim.nops_answered >= 2, 10, "the ventilator's NOPs answered")
    _settle(r)
    assert driver.device_identity.startswith("0161")
    assert driver.clock_offset_s is not None and abs(driver.clock_offset_s) < 2
    ms = r.measurements()
    assert Counter(r.values()) == Counter(sim.log.values)
    alarms = [m for m in ms if m.text is not None]
    assert len(alarms) == sim.alarms_sent > 0
    assert all(m.device_time is not None for m in ms)
    assert {m.mdc_code for m in ms} >= {151562, 151817, 151976, 151868}


def test_faults_counted_and_communication_restarted(rig: Any) -> None:
    r = rig("medibus", {"comm_timeout_s": 0.5}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 4, 20, "first responses")
    sim.faults.add("corrupt_checksum", 3)
    wait_for(lambda: driver.stats.checksum_errors == 3, 20, "corruptions counted")
    sim.faults.add("drop_bytes", 3)
    sim.faults.add("garbage", 3)
    wait_for(lambda: sim.log.dropped == 3 and sim.log.garbage == 3, 20, "drops applied")
    sim.go_silent(1.5)
    wait_for(lambda: driver.stats.silences >= 1, 10, "silence detected")
    wait_for(lambda: sim.log.handshakes >= 2, 10, "ICC again")
    sim.unplug(0.8)
    wait_for(lambda: driver.stats.reconnects >= 2, 10, "pulled cable noticed")
    published = driver.stats.published
    wait_for(lambda: driver.stats.published >= published + 5, 20, "data after replug")
    _settle(r)
    s = driver.stats
    assert s.checksum_errors + s.framing_errors >= 3 + 3
    assert s.garbage_bytes > 0
    got = Counter(r.values())
    assert not (got - Counter(sim.log.values)), "values stored that were never sent intact"


def test_drifting_clock_is_tracked(rig: Any) -> None:
    r = rig("medibus", {}, clock_every_s=0.3, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.clock_offset_s is not None, 10, "clock read")
    sim.drift_clock(2.0)  # the ventilator's clock runs three times too fast
    wait_for(lambda: driver.clock_offset_s is not None and driver.clock_offset_s > 2, 20, "drift")
    _settle(r)
    latest = max(r.measurements(), key=lambda m: m.received_at)
    assert latest.device_time is not None
    assert (latest.device_time - latest.received_at).total_seconds() > 1
