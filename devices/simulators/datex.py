"""A GE Datex-Ohmeda S/5 monitor's computer interface: after a displayed-values request it
sends a physiological record every interval (the request's ``tx_ival`` seconds, or
``interval_s`` when given, for fast tests), until a request with interval 0 stops it.
Now and then a value is a sentinel (NIBP not measured yet, temperature over range, SpO2
not calibrated), as a real monitor does."""

from __future__ import annotations

import time
from decimal import Decimal

from adapters.serial import datex
from devices.simulators.base import Simulator
from devices.simulators.pty import PtyPort

ON = datex.GROUP_EXISTS | datex.GROUP_ACTIVE
GROUPS = {0: ON, 16: ON, 72: ON, 86: ON, 118: ON, 132: ON}


class DatexMonitor(Simulator):
    protocol = "datex"

    def __init__(self, port: PtyPort, *, seed: int = 1, interval_s: float | None = None) -> None:
        super().__init__(port, seed=seed)
        self.interval_override = interval_s
        self._framer = datex.Framer()
        self._interval: float | None = None
        self._next = 0.0
        self._count = 0
        self.requests = 0
        self.absent_sent = 0

    def on_reset(self) -> None:
        self._interval = None
        self._framer = datex.Framer()

    def on_bytes(self, data: bytes) -> None:
        for ev in self._framer.feed(data):
            if not isinstance(ev, datex.Frame):
                continue
            interval = datex.decode_phdb_request(ev.record)
            if interval is None:
                continue
            self.requests += 1
            self.log.handshakes += 1
            if interval <= 0:
                self._interval = None
            else:
                self._interval = self.interval_override or float(interval)
                self._next = time.monotonic()

    def on_tick(self, now: float) -> None:
        if self._interval is None or now < self._next:
            return
        self._next = now + self._interval
        self._count += 1
        v = self.vitals
        values: dict[str, Decimal] = {
            "ecg.hr": v.value("hr", 74, 8, 30, 200),
            "p1.sys": v.value("as", 118, 10, 60, 220, 2),
            "p1.dia": v.value("ad", 70, 6, 30, 120, 2),
            "p1.mean": v.value("am", 86, 6, 40, 150, 2),
            "nibp.sys": v.value("ns", 124, 10, 60, 220),
            "nibp.dia": v.value("nd", 78, 6, 30, 120),
            "nibp.mean": v.value("nm", 93, 6, 40, 150),
            "t1.temp": v.value("t", 36.8, 0.4, 34.0, 41.0, 2),
            "spo2.spo2": v.value("s", 97, 2, 80, 100, 2),
            "spo2.pr": v.value("pr", 74, 8, 30, 200),
            "co2.et": v.value("co2", 5.1, 0.4, 3.0, 8.0, 2),
            "co2.rr": v.value("rr", 14, 3, 6, 40),
        }
        scale = {f.name: f.scale for f in datex.BASIC_FIELDS}
        raw = {k: int(x / scale[k]) for k, x in values.items()}
        absent: list[str] = []
        if self._count % 3 == 0:
            absent += ["nibp.sys", "nibp.dia", "nibp.mean"]
            for k in absent:
                raw[k] = -32766  # DATA_NOT_UPDATED: no cuff measurement yet
        if self._count % 4 == 0:
            raw["t1.temp"] = -32763  # DATA_OVER_RANGE
            raw["spo2.spo2"] = -32762  # DATA_NOT_CALIBRATED
            absent += ["t1.temp", "spo2.spo2"]
        self.absent_sent += len(absent)
        t = int(self.clock.now().timestamp())
        frame = datex.encode_frame(datex.encode_phdb_record(t, raw, GROUPS))
        corrupt = self.faults.take("corrupt_checksum")
        if corrupt:
            # Damage the checksum byte (the one before the closing flag, unless escaped).
            i = len(frame) - 2
            frame = (
                frame[:i]
                + bytes([frame[i] ^ 0x01 if frame[i] not in (0x7F, 0x7C) else 0x00])
                + frame[i + 1 :]
            )
        if self.send(frame, corrupt=corrupt):
            self.log.values.extend((k, x) for k, x in values.items() if k not in absent)
