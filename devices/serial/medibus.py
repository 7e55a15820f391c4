"""Draeger Medibus client.

Session: ICC, then device identification and the device clock (date/time, again every
``clock_every_s`` so a drifting clock is seen), then measured data and current alarms every
``poll_interval_s``; one command outstanding at a time, as Medibus wants. When there is
nothing to ask, NOP keeps the communication alive. Commands the ventilator sends us (its own
NOP, ICC) are answered with an empty response. No good response for ``silence_timeout_s``
restarts the session with ICC.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from adapters.serial import headers as dh
from adapters.serial import medibus as mb
from adapters.serial.errors import WireError
from bus.base import Bus
from devices.serial.base import SerialDriver
from devices.serial.errors import DeviceSilent, LinkLost
from devices.serial.port import LineSettings, Link, monotonic


class MedibusDriver(SerialDriver):
    protocol: ClassVar[str] = mb.PROTOCOL
    content_type: ClassVar[str] = mb.CONTENT_TYPE
    line: ClassVar[LineSettings] = LineSettings(9600, 8, "E", 1)

    def __init__(
        self,
        port: str,
        device_id: str,
        bus: Bus,
        *,
        poll_interval_s: float = 1.0,
        keepalive_s: float = 1.0,
        response_timeout_s: float = 1.0,
        clock_every_s: float = 60.0,
        utc_offset_minutes: int = 0,
        **kwargs: float | None,
    ) -> None:
        kwargs.setdefault("silence_timeout_s", 5.0)
        super().__init__(port, device_id, bus, **kwargs)  # type: ignore[arg-type]
        self.poll_interval_s = poll_interval_s
        self.keepalive_s = keepalive_s
        self.response_timeout_s = response_timeout_s
        self.clock_every_s = clock_every_s
        self.utc_offset_minutes = utc_offset_minutes
        self.device_identity = ""
        self.timeouts = 0
        self.keepalives_answered = 0
        self.commands_sent = 0

    def _device_now(self) -> datetime | None:
        if self.stats.clock_offset_s is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.stats.clock_offset_s)

    def session(self, link: Link, stop: threading.Event) -> None:
        framer = mb.Framer()
        queue: deque[int] = deque([mb.ICC, mb.DEVICE_ID, mb.DATE_TIME])
        outstanding: int | None = None
        sent_at = 0.0
        next_poll = monotonic()
        next_clock = monotonic() + self.clock_every_s
        initialized = False
        while not stop.is_set():
            now = monotonic()
            if outstanding is not None and now - sent_at > self.response_timeout_s:
                self.timeouts += 1
                if outstanding == mb.ICC:
                    raise DeviceSilent("no answer to ICC")
                outstanding = None
            if initialized and now >= next_poll:
                queue.extend([mb.MEASURED_CP1, mb.ALARMS_CP1])
                next_poll = now + self.poll_interval_s
            if initialized and now >= next_clock:
                queue.append(mb.DATE_TIME)
                next_clock = now + self.clock_every_s
            if outstanding is None:
                if not queue and now - sent_at > self.keepalive_s:
                    queue.append(mb.NOP)
                if queue:
                    outstanding = queue.popleft()
                    link.write(mb.encode_command(outstanding))
                    self.commands_sent += 1
                    sent_at = now
            data = link.read()
            quiet = self.line_quiet(data)
            events = framer.feed(data) if data else (framer.expire() if quiet else [])
            if data:
                self.stats.bytes_in += len(data)
            for ev in events:
                if isinstance(ev, mb.Fault):
                    self.rejected(ev.kind, ev.raw)
                elif ev.is_command:
                    # The ventilator is master too: answer its NOP/ICC at once.
                    link.write(mb.encode_response(ev.cmd))
                    self.keepalives_answered += 1
                elif ev.cmd == outstanding:
                    outstanding = None
                    self.good_frame()
                    if ev.cmd == mb.ICC:
                        initialized = True
                    self._on_response(ev)
                else:
                    self.rejected("framing", ev.raw, "an answer to nothing asked")
            self.check_silence()

    def _on_response(self, msg: mb.Message) -> None:
        received = datetime.now(UTC)
        if msg.cmd == mb.DEVICE_ID:
            self.device_identity = msg.data.decode("ascii", "replace").strip()
        elif msg.cmd == mb.DATE_TIME:
            try:
                local = mb.decode_datetime(msg.data)
            except WireError as exc:
                self.rejected("framing", msg.raw, str(exc))
                return
            device = mb.to_utc(local, self.utc_offset_minutes)
            self.stats.clock_offset_s = (device - received).total_seconds()
        elif msg.cmd in (mb.MEASURED_CP1, mb.ALARMS_CP1):
            device_now = self._device_now()
            extra = {dh.DEVICE_TIME: device_now.isoformat()} if device_now else {}
            self.publish_raw(msg.raw, received_at=received, extra=extra)

    def close_session(self, link: Link) -> None:
        with contextlib.suppress(LinkLost):
            link.write(mb.encode_command(mb.STOP))
