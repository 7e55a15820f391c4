"""The serial gateway: one driver thread per configured device, reconfigured live.

The device registry (FHIR Device resources with their connection) is the source of truth;
whoever reads it calls ``apply`` with the full list of connections whenever it changes.
``apply`` starts drivers for new devices, stops drivers of removed ones, and restarts a
driver whose port, protocol or options changed; untouched drivers keep running. ``health``
reports per device what a biomedical engineer needs: connected, last frame, frames,
checksum errors, reconnects, silences, and whether it has been silent too long.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bus.base import Bus
from devices.serial import make_driver
from devices.serial.base import SerialDriver
from devices.serial.port import LineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceConnection:
    """How to reach one device: protocol, port, line settings (``None``: the protocol's
    default, from the driver class), driver options (timeouts and intervals) and the
    identifier system of the patient ids it reports (stamped on its raw messages).

    ``key`` leaves ``patient_id_system`` out: changing it needs no new session, so the
    running driver takes it over without dropping the line (an analyzer mid-transfer)."""

    device_id: str
    protocol: str
    port: str
    options: Mapping[str, Any] = field(default_factory=dict)
    line: LineSettings | None = None
    patient_id_system: str | None = None

    def key(self) -> tuple[str, str, tuple[tuple[str, Any], ...], LineSettings | None]:
        return self.protocol, self.port, tuple(sorted(self.options.items())), self.line


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    protocol: str
    port: str
    connected: bool
    last_frame_at: datetime | None
    silent_for_s: float | None
    silent: bool
    stats: dict[str, object]
    line: LineSettings | None = None  # what the port was opened with


@dataclass
class _Running:
    connection: DeviceConnection
    driver: SerialDriver
    stop: threading.Event
    thread: threading.Thread
    started_at: datetime


class SerialGateway:
    """Runs and reconfigures the drivers of many devices; thread-safe."""

    def __init__(self, bus: Bus, *, silence_alert_s: float = 30.0) -> None:
        self.bus = bus
        self.silence_alert_s = silence_alert_s
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def apply(self, connections: Iterable[DeviceConnection]) -> None:
        """Make the running drivers match ``connections`` (by device id).

        Raises:
            ValueError: two connections for one device, or an unknown protocol (nothing is
                changed then).
        """
        wanted: dict[str, DeviceConnection] = {}
        for c in connections:
            if c.device_id in wanted:
                raise ValueError(f"device {c.device_id!r} is configured twice")
            wanted[c.device_id] = c
        # Build every new driver before stopping anything, so a bad entry changes nothing.
        with self._lock:
            to_start = {
                d: c
                for d, c in wanted.items()
                if d not in self._running or self._running[d].connection.key() != c.key()
            }
            drivers = {
                d: make_driver(c.protocol, c.port, d, self.bus, **dict(c.options))
                for d, c in to_start.items()
            }
            for d, driver in drivers.items():
                line = to_start[d].line
                if line is not None:
                    driver.line_settings = line
                driver.patient_id_system = to_start[d].patient_id_system
            for d, c in wanted.items():
                kept = self._running.get(d)
                if d not in to_start and kept is not None:
                    kept.driver.patient_id_system = c.patient_id_system
                    kept.connection = c
            to_stop = [d for d in self._running if d not in wanted or d in to_start]
            stopped = [self._running.pop(d) for d in to_stop]
        for r in stopped:
            r.stop.set()
        for r in stopped:
            r.thread.join(timeout=10)
            log.info("serial: stopped %s on %s", r.connection.device_id, r.connection.port)
        with self._lock:
            for d, driver in drivers.items():
                stop = threading.Event()
                thread = threading.Thread(
                    target=driver.run, args=(stop,), name=f"serial:{d}", daemon=True
                )
                self._running[d] = _Running(wanted[d], driver, stop, thread, datetime.now(UTC))
                thread.start()
                log.info("serial: started %s (%s) on %s", d, wanted[d].protocol, wanted[d].port)

    def devices(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def health(self, now: datetime | None = None) -> list[DeviceHealth]:
        """One line per device; ``silent`` when no good frame for ``silence_alert_s``."""
        now = now or datetime.now(UTC)
        out = []
        with self._lock:
            running = list(self._running.values())
        for r in running:
            s = r.driver.stats
            since = s.last_frame_at or r.started_at
            silent_for = (now - since).total_seconds()
            out.append(
                DeviceHealth(
                    r.connection.device_id,
                    r.connection.protocol,
                    r.connection.port,
                    s.connected,
                    s.last_frame_at,
                    silent_for,
                    silent_for > self.silence_alert_s,
                    s.snapshot(),
                    r.driver.line_settings,
                )
            )
        return sorted(out, key=lambda h: h.device_id)

    def run(self, stop: threading.Event) -> None:
        """Block until ``stop``, then stop every driver (for ``ThreadService``)."""
        stop.wait()
        self.apply([])
