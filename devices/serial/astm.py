"""ASTM E1381 receiver for lab and blood-gas analyzers (the LIS side of the link).

The analyzer is the sender: it bids with ENQ, we answer ACK; each frame is answered ACK, or
NAK when its checksum, trailer or frame number is wrong (the analyzer retransmits it). A
message (H ... L) is published to ``raw.device`` as its raw frames before the frame that
carries the L record is acknowledged, so an analyzer never sees an ACK for a result that is
not durable. A transfer that ends before its L record (EOT, a new ENQ, the receiver timeout)
is dropped and counted: the analyzer sends the whole message again.

Analyzers are silent between samples, so there is no silence restart; a pulled cable shows
as a port error, or as a transfer that stops, which the 30 s receiver timeout of E1381
abandons.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from typing import ClassVar

from adapters.serial import astm
from adapters.serial import headers as dh
from adapters.serial.errors import WireError
from adapters.serial.measurement import local_zone
from bus.base import Bus
from devices.serial.base import SerialDriver
from devices.serial.port import LineSettings, Link, monotonic


class AstmDriver(SerialDriver):
    """Receives ASTM E1381/E1394 messages from one analyzer."""

    protocol: ClassVar[str] = astm.PROTOCOL
    content_type: ClassVar[str] = astm.CONTENT_TYPE
    line: ClassVar[LineSettings] = LineSettings(9600)

    def __init__(
        self,
        port: str,
        device_id: str,
        bus: Bus,
        *,
        receive_timeout_s: float = 30.0,
        utc_offset_minutes: int = 0,
        **kwargs: float | None,
    ) -> None:
        kwargs.setdefault("silence_timeout_s", None)
        super().__init__(port, device_id, bus, **kwargs)  # type: ignore[arg-type]
        self.receive_timeout_s = receive_timeout_s
        self.utc_offset_minutes = utc_offset_minutes
        self.messages = 0
        self.timeouts = 0
        self.abandoned = 0
        self.duplicates = 0

    def session(self, link: Link, stop: threading.Event) -> None:
        framer = astm.Framer()
        frames: list[bytes] = []
        receiving = False
        expected = 1
        completed = 0  # messages finished (L record) in this transfer
        last_activity = monotonic()
        while not stop.is_set():
            data = link.read()
            now = monotonic()
            if data:
                self.stats.bytes_in += len(data)
                events = framer.feed(data)
            elif framer.pending and now - last_activity > self.frame_gap_s:
                events = framer.expire()
            else:
                events = []
                if receiving and now - last_activity > self.receive_timeout_s:
                    # E1381 receiver timeout: the sender vanished mid-transfer.
                    self.timeouts += 1
                    self._abandon(frames, completed)
                    frames, receiving = [], False
            if events:
                last_activity = now
            for ev in events:
                if isinstance(ev, astm.Control):
                    if ev.byte == astm.ENQ:
                        if receiving:
                            self._abandon(frames, completed)
                        frames, receiving, expected, completed = [], True, 1, 0
                        link.write(bytes([astm.ACK]))
                    elif ev.byte == astm.EOT:
                        if receiving:
                            self._abandon(frames, completed)
                        frames, receiving = [], False
                elif isinstance(ev, astm.Frame):
                    if not receiving:
                        self.rejected("framing", ev.raw, "a frame outside a transfer (no ENQ)")
                        continue
                    if ev.number == expected:
                        self.good_frame()
                        frames.append(ev.raw)
                        expected = (expected + 1) % 8
                        if ev.final and ev.text[:1] in (b"L", b"l"):
                            if self._flush(frames):
                                frames, completed = [], completed + 1
                                link.write(bytes([astm.ACK]))
                            else:
                                # Not durable: refuse the last frame; its retransmission
                                # must count as new, not as a duplicate of an ACKed one.
                                frames.pop()
                                expected = ev.number
                                self.stats.naks_sent += 1
                                link.write(bytes([astm.NAK]))
                        else:
                            link.write(bytes([astm.ACK]))
                    elif ev.number == (expected - 1) % 8:
                        # Our ACK was lost and the sender repeats the frame: ACK, keep one.
                        self.duplicates += 1
                        self.stats.retransmits += 1
                        link.write(bytes([astm.ACK]))
                    else:
                        self.stats.naks_sent += 1
                        link.write(bytes([astm.NAK]))
                        self.rejected(
                            "framing", ev.raw, f"frame number {ev.number}, expected {expected}"
                        )
                else:
                    if ev.kind == "garbage":
                        # A frame whose STX was lost reads as garbage ending in a trailer.
                        if receiving and any(b in ev.raw for b in (astm.ETX, astm.ETB)):
                            self.stats.naks_sent += 1
                            link.write(bytes([astm.NAK]))
                        self.rejected("garbage", ev.raw)
                        continue
                    if receiving:
                        self.stats.naks_sent += 1
                        link.write(bytes([astm.NAK]))
                    self.rejected(ev.kind, ev.raw)

    def _abandon(self, frames: list[bytes], completed: int) -> None:
        """Count a transfer that ended inside a message, or before any message, and drop
        its frames. E1381 makes the sender resend the whole message later; publishing the
        fragment would store its results twice."""
        if frames or completed == 0:
            self.abandoned += 1

    def _flush(self, frames: list[bytes]) -> bool:
        """Publish the frames of one message (if any); ``False`` if the bus refused."""
        if not frames:
            return True
        raw = b"".join(frames)
        # Content-derived id: an analyzer that resends the same message upserts, not doubles.
        digest = hashlib.sha256(raw).hexdigest()[:24]
        ok = self.publish_raw(
            raw,
            message_id=f"{self.device_id}/astm/{digest}",
            extra={dh.UTC_OFFSET: str(self.utc_offset_minutes)},
        )
        if ok:
            self.messages += 1
            self._track_clock(frames)
        return ok

    def _track_clock(self, frames: list[bytes]) -> None:
        """The analyzer clock from the header's date/time (H-14), for drift monitoring."""
        try:
            _, records = astm.split_records(astm.message_text(frames))
        except WireError:
            return
        header = records[0]
        sent = (
            astm.parse_timestamp(header[13], local_zone(self.utc_offset_minutes))
            if len(header) > 13
            else None
        )
        if sent is not None:
            self.stats.clock_offset_s = (sent - datetime.now(UTC)).total_seconds()
