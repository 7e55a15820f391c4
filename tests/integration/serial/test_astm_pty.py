"""ASTM analyzer simulator on a real pty, read by AstmDriver through pyserial."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.serial.normalize import measurements_from_message
from bus.base import Record
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE
from caregraph.errors import BusUnavailable
from devices.serial.astm import AstmDriver
from devices.simulators import start_simulator
from devices.simulators.astm import AstmAnalyzer
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration


def _parts(r: Any) -> tuple[AstmAnalyzer, AstmDriver]:
    return r.sim.simulator, r.driver


def _assert_no_wrong_value(r: Any) -> None:
    sim, _ = _parts(r)
    sent = Counter(sim.log.values)
    got = Counter(r.values())
    # Everything stored was sent intact (acknowledged, or its last frame out when the link
    # was reset before the ACK came back); everything acknowledged is stored.
    extra = got - sent - Counter(sim.log.unconfirmed)
    assert not extra, f"values stored that were never sent: {extra}"
    assert not (sent - got), f"acknowledged values missing: {sent - got}"


def test_results_arrive_as_measurements(rig: Any) -> None:
    r = rig("astm", {"interval_s": 0.2})
    sim, driver = _parts(r)
    wait_for(lambda: sim.messages_acked >= 3, 20, "3 acknowledged messages")
    r.sim.simulator.go_silent(60)  # freeze the analyzer so the log and the bus agree
    wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    ms = r.measurements()
    assert len(ms) == 7 * sim.messages_acked
    assert {m.loinc for m in ms if m.vendor_code == "pH"} == {"2744-1"}
    assert all(m.device_time is not None and m.category == "laboratory" for m in ms)
    _assert_no_wrong_value(r)
    assert driver.stats.checksum_errors == 0


def test_corrupt_dropped_and_garbage_frames_are_nakd_and_resent(rig: Any) -> None:
    r = rig("astm", {"interval_s": 0.2})
    sim, driver = _parts(r)
    sim.faults.add("corrupt_checksum", 3)
    wait_for(lambda: sim.log.corrupted == 3 and sim.messages_acked >= 2, 30, "corruptions")
    assert driver.stats.checksum_errors == 3
    assert driver.stats.naks_sent == 3  # each refused once, then resent intact
    sim.faults.add("drop_bytes", 3)
    sim.faults.add("garbage", 2)
    acked = sim.messages_acked
    wait_for(
        lambda: sim.log.dropped == 3 and sim.log.garbage == 2 and sim.messages_acked > acked + 1,
        30,
        "dropped bytes and garbage applied",
    )
    sim.go_silent(60)
    wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    s = driver.stats
    assert s.naks_sent >= 3 + 3  # every damaged frame was refused
    assert s.garbage_bytes > 0
    _assert_no_wrong_value(r)


def test_pulled_cable_reconnects(rig: Any) -> None:
    # An ENQ sent while the cable is out goes unanswered: the analyzer waits its reply
    # timeout (15 s in E1381; 1 s here) before it bids again.
    r = rig("astm", {"interval_s": 0.2, "reply_timeout_s": 1.0}, reconnect_delay_s=0.1)
    sim, driver = _parts(r)
    wait_for(lambda: sim.messages_acked >= 1, 10, "first message")
    sim.unplug(0.8)
    wait_for(lambda: driver.stats.reconnects >= 1, 10, "driver to notice the pulled cable")
    before = sim.messages_acked
    wait_for(lambda: sim.messages_acked >= before + 2, 20, "messages after replug")
    sim.go_silent(60)
    wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    assert sim.log.unplugs == 1
    _assert_no_wrong_value(r)


def test_aborted_transfer_is_dropped_not_half_stored(rig: Any) -> None:
    r = rig("astm", {"interval_s": 0.2})
    sim, driver = _parts(r)
    wait_for(lambda: sim.messages_acked >= 1, 10, "first message")
    sim.faults.add("corrupt_checksum", 7)  # one frame NAKed 7 times: the analyzer gives up
    wait_for(lambda: sim.aborted >= 1, 20, "the analyzer to abort")
    acked = sim.messages_acked
    wait_for(lambda: sim.messages_acked >= acked + 1, 20, "next message")
    sim.go_silent(60)
    wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    assert driver.abandoned >= 1
    _assert_no_wrong_value(r)


class _FlakyBus(MemoryBus):
    """Refuses the first ``failures`` publishes, as a broker that is briefly down."""

    def __init__(self, failures: int) -> None:
        super().__init__(partitions=1)
        self.failures = failures

    def publish_many(self, records: Sequence[Record]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BusUnavailable("broker down (test)")
        super().publish_many(records)


def test_result_not_durable_is_nakd_and_stored_after_retransmission(tmp_path: Path) -> None:
    path, handle = start_simulator("astm", tmp_path / "tty", interval_s=0.2)
    sim = handle.simulator
    assert isinstance(sim, AstmAnalyzer)
    bus = _FlakyBus(failures=2)
    driver = AstmDriver(path, "bg-flaky", bus)
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: sim.messages_acked >= 2, 20, "messages after the outage")
        sim.go_silent(60)
        wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    finally:
        stop.set()
        thread.join(10)
        handle.stop()
    assert driver.stats.publish_errors == 2
    assert driver.stats.naks_sent >= 2
    stored = [m for msg in bus.snapshot(RAW_DEVICE) for m in measurements_from_message(msg)]
    assert Counter((m.vendor_code, m.value) for m in stored) == Counter(sim.log.values)


def test_drifting_clock_and_silent_analyzer(rig: Any) -> None:
    r = rig("astm", {"interval_s": 0.2})
    sim, driver = _parts(r)
    wait_for(lambda: driver.clock_offset_s is not None, 10, "first header time")
    assert abs(driver.clock_offset_s or 0) < 2
    sim.drift_clock(5.0)  # the analyzer's clock runs six times too fast
    wait_for(lambda: (driver.clock_offset_s or 0) > 3, 20, "drift visible")
    sim.go_silent(1.0)  # between samples an analyzer says nothing: not an error
    acked = sim.messages_acked
    wait_for(lambda: sim.messages_acked >= acked + 2, 20, "messages after the silence")
    sim.go_silent(60)
    wait_for(lambda: driver.messages >= sim.messages_acked, 5, "driver to publish")
    latest = max(r.measurements(), key=lambda m: m.received_at)
    assert latest.device_time is not None
    assert (latest.device_time - latest.received_at).total_seconds() > 3
    assert driver.stats.reconnects == 0
    _assert_no_wrong_value(r)
