"""A Draeger ventilator speaking Medibus: answers ICC, device id, date/time, measured data
(codepage 1) and current alarms; sends its own NOP every ``keepalive_s`` and lets the
communication lapse when the PC says nothing for ``comm_timeout_s``."""

from __future__ import annotations

import time
from decimal import Decimal

from adapters.serial import medibus as mb
from devices.simulators.base import Simulator
from devices.simulators.pty import PtyPort


class MedibusVentilator(Simulator):
    protocol = "medibus"

    def __init__(
        self,
        port: PtyPort,
        *,
        seed: int = 1,
        keepalive_s: float = 2.0,
        comm_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(port, seed=seed)
        self.keepalive_s = keepalive_s
        self.comm_timeout_s = comm_timeout_s
        self._framer = mb.Framer()
        self._active = False
        self._last_rx = 0.0
        self._next_nop = 0.0
        self._polls = 0
        self.nops_answered = 0
        self.alarms_sent = 0

    def on_reset(self) -> None:
        self._active = False
        self._framer = mb.Framer()

    def on_tick(self, now: float) -> None:
        if self._active and now - self._last_rx > self.comm_timeout_s:
            self._active = False  # the PC went quiet: communication lapses
        if self._active and now >= self._next_nop:
            self._next_nop = now + self.keepalive_s
            self.send_raw(mb.encode_command(mb.NOP))

    def on_bytes(self, data: bytes) -> None:
        for ev in self._framer.feed(data):
            if not isinstance(ev, mb.Message):
                continue
            self._last_rx = time.monotonic()
            if not ev.is_command:
                if ev.cmd == mb.NOP:
                    self.nops_answered += 1
                continue
            self._on_command(ev.cmd)

    def _reply(
        self, cmd: int, data: bytes = b"", values: list[tuple[str, Decimal]] | None = None
    ) -> None:
        frame = mb.encode_response(cmd, data)
        corrupt = self.faults.take("corrupt_checksum")
        if corrupt:
            frame = frame[:-3] + (b"00" if frame[-3:-1] != b"00" else b"01") + b"\r"
        if self.send(frame, corrupt=corrupt) and values:
            self.log.values.extend(values)

    def _on_command(self, cmd: int) -> None:
        if cmd == mb.ICC:
            self._active = True
            self._next_nop = time.monotonic() + self.keepalive_s
            self.log.handshakes += 1
            self.send_raw(mb.encode_response(mb.ICC))
            return
        if not self._active:
            return  # a ventilator ignores everything before ICC
        if cmd == mb.STOP:
            self.send_raw(mb.encode_response(mb.STOP))
            self._active = False
        elif cmd == mb.DEVICE_ID:
            self._reply(cmd, b"0161'Evita4'04.20")
        elif cmd == mb.DATE_TIME:
            self._reply(cmd, mb.encode_datetime(self.clock.now()))
        elif cmd == mb.MEASURED_CP1:
            self._polls += 1
            v = self.vitals
            items = {
                0x7D: v.value("ppeak", 22, 3, 5, 60),
                0x78: v.value("peep", 5, 0.5, 0, 20, 1),
                0x88: v.value("vt", 480, 40, 100, 1200),
                0xB9: v.value("mv", 7.2, 0.8, 1.0, 20.0, 1),
                0xD6: v.value("rr", 14, 2, 4, 40),
                0xF0: v.value("fio2", 40, 2, 21, 100),
                0xE6: v.value("etco2", 38, 3, 20, 60),
            }
            payload = mb.encode_measured([(code, str(x)) for code, x in items.items()])
            self._reply(cmd, payload, [(f"{code:02X}", x) for code, x in items.items()])
        elif cmd == mb.ALARMS_CP1:
            alarms = []
            if self._polls % 4 == 0:
                alarms.append(mb.Alarm(3, 0x9B, "MV high"))
            if self._polls % 6 == 0:
                alarms.append(mb.Alarm(2, 0x28, "etCO2 high"))
            self.alarms_sent += len(alarms)
            self._reply(cmd, mb.encode_alarms(alarms))
        else:
            self._reply(cmd)
