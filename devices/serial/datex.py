"""GE Datex-Ohmeda S/5 computer interface client.

Session: send a displayed-values request (basic class, every ``interval_s`` seconds); the
monitor then sends a physiological record each interval with no further asking. The monitor
has no keep-alive of its own, so silence beyond ``silence_timeout_s`` (cable pulled, monitor
restarted and forgot the request) restarts the session, which sends the request again.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from typing import ClassVar

from adapters.serial import datex
from adapters.serial import headers as dh
from adapters.serial.errors import WireError
from adapters.serial.measurement import local_zone
from bus.base import Bus
from devices.serial.base import SerialDriver
from devices.serial.errors import LinkLost
from devices.serial.port import LineSettings, Link


class DatexDriver(SerialDriver):
    protocol: ClassVar[str] = datex.PROTOCOL
    content_type: ClassVar[str] = datex.CONTENT_TYPE
    line: ClassVar[LineSettings] = LineSettings(19200, 8, "E", 1, rtscts=True)

    def __init__(
        self,
        port: str,
        device_id: str,
        bus: Bus,
        *,
        interval_s: int = 5,
        utc_offset_minutes: int = 0,
        **kwargs: float | None,
    ) -> None:
        if int(interval_s) != interval_s or not 0 < interval_s <= 32767:
            # The request carries whole seconds, a signed 16-bit field; refuse before any session.
            raise ValueError(f"Datex interval_s must be whole seconds 1-32767, not {interval_s!r}")
        kwargs.setdefault("silence_timeout_s", max(15.0, 3.0 * interval_s))
        super().__init__(port, device_id, bus, **kwargs)  # type: ignore[arg-type]
        self.interval_s = int(interval_s)
        self.utc_offset_minutes = utc_offset_minutes
        self.requests_sent = 0

    def session(self, link: Link, stop: threading.Event) -> None:
        framer = datex.Framer()
        link.write(datex.encode_frame(datex.phdb_request(self.interval_s)))
        self.requests_sent += 1
        while not stop.is_set():
            data = link.read()
            quiet = self.line_quiet(data)
            if data:
                self.stats.bytes_in += len(data)
                events = framer.feed(data)
            else:
                events = framer.expire() if quiet else []
            for ev in events:
                if isinstance(ev, datex.Frame):
                    self._on_record(ev)
                else:
                    self.rejected(ev.kind, ev.raw)
            self.check_silence()

    def _on_record(self, frame: datex.Frame) -> None:
        try:
            head = datex.decode_header(frame.record)
        except WireError as exc:
            self.rejected("framing", frame.raw, str(exc))
            return
        self.good_frame()
        if head.r_maintype != datex.DRI_MT_PHDB:
            return
        received = datetime.now(UTC)
        device = datex.device_time_of(head.r_time, local_zone(self.utc_offset_minutes))
        self.stats.clock_offset_s = (device - received).total_seconds()
        self.publish_raw(
            frame.raw,
            received_at=received,
            extra={dh.UTC_OFFSET: str(self.utc_offset_minutes)},
        )

    def close_session(self, link: Link) -> None:
        with contextlib.suppress(LinkLost):  # ask the monitor to stop sending; best effort
            link.write(datex.encode_frame(datex.phdb_request(0)))
