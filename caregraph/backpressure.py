"""Flow control from the store writer back to the HL7 senders: the MLLP listener holds its
ACKs while the store writer is far behind.

Why: MLLP senders wait for each ACK, so an ACK held is a sender slowed, and the messages
wait in the sender's queue, where they were already. Without it a listener that takes
more than the store writer can write spends the cores on intake while the backlog, and the
time until a reading is searchable, only grow. At 1,000 beds on a 2-core machine
(``bench/hospital.py --beds 1000 [--split]``): four processes stored 518 Observations/s
of 3,281 taken, and 1,279-1,302 held at a backlog of 5,000 or 20,000; one process 751-843,
and 872-1,012 held at 5,000 (p99 until searchable 5.8-6.3 s) or 1,002-1,144 at 20,000
(p99 23 s). The default, ``Settings.mllp_hold_backlog``, is one store-writer batch
(``fhir_store.writer.WRITE_BATCH``): what is accepted is searchable within seconds.

How: a thread reads the store writer's lag (``observability.lag``, the same reading as
``/metrics``, from the bus the roles share, so it works across processes) every
``poll_s``, and closes the gate above ``high`` resources and opens it again at ``low``
(hysteresis, so it does not flap once per batch). ``admit`` waits while the gate is closed,
at most ``max_hold_s``: a sender must not wait past its own timeout, and if the writer is
down for long the bus is durable and takes the messages (slowly: the gate stays closed).
A lag that cannot be read opens the gate: a metrics failure must not stop intake.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from bus.embedded import DB_NAME
from bus.topics import fhir_topic
from caregraph.settings import Settings
from fhir_store.searchparams import default_registry
from observability.lag import EmbeddedLag, KafkaLag, LagReader

log = logging.getLogger(__name__)

STORE_WRITER_GROUP = "store-writer"
#: Longest one ACK is held; MLLP senders commonly time out after 30 s or more.
MAX_HOLD_S = 10.0
POLL_S = 0.5


class BacklogGate:
    """Closed while a backlog is above ``high``, open again at or below ``low``; a service
    (``start``/``stop``) whose thread reads the backlog, and closes it on ``stop`` if it
    has a ``close``."""

    name = "backlog-gate"

    def __init__(
        self,
        backlog: Callable[[], int],
        high: int,
        *,
        low: int | None = None,
        poll_s: float = POLL_S,
        max_hold_s: float = MAX_HOLD_S,
    ) -> None:
        if high < 1:
            raise ValueError("high must be positive")
        self.high = high
        self.low = high // 2 if low is None else low
        self.poll_s = poll_s
        self.max_hold_s = max_hold_s
        self._backlog = backlog
        self._open = threading.Event()
        self._open.set()
        self._stopping = threading.Event()
        self._failing = False
        self._thread: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def update(self, backlog: int) -> None:
        """The gate after a reading of the backlog."""
        if backlog > self.high:
            self._open.clear()
        elif backlog <= self.low:
            self._open.set()

    def admit(self) -> bool:
        """Return at once while open, else when it opens or after ``max_hold_s``; True if
        it held the caller."""
        if self._open.is_set():
            return False
        self._open.wait(self.max_hold_s)
        return True

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._open.set()  # nobody stays held by a gate that no longer watches
        if self._thread is not None:
            self._thread.join(timeout=5)
        close = getattr(self._backlog, "close", None)
        if close is not None:
            close()

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                backlog = self._backlog()
            except Exception as exc:  # a bus down, a file locked: intake goes on
                if not self._failing:
                    log.warning("store writer backlog unavailable, not holding ACKs: %s", exc)
                self._failing = True
                self._open.set()
                continue
            self._failing = False
            self.update(backlog)


class StoreWriterBacklog:
    """Resources on ``fhir.*`` the store writer has still to write (``group`` on
    ``topics``), read from the bus of ``settings`` on clients of its own (closed by
    ``close``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        group: str = STORE_WRITER_GROUP,
        topics: Sequence[str] | None = None,
    ) -> None:
        self.group = group
        if topics is None:
            topics = [fhir_topic(t) for t in default_registry().types]
        self._reader: LagReader
        if settings.kafka_bootstrap:
            self._reader = KafkaLag(settings.kafka_bootstrap, {group: topics}, ttl_s=0.0)
        else:
            self._reader = EmbeddedLag(settings.data_dir / "bus" / DB_NAME, ttl_s=0.0)
            self._reader.watch(group, topics)

    def __call__(self) -> int:
        return sum(s.lag for s in self._reader() if s.group == self.group)

    def close(self) -> None:
        self._reader.close()
