"""What every serial driver shares: the reconnect loop, silence detection, counters,
publishing raw frames to ``raw.device`` before the device is acknowledged, and publishing
what it refused to ``raw.device.rejected`` (best effort, rate-limited) for the trail."""

from __future__ import annotations

import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import ClassVar

from adapters.serial import headers as dh
from adapters.serial import rejected as rj
from bus.base import Bus, Record
from bus.headers import make_headers
from bus.topics import RAW_DEVICE
from caregraph.errors import BusError
from devices.serial.errors import DeviceSilent, LinkLost
from devices.serial.port import LineSettings, Link, monotonic

log = logging.getLogger(__name__)


@dataclass
class DriverStats:
    """Counters a biomedical engineer reads to judge a link (written by the driver thread
    only; readers take ``snapshot()``)."""

    connected: bool = False
    sessions: int = 0
    reconnects: int = 0
    silences: int = 0
    frames: int = 0
    bytes_in: int = 0
    checksum_errors: int = 0
    framing_errors: int = 0
    garbage_bytes: int = 0
    naks_sent: int = 0
    retransmits: int = 0
    published: int = 0
    publish_errors: int = 0
    # Refused bytes (checksum, framing, garbage) published for the trail, and those not
    # published (over the rate limit, or the bus failed): the counters above count them all.
    rejects_published: int = 0
    rejects_unpublished: int = 0
    last_frame_at: datetime | None = None
    # Device clock minus host clock at the last reading, where the protocol tells it.
    clock_offset_s: float | None = None
    last_error: str = ""

    def snapshot(self) -> dict[str, object]:
        return asdict(self)


