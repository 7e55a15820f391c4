"""Datex S/5 simulator on a real pty, read by DatexDriver through pyserial."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devices.serial.datex import DatexDriver
from devices.simulators.datex import DatexMonitor
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration

FAST = {"interval_s": 1, "silence_timeout_s": 1.0, "reconnect_delay_s": 0.1}


def _parts(r: Any) -> tuple[DatexMonitor, DatexDriver]:
    return r.sim.simulator, r.driver


def _settle(r: Any) -> None:
    r.sim.simulator.go_silent(60)
    r.stop.set()
    r.thread.join(timeout=5)


def _assert_no_wrong_value(r: Any) -> None:
    sim, _ = _parts(r)
    got = Counter(r.values())
    assert not (got - Counter(sim.log.values)), "values stored that were never sent intact"


def test_displayed_values_with_sentinels(rig: Any) -> None:
    r = rig("datex", {"interval_s": 0.05}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 12, 20, "12 records")
    _settle(r)
    ms = r.measurements()
    assert Counter(r.values()) == Counter(sim.log.values)
    absent = [m for m in ms if m.value is None]
    assert len(absent) == sim.absent_sent
    assert {m.absent_reason for m in absent} == {"temp-unknown", "positive-infinity", "error"}
    assert {m.mdc_code for m in ms} >= {147842, 150021, 150456, 150344, 151708}


def test_faults_counted_silence_and_cable_recovered(rig: Any) -> None:
    r = rig("datex", {"interval_s": 0.05}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 3, 20, "first records")
    sim.faults.add("corrupt_checksum", 3)
    wait_for(lambda: driver.stats.checksum_errors == 3, 20, "corruptions counted")
    sim.faults.add("drop_bytes", 3)
    sim.faults.add("garbage", 3)
    wait_for(lambda: sim.log.dropped == 3 and sim.log.garbage == 3, 20, "drops applied")
    sim.go_silent(1.5)
    wait_for(lambda: driver.stats.silences >= 1, 10, "silence detected")
    wait_for(lambda: driver.requests_sent >= 2, 10, "request sent again")
    sim.unplug(0.8)
    wait_for(lambda: driver.stats.reconnects >= 2, 10, "pulled cable noticed")
    published = driver.stats.published
    wait_for(lambda: driver.stats.published >= published + 5, 20, "data after replug")
    _settle(r)
    s = driver.stats
    assert s.checksum_errors + s.framing_errors >= 3 + 3
    assert s.garbage_bytes > 0
    _assert_no_wrong_value(r)


def test_drifting_clock_shows_in_device_time(rig: Any) -> None:
    r = rig("datex", {"interval_s": 0.05}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.clock_offset_s is not None, 10, "first record")
    sim.drift_clock(3.0)  # the monitor's clock runs four times too fast
    wait_for(
        lambda: driver.clock_offset_s is not None and driver.clock_offset_s > 3, 20, "drift seen"
    )
    _settle(r)
    latest = max(r.measurements(), key=lambda m: m.received_at)
    assert latest.device_time is not None
    assert (latest.device_time - latest.received_at).total_seconds() > 2
