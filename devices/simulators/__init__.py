"""Byte-accurate device simulators on pseudo-terminals, for ``caregraph demo``, tests and
benchmarks. ``start_simulator("intellivue")`` returns the port path a driver should open and
a handle whose ``.simulator`` is the running device.

Faults, from any thread: ``sim.faults.add("corrupt_checksum" | "drop_bytes" | "garbage", n)``
(applied to the next n frames), ``sim.unplug(s)`` (the pty goes away: a pulled USB adapter),
``sim.go_silent(s)`` (port open, device mute), ``sim.drift_clock(s_per_s)``. ``sim.log``
records what was sent intact, for checking that no wrong value was stored.

Options per protocol: astm ``interval_s``, ``reply_timeout_s``; intellivue
``association_timeout_s``, ``rel_start_ticks``, ``refuse_first``, ``ext_update_s``,
``flood_bytes_per_s``; datex ``interval_s`` (else the request's); medibus ``keepalive_s``,
``comm_timeout_s``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.simulators.base import Simulator
from devices.simulators.pty import PtyPort

PROTOCOLS = ("astm", "intellivue", "datex", "medibus")


@dataclass
class SimulatorHandle:
    """A running simulator and the path of its port."""

    path: str
    simulator: Simulator
    _tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def stop(self) -> None:
        self.simulator.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


def _make(protocol: str, port: PtyPort, seed: int, options: dict[str, Any]) -> Simulator:
    # Imported here so that importing the package stays cheap and free of side effects.
    if protocol == "astm":
        from devices.simulators.astm import AstmAnalyzer

        return AstmAnalyzer(port, seed=seed, **options)
    if protocol == "intellivue":
        from devices.simulators.intellivue import IntelliVueMonitor

        return IntelliVueMonitor(port, seed=seed, **options)
    if protocol == "datex":
        from devices.simulators.datex import DatexMonitor

        return DatexMonitor(port, seed=seed, **options)
    if protocol == "medibus":
        from devices.simulators.medibus import MedibusVentilator

        return MedibusVentilator(port, seed=seed, **options)
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


def start_simulator(
    protocol: str, path: str | Path | None = None, *, seed: int = 1, **options: Any
) -> tuple[str, SimulatorHandle]:
    """Start a simulator of ``protocol`` on a new pty reachable at ``path`` (a fresh
    temporary path when ``None``); returns ``(path, handle)``. ``options`` go to the
    simulator (e.g. ``interval_s``)."""
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"caregraph-{protocol}-")
        path = Path(tmp.name) / f"tty{protocol.upper()}0"
    port = PtyPort(Path(path))
    sim = _make(protocol, port, seed, options)
    sim.start()
    handle = SimulatorHandle(str(path), sim, tmp)
    return handle.path, handle
