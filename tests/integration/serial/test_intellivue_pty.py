"""IntelliVue monitor simulator on a real pty, read by IntelliVueDriver through pyserial."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from devices.serial.intellivue import IntelliVueDriver
from devices.simulators.intellivue import IntelliVueMonitor
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration

FAST = {"poll_interval_s": 0.05, "silence_timeout_s": 1.0, "reconnect_delay_s": 0.1}


def _parts(r: Any) -> tuple[IntelliVueMonitor, IntelliVueDriver]:
    return r.sim.simulator, r.driver


def _settle(r: Any) -> None:
    sim, _ = _parts(r)
    sim.go_silent(60)
    r.stop.set()
    r.thread.join(timeout=5)


def _assert_no_wrong_value(r: Any) -> None:
    sim, _ = _parts(r)
    sent = Counter(sim.log.values)
    got = Counter(r.values())
    assert not (got - sent), f"values stored that were never sent intact: {got - sent}"


def test_association_and_polled_numerics(rig: Any) -> None:
    r = rig("intellivue", {}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 10, 20, "10 poll replies")
    _settle(r)
    assert driver.associations == 1 and sim.log.handshakes == 1
    ms = r.measurements()
    codes = {m.mdc_code for m in ms}
    # HR, SpO2, pulse, NIBP s/d/m, ABP s/d/m, resp, temp, etCO2
    assert {147842, 150456, 149530, 150021, 150022, 150023, 150037, 150038, 150039} <= codes
    assert {151562, 150344, 151708} <= codes
    assert any(m.absent_reason == "not-a-number" for m in ms)  # the temperature probe gap
    assert all(m.device_time is not None for m in ms)
    # Device time from relative ticks + MDS anchor: within a second of receipt.
    assert all(abs((m.device_time - m.received_at).total_seconds()) < 1.0 for m in ms)  # type: ignore[operator]
    _assert_no_wrong_value(r)
    assert Counter(r.values()) == Counter(sim.log.values)


def test_faults_are_counted_and_never_stored(rig: Any) -> None:
    r = rig("intellivue", {}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 3, 20, "association")
    sim.faults.add("corrupt_checksum", 4)
    wait_for(lambda: sim.log.corrupted == 4, 20, "corruptions applied")
    wait_for(lambda: driver.stats.checksum_errors == 4, 5, "corruptions counted")
    sim.faults.add("drop_bytes", 4)
    sim.faults.add("garbage", 3)
    wait_for(lambda: sim.log.dropped == 4 and sim.log.garbage == 3, 20, "drops applied")
    published = driver.stats.published
    wait_for(lambda: driver.stats.published >= published + 5, 20, "recovery")
    _settle(r)
    s = driver.stats
    assert s.checksum_errors >= 4
    assert s.checksum_errors + s.framing_errors >= 8
    assert s.garbage_bytes > 0
    _assert_no_wrong_value(r)


def test_silent_monitor_and_pulled_cable_reassociate(rig: Any) -> None:
    r = rig("intellivue", {"association_timeout_s": 0.5}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 3, 20, "association")
    sim.go_silent(1.5)
    wait_for(lambda: driver.stats.silences >= 1, 10, "silence detected")
    wait_for(lambda: driver.associations >= 2, 20, "re-association after silence")
    sim.unplug(0.8)
    wait_for(lambda: driver.stats.reconnects >= 2, 10, "pulled cable noticed")
    wait_for(lambda: driver.associations >= 3, 20, "re-association after replug")
    published = driver.stats.published
    wait_for(lambda: driver.stats.published >= published + 3, 20, "data after replug")
    _settle(r)
    _assert_no_wrong_value(r)


def test_drifting_clock_shows_in_device_time(rig: Any) -> None:
    r = rig("intellivue", {}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 2, 20, "association")
    sim.drift_clock(0.5)  # the monitor's clock runs 50 % fast
    wait_for(
        lambda: driver.clock_offset_s is not None and driver.clock_offset_s > 0.5,
        20,
        "drift visible",
    )
    _settle(r)
    latest = max(r.measurements(), key=lambda m: m.received_at)
    assert latest.device_time is not None
    assert (latest.device_time - latest.received_at).total_seconds() > 0.5
    assert latest.received_at <= datetime.now(UTC)
    _assert_no_wrong_value(r)


def test_relative_time_wrap(rig: Any) -> None:
    r = rig("intellivue", {"rel_start_ticks": 0xFFFFFFFF - 8000 // 2}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: sim.rel_ticks() < 0x10000000, 5, "tick counter to wrap")
    wait_for(lambda: driver.stats.published >= 15, 20, "polls across the wrap")
    _settle(r)
    ms = r.measurements()
    assert all(abs((m.device_time - m.received_at).total_seconds()) < 1.0 for m in ms)  # type: ignore[operator]


def test_refused_association_is_retried(rig: Any) -> None:
    r = rig("intellivue", {"refuse_first": 2}, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 3, 20, "data after two refusals")
    _settle(r)
    assert sim.refusals == 2 and driver.refusals == 2
    assert driver.associations == 1
    _assert_no_wrong_value(r)


def test_extended_poll_pushes_updates(rig: Any) -> None:
    r = rig("intellivue", {"ext_update_s": 0.05}, extended_poll_s=1.0, **FAST)
    sim, driver = _parts(r)
    wait_for(lambda: driver.stats.published >= 40, 20, "40 pushed updates")
    _settle(r)
    assert sim.extended_polls >= 1 and sim.polls_answered == 0
    # One request per second of updates, not one per update.
    assert driver.polls_sent <= driver.stats.published / 5
    _assert_no_wrong_value(r)
    assert Counter(r.values()) == Counter(sim.log.values)
