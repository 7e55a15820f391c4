"""What every device simulator shares: a thread speaking the device side of a protocol over
a ``PtyPort``, a device clock that can drift, plausible vital signs, and fault injection.

Faults are requested through ``Faults`` from any thread; the simulator applies each one to
the next frame(s) it sends and records what it did, so tests can check that the driver
counted every fault and stored no wrong value.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from devices.simulators.pty import PtyPort

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Pending faults; the counters say how many of the next frames get each one."""

    corrupt_checksum: int = 0
    drop_bytes: int = 0
    garbage: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    silent_until: float = 0.0
    unplugged_until: float = 0.0
    drift_s_per_s: float = 0.0

    def take(self, name: str) -> bool:
        """Consume one pending fault called ``name``; ``True`` if there was one."""
        with self._lock:
            pending = int(getattr(self, name))
            if pending <= 0:
                return False
            setattr(self, name, pending - 1)
            return True

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            setattr(self, name, int(getattr(self, name)) + count)


@dataclass
class SimulatorLog:
    """What the simulator did, for tests: values sent intact, faults applied."""

    frames_sent: int = 0
    corrupted: int = 0
    dropped: int = 0
    garbage: int = 0
    unplugs: int = 0
    silences: int = 0
    values: list[tuple[str, Decimal]] = field(default_factory=list)
    # Values whose last frame went out intact but whose acknowledgement never came back (the
    # link was reset first): the receiver may or may not have stored them.
    unconfirmed: list[tuple[str, Decimal]] = field(default_factory=list)
    handshakes: int = 0


class DeviceClock:
    """The device's own clock: starts at the host time plus ``offset`` and may drift."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._t0 = time.monotonic()
        self._wall0 = datetime.now(UTC) + offset
        self._drift_base = 0.0
        self._drift_t = self._t0
        self.drift_s_per_s = 0.0

    def set_drift(self, s_per_s: float) -> None:
        now = time.monotonic()
        self._drift_base += (now - self._drift_t) * self.drift_s_per_s
        self._drift_t = now
        self.drift_s_per_s = s_per_s

    def now(self) -> datetime:
        t = time.monotonic()
        drift = self._drift_base + (t - self._drift_t) * self.drift_s_per_s
        return self._wall0 + timedelta(seconds=(t - self._t0) + drift)


class Vitals:
    """Physiologically plausible values: a baseline, slow breathing-like oscillation and a
    bounded random walk, rounded to the device's resolution."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._walk: dict[str, float] = {}

    def value(
        self, name: str, base: float, spread: float, lo: float, hi: float, decimals: int = 0
    ) -> Decimal:
        w = self._walk.get(name, 0.0) + self._rng.uniform(-0.1, 0.1) * spread
        w = max(-spread, min(spread, w))
        self._walk[name] = w
        # crc32, not hash(): str hashes change per process, and a seed must reproduce.
        wave = 0.3 * spread * math.sin(time.monotonic() / 7.0 + zlib.crc32(name.encode()) % 10)
        v = max(lo, min(hi, base + w + wave))
        return Decimal(str(round(v, decimals))) if decimals else Decimal(round(v))


class Simulator(ABC):
    """Runs the device side on ``port`` in a thread until ``stop()``."""

    protocol: str = ""

    def __init__(self, port: PtyPort, *, seed: int = 1, tick_s: float = 0.02) -> None:
        self.port = port
        self.faults = Faults()
        self.log = SimulatorLog()
        self.clock = DeviceClock()
        self.vitals = Vitals(seed)
        self.rng = random.Random(seed + 1)
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.protocol}", daemon=True)

    # -- control (any thread) ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.port.close()

    def unplug(self, seconds: float) -> None:
        """Pull the cable for ``seconds``: the pty goes away and comes back."""
        self.faults.unplugged_until = time.monotonic() + seconds

    def go_silent(self, seconds: float) -> None:
        """Stop answering and sending for ``seconds`` (device hung, port still open)."""
        self.faults.silent_until = time.monotonic() + seconds

    def drift_clock(self, s_per_s: float) -> None:
        self.clock.set_drift(s_per_s)

    # -- for subclasses ------------------------------------------------------------------

    @abstractmethod
    def on_bytes(self, data: bytes) -> None:
        """Bytes the driver sent."""

    @abstractmethod
    def on_tick(self, now: float) -> None:
        """Called every ``tick_s``: send what is due."""

    def on_reset(self) -> None:  # noqa: B027 - optional hook
        """The link was interrupted: forget session state."""

    def send(self, frame: bytes, *, corrupt: bool = False) -> bool:
        """Send a frame, applying pending byte-level faults (drop, garbage); ``True`` if it
        went out whole (garbage before it does not hurt it), i.e. the driver can decode it."""
        data = frame
        intact = not corrupt
        if corrupt:
            self.log.corrupted += 1
        if self.faults.take("garbage"):
            noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(3, 20)))
            data = noise + data
            self.log.garbage += 1
        if self.faults.take("drop_bytes") and len(data) > 4:
            i = self.rng.randrange(1, len(data) - 2)
            data = data[:i] + data[i + 1 :]
            self.log.dropped += 1
            intact = False
        self.log.frames_sent += 1
        return self.port.write(data) and intact

    def send_raw(self, data: bytes) -> bool:
        """Send control bytes untouched by faults."""
        return self.port.write(data)

    @property
    def silent(self) -> bool:
        return time.monotonic() < self.faults.silent_until

    # -- loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        was_silent = False
        while not self._stop.is_set():
            now = time.monotonic()
            if now < self.faults.unplugged_until:
                if self.port.plugged:
                    self.port.unplug()
                    self.log.unplugs += 1
                    self.on_reset()
                self._stop.wait(0.05)
                continue
            if not self.port.plugged:
                self.port.plug()
            data = self.port.read(self.tick_s)
            if self.silent:
                if not was_silent:
                    self.log.silences += 1
                    was_silent = True
                    self.on_reset()
                continue
            was_silent = False
            try:
                if data:
                    self.on_bytes(data)
                self.on_tick(time.monotonic())
            except Exception:  # a simulator bug must not kill the demo; log it loudly
                log.exception("%s simulator failed", self.protocol)
