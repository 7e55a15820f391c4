"""Philips IntelliVue MIB/RS232 data export client.

Session: association request; the monitor accepts and sends its MDS create event report,
which carries its absolute time and relative tick counter (our time anchor); we confirm it,
then poll the numerics every ``poll_interval_s``, or, with ``extended_poll_s``, send one
extended poll that makes the monitor push updates for that long, renewed before it lapses.
The polls double as keep-alive: a monitor drops an association nobody polls. No poll reply
for ``silence_timeout_s`` (a silent monitor, a pulled cable) restarts the session with a
new association; so does a refusal.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from typing import ClassVar

from adapters.serial import headers as dh
from adapters.serial import intellivue as iv
from adapters.serial.errors import WireError
from bus.base import Bus
from devices.serial.base import SerialDriver
from devices.serial.errors import DeviceSilent, LinkLost
from devices.serial.port import LineSettings, Link, monotonic


class IntelliVueDriver(SerialDriver):
    protocol: ClassVar[str] = iv.PROTOCOL
    content_type: ClassVar[str] = iv.CONTENT_TYPE
    line: ClassVar[LineSettings] = LineSettings(115200)

    def __init__(
        self,
        port: str,
        device_id: str,
        bus: Bus,
        *,
        poll_interval_s: float = 1.0,
        association_timeout_s: float = 5.0,
        extended_poll_s: float | None = None,
        **kwargs: float | None,
    ) -> None:
        kwargs.setdefault("silence_timeout_s", 5.0)
        super().__init__(port, device_id, bus, **kwargs)  # type: ignore[arg-type]
        self.poll_interval_s = poll_interval_s
        # Extended polling: one request makes the monitor send updates for this long; we
        # renew it a poll interval before it runs out. ``None``: single polls.
        self.extended_poll_s = extended_poll_s
        self.association_timeout_s = association_timeout_s
        self.anchor: iv.TimeAnchor | None = None
        self.system_id = b""
        self.associations = 0
        self.refusals = 0
        self.polls_sent = 0
        self._invoke = 0

    def _read(self, link: Link, framer: iv.Framer) -> list[iv.Frame]:
        data = link.read()
        if data:
            self.line_quiet(data)
            self.stats.bytes_in += len(data)
            events = framer.feed(data)
        else:
            events = framer.expire() if self.line_quiet(data) else []
        frames = []
        for ev in events:
            if isinstance(ev, iv.Frame):
                frames.append(ev)
            else:
                self.rejected(ev.kind, ev.raw)
        return frames

    def _associate(self, link: Link, framer: iv.Framer, stop: threading.Event) -> None:
        link.write(iv.encode_frame(iv.association_request()))
        deadline = monotonic() + self.association_timeout_s
        accepted = False
        while not stop.is_set():
            if monotonic() > deadline:
                raise DeviceSilent("no association response" if not accepted else "no MDS create")
            for frame in self._read(link, framer):
                kind = iv.session_type(frame.user_data)
                if kind == iv.AC_SPDU:
                    accepted = True
                elif kind == iv.RF_SPDU:
                    self.refusals += 1
                    raise DeviceSilent("association refused")
                elif kind is None and accepted and self._on_data(link, frame):
                    self.associations += 1
                    return

    def _on_data(self, link: Link, frame: iv.Frame) -> bool:
        """Handle a data export frame; ``True`` if it was the MDS create event report."""
        try:
            op = iv.decode_operation(frame.user_data)
            create = iv.decode_mds_create(op)
        except WireError as exc:
            self.rejected("framing", frame.raw, str(exc))
            return False
        if create is None:
            return False
        self.anchor = create.anchor
        self.system_id = create.system_id
        rel = create.anchor.rel_ticks if create.anchor else 0
        link.write(iv.encode_frame(iv.mds_create_result(create.invoke_id, rel)))
        self.good_frame()
        return True

    def session(self, link: Link, stop: threading.Event) -> None:
        framer = iv.Framer()
        self._associate(link, framer, stop)
        next_poll = monotonic()
        poll_number = 0
        while not stop.is_set():
            now = monotonic()
            if now >= next_poll:
                self._invoke = (self._invoke + 1) & 0xFFFF
                poll_number = (poll_number + 1) & 0xFFFF
                if self.extended_poll_s:
                    ticks = int(self.extended_poll_s * iv.TICKS_PER_SECOND)
                    request = iv.extended_poll_request(self._invoke, poll_number, ticks)
                    next_poll = now + max(self.extended_poll_s - self.poll_interval_s, 0.1)
                else:
                    request = iv.poll_request(self._invoke, poll_number)
                    next_poll = now + self.poll_interval_s
                link.write(iv.encode_frame(request))
                self.polls_sent += 1
            for frame in self._read(link, framer):
                self._on_frame(link, frame)
            self.check_silence()

    def _on_frame(self, link: Link, frame: iv.Frame) -> None:
        kind = iv.session_type(frame.user_data)
        if kind in (iv.AB_SPDU, iv.RF_SPDU, iv.DN_SPDU):
            raise DeviceSilent("the monitor ended the association")
        if kind is not None:
            return
        try:
            op = iv.decode_operation(frame.user_data)
            reply = iv.decode_poll_reply(op)
        except WireError as exc:
            self.rejected("framing", frame.raw, str(exc))
            return
        if reply is None:
            self._on_data(link, frame)  # a monitor restart sends a new MDS create
            return
        received = datetime.now(UTC)
        self.good_frame()
        extra = {dh.TIME_ANCHOR: self.anchor.header()} if self.anchor else {}
        if self.anchor is not None:
            self.stats.clock_offset_s = (self.anchor.at(reply.rel_ticks) - received).total_seconds()
        self.publish_raw(frame.raw, received_at=received, extra=extra)

    def close_session(self, link: Link) -> None:
        with contextlib.suppress(LinkLost):  # best effort on a link that may be gone
            link.write(iv.encode_frame(iv.release_request()))
