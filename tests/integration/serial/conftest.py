"""Helpers: a simulator on a real pty, the real driver reading it through pyserial."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.serial.measurement import Measurement
from adapters.serial.normalize import measurements_from_message
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE
from devices.serial import make_driver
from devices.serial.base import SerialDriver
from devices.simulators import SimulatorHandle, start_simulator


@dataclass
class Rig:
    bus: MemoryBus
    sim: SimulatorHandle
    driver: SerialDriver
    stop: threading.Event
    thread: threading.Thread

    def measurements(self) -> list[Measurement]:
        out: list[Measurement] = []
        for msg in self.bus.snapshot(RAW_DEVICE):
            out.extend(measurements_from_message(msg))
        return out

    def values(self) -> list[tuple[str, Decimal]]:
        return [(m.vendor_code, m.value) for m in self.measurements() if m.value is not None]


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(protocol: str, sim_options: dict[str, object], **driver_options: object) -> Rig:
        path, handle = start_simulator(
            protocol, tmp_path / f"tty-{protocol}-{len(rigs)}", **sim_options
        )
        bus = MemoryBus(partitions=2)
        driver = make_driver(protocol, path, f"{protocol}-dev-{len(rigs)}", bus, **driver_options)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
        thread.start()
        r = Rig(bus, handle, driver, stop, thread)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.stop.set()
        r.thread.join(timeout=10)
        r.sim.stop()
        assert not r.thread.is_alive(), "driver thread did not stop"