class SerialDriver(ABC):
    """Reads one device on one port until ``stop`` is set.

    Subclasses implement ``session``: the handshake and the read loop of one connection.
    The base opens the port, runs the session, and on ``LinkLost`` or ``DeviceSilent``
    closes it, waits (backing off up to ``max_backoff_s``) and starts again.
    """

    protocol: ClassVar[str]
    content_type: ClassVar[str]
    line: ClassVar[LineSettings]
    # Rejected bytes go to the trail in a burst of ``reject_burst``, then ``reject_per_s``
    # at most: a wrong baud rate makes everything garbage, and the driver must keep
    # answering the device rather than publishing each scrap of it.
    reject_burst: ClassVar[int] = 20
    reject_per_s: ClassVar[float] = 2.0

    def __init__(
        self,
        port: str,
        device_id: str,
        bus: Bus,
        *,
        silence_timeout_s: float | None = 10.0,
        reconnect_delay_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.port = port
        self.device_id = device_id
        self.bus = bus
        self.silence_timeout_s = silence_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.max_backoff_s = max_backoff_s
        # The protocol's documented line settings unless the registration overrides them.
        self.line_settings: LineSettings = type(self).line
        # The identifier system of the patient ids the device reports (its registration's
        # ``patient-id-system``), stamped on each raw message for the normalizer.
        self.patient_id_system: str | None = None
        self.stats = DriverStats()
        self._boot = uuid.uuid4().hex[:12]
        self._seq = 0
        self._last_good = monotonic()
        self._last_data = monotonic()
        self._reject_tokens = float(self.reject_burst)
        self._reject_refill_at = monotonic()
        self._reject_topic_ready = False

    # -- lifecycle ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Connect, run sessions, reconnect; returns when ``stop`` is set."""
        delay = self.reconnect_delay_s
        while not stop.is_set():
            try:
                link = Link.open(self.port, self.line_settings)
            except LinkLost as exc:
                self.stats.last_error = str(exc)
                stop.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.stats.connected = True
            self.stats.sessions += 1
            self._last_good = monotonic()
            try:
                self.session(link, stop)
            except LinkLost as exc:
                self.stats.last_error = str(exc)
                log.warning("%s %s: link lost: %s", self.protocol, self.device_id, exc)
            except DeviceSilent as exc:
                self.stats.silences += 1
                self.stats.last_error = str(exc)
                log.warning("%s %s: %s", self.protocol, self.device_id, exc)
            except Exception as exc:  # the thread's edge: a bug must not end the driver
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s %s: session failed", self.protocol, self.device_id)
            finally:
                self.stats.connected = False
                self.close_session(link)
                link.close()
            if stop.is_set():
                break
            self.stats.reconnects += 1
            stop.wait(self.reconnect_delay_s)
            delay = self.reconnect_delay_s

    @abstractmethod
    def session(self, link: Link, stop: threading.Event) -> None:
        """Handshake, then read and answer until ``stop``.

        Raises:
            LinkLost: the port failed.
            DeviceSilent: no good frame for ``silence_timeout_s``.
        """

    def close_session(self, link: Link) -> None:  # noqa: B027 - optional hook
        """Say goodbye to the device if the protocol has a way (best effort)."""

    @property
    def clock_offset_s(self) -> float | None:
        """How far the device clock is ahead of ours (seconds), if the protocol tells."""
        return self.stats.clock_offset_s

    # -- helpers for sessions ------------------------------------------------------------

    # A partial frame is given up after this much quiet on the line: long enough for a slow
    # line or a USB adapter's latency timer, short enough to NAK before a sender times out.
    frame_gap_s: ClassVar[float] = 0.3

    def line_quiet(self, data: bytes) -> bool:
        """Call with every read; ``True`` once nothing has arrived for ``frame_gap_s``."""
        now = monotonic()
        if data:
            self._last_data = now
            return False
        return now - self._last_data > self.frame_gap_s

    def good_frame(self) -> None:
        """Record that a valid frame arrived now."""
        self.stats.frames += 1
        self.stats.last_frame_at = datetime.now(UTC)
        self._last_good = monotonic()

    def rejected(self, reason: str, raw: bytes, detail: str = "") -> None:
        """Count bytes the driver refused and publish them for the device trail.

        ``reason`` is ``checksum`` or ``framing`` (one more error) or ``garbage`` (counted
        in bytes). Call it after answering the device (NAK): publishing is best effort and
        never raises; over the rate limit or with the bus down it is only counted.
        """
        if reason == "checksum":
            self.stats.checksum_errors += 1
        elif reason == "garbage":
            self.stats.garbage_bytes += len(raw)
        else:
            self.stats.framing_errors += 1
        if not raw or not self._take_reject_token():
            self.stats.rejects_unpublished += 1
            return
        record = rj.rejected_record(
            self.device_id,
            self.protocol,
            raw,
            reason if reason in rj.REASONS else "framing",
            self.next_message_id(),
            datetime.now(UTC),
            detail,
        )
        try:
            if not self._reject_topic_ready:
                # The buses create a topic on first publish, Kafka maybe not: ask once.
                self.bus.ensure_topics([rj.TOPIC])
                self._reject_topic_ready = True
            self.bus.publish_many([record])
        except BusError as exc:
            self.stats.rejects_unpublished += 1
            self._reject_tokens = 0.0  # a failing bus is not asked again at once
            log.debug("%s %s: rejected bytes not published: %s", self.protocol, self.device_id, exc)
            return
        self.stats.rejects_published += 1

    def _take_reject_token(self) -> bool:
        now = monotonic()
        refill = (now - self._reject_refill_at) * self.reject_per_s
        self._reject_tokens = min(float(self.reject_burst), self._reject_tokens + refill)
        self._reject_refill_at = now
        if self._reject_tokens < 1.0:
            return False
        self._reject_tokens -= 1.0
        return True

    def check_silence(self) -> None:
        """Raise ``DeviceSilent`` when no good frame came for ``silence_timeout_s``."""
        if self.silence_timeout_s is None:
            return
        if monotonic() - self._last_good > self.silence_timeout_s:
            raise DeviceSilent(f"no valid frame for {self.silence_timeout_s:g} s")

    def next_message_id(self) -> str:
        """Unique per frame, stable on bus redelivery: device, driver boot, sequence."""
        self._seq += 1
        return f"{self.device_id}/{self._boot}/{self._seq}"

    def publish_raw(
        self,
        raw: bytes,
        *,
        message_id: str | None = None,
        received_at: datetime | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> bool:
        """Make ``raw`` durable on ``raw.device``; ``False`` (counted) if the bus failed.

        Drivers acknowledge the device (where the protocol can) only after ``True``.
        """
        headers = make_headers(
            f"serial/{self.protocol}",
            message_id or self.next_message_id(),
            self.content_type,
            received_at=received_at,
        )
        headers[dh.DEVICE_ID] = self.device_id
        headers[dh.PROTOCOL] = self.protocol
        system = self.patient_id_system  # one read: the gateway may change it meanwhile
        if system:
            headers[dh.PATIENT_ID_SYSTEM] = system
        if extra:
            headers.update(extra)
        try:
            self.bus.publish_many([Record(RAW_DEVICE, raw, self.device_id.encode(), headers)])
        except BusError as exc:
            self.stats.publish_errors += 1
            self.stats.last_error = f"publish failed: {exc}"
            log.error("%s %s: publish failed: %s", self.protocol, self.device_id, exc)
            return False
        self.stats.published += 1
        return True
