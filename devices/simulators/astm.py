"""An ASTM E1381/E1394 blood-gas analyzer: every ``interval_s`` it runs a sample and sends
H, P, O, R (pH, pCO2, pO2, Na, K, Glu, Lac) and L records, frame by frame, waiting for each
ACK, retransmitting on NAK (at most 6 times, then EOT), giving up after 15 s without reply.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.serial import astm
from devices.simulators.base import Simulator
from devices.simulators.pty import PtyPort

_TESTS: list[tuple[str, str, float, float, float, float, int]] = [
    # code, unit, base, spread, low, high, decimals
    ("pH", "", 7.40, 0.04, 6.8, 7.8, 2),
    ("pCO2", "mmHg", 40.0, 5.0, 20.0, 80.0, 1),
    ("pO2", "mmHg", 95.0, 10.0, 40.0, 500.0, 0),
    ("Na", "mmol/L", 140.0, 3.0, 120.0, 160.0, 0),
    ("K", "mmol/L", 4.1, 0.4, 2.5, 6.5, 1),
    ("Glu", "mg/dL", 98.0, 15.0, 40.0, 400.0, 0),
    ("Lac", "mmol/L", 1.2, 0.5, 0.3, 10.0, 1),
]


class AstmAnalyzer(Simulator):
    protocol = "astm"

    def __init__(
        self,
        port: PtyPort,
        *,
        interval_s: float = 2.0,
        reply_timeout_s: float = 15.0,
        seed: int = 1,
    ) -> None:
        super().__init__(port, seed=seed)
        self.interval_s = interval_s
        self.reply_timeout_s = reply_timeout_s
        self._next_sample = 0.0
        self._state = "idle"
        self._frames: list[bytes] = []
        self._index = 0
        self._tries = 0
        self._deadline = 0.0
        self._pending_values: list[tuple[str, Decimal]] = []
        self._last_frame_out = False
        self._sample = 0
        self.messages_acked = 0
        self.aborted = 0

    def _build_message(self) -> list[bytes]:
        self._sample += 1
        ts = self.clock.now().strftime("%Y%m%d%H%M%S")
        records = [
            f"H|\\^&|||SIM-BG^1.0^SN0042|||||||P|LIS2-A2|{ts}".encode(),
            f"P|1||PID{1000 + self._sample % 7}||Doe^Jane".encode(),
            f"O|1|SPEC{self._sample:05d}||^^^BG|R|{ts}".encode(),
        ]
        values: list[tuple[str, Decimal]] = []
        for seq, (code, unit, base, spread, lo, hi, dec) in enumerate(_TESTS, start=1):
            v = self.vitals.value(code, base, spread, lo, hi, dec)
            values.append((code, v))
            records.append(f"R|{seq}|^^^{code}|{v}|{unit}||N||F||||{ts}".encode())
        records.append(b"L|1|N")
        self._pending_values = values
        return astm.encode_message(records)

    def _send_current(self) -> None:
        frame = self._frames[self._index]
        if self.faults.take("corrupt_checksum"):
            # Flip the checksum: the receiver must NAK and we send the frame again, intact.
            bad = frame[:-4] + (b"00" if frame[-4:-2] != b"00" else b"01") + b"\r\n"
            self.send(bad, corrupt=True)
        elif self.send(frame) and self._index == len(self._frames) - 1:
            self._last_frame_out = True
        self._deadline = self._now + self.reply_timeout_s

    _now = 0.0

    def on_reset(self) -> None:
        self._unconfirmed()
        self._state = "idle"

    def _unconfirmed(self) -> None:
        """The transfer ends without the last ACK: if that frame went out, it may be stored."""
        if self._state == "frames" and self._last_frame_out:
            self.log.unconfirmed.extend(self._pending_values)

    def on_tick(self, now: float) -> None:
        self._now = now
        if self._state == "idle" and now >= self._next_sample:
            self._frames = self._build_message()
            self._index, self._tries = 0, 0
            self._last_frame_out = False
            self._state = "enq"
            self._deadline = now + self.reply_timeout_s
            self.send_raw(bytes([astm.ENQ]))
        elif self._state != "idle" and now > self._deadline:
            self._unconfirmed()
            self.send_raw(bytes([astm.EOT]))
            self.aborted += 1
            self._finish(now)

    def on_bytes(self, data: bytes) -> None:
        for b in data:
            if self._state == "enq":
                if b == astm.ACK:
                    self.log.handshakes += 1
                    self._state = "frames"
                    self._send_current()
                elif b == astm.NAK:
                    self._finish(self._now, retry_in=1.0)
            elif self._state == "frames":
                if b == astm.ACK:
                    self._index += 1
                    self._tries = 0
                    if self._index == len(self._frames):
                        self.log.values.extend(self._pending_values)
                        self.messages_acked += 1
                        self.send_raw(bytes([astm.EOT]))
                        self._finish(self._now)
                    else:
                        self._send_current()
                elif b == astm.NAK:
                    self._tries += 1
                    if self._tries > 6:
                        self._unconfirmed()
                        self.send_raw(bytes([astm.EOT]))
                        self.aborted += 1
                        self._finish(self._now)
                    else:
                        self._send_current()

    def _finish(self, now: float, retry_in: float | None = None) -> None:
        self._state = "idle"
        self._next_sample = now + (retry_in if retry_in is not None else self.interval_s)
