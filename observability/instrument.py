"""Instrumentation at the bus seam, so no gateway or adapter has to know about metrics.

Everything caregraph does passes the bus: gateways publish ``raw.*`` the moment before they
acknowledge, normalizers publish ``fhir.*``, consumers take batches off it. Counting there
gives messages in and out per source and topic for every role at once:

- ``MeteredBus`` wraps the process's bus: each record published counts as a message out;
  each ``raw.*`` record also times receipt (its ``received-at`` header) to durable on the
  bus, which is when the gateway sends its ACK (HL7 AA, C-STORE success), so it is the ACK
  latency without a hook in each gateway.
- records on the dead-letter topic count as dead letters, per original topic and error type;
- every record leaves with a ``trace-id`` header (``bus.headers.with_trace_ids``: carried
  on, else derived from the message, so a resent message keeps it); each ``raw.*`` record
  logs one line with it once durable (logger ``observability.trace``, INFO), the gateway's
  end of the trace that ends in the stored resource's ``meta.tag``;
- ``subscribe`` tells ``on_subscribe`` (the consumer-lag source) which groups read which
  topics in this process;
- ``instrument_handler`` wraps a consumer's handler: each message handled counts as a
  message in, and a batch of one (the worker retries a failing batch one message at a
  time) logs under that message's trace id.

Labels carry the kind of source (``mllp``, ``dicom``, ``serial/intellivue``), not the peer:
a label per peer address and port would grow without bound. Peers are in the logs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bus.base import Bus, Consumer, Message, Record
from bus.deadletter import decode_deadletter
from bus.errors import DeadLetterFormatError
from bus.headers import MESSAGE_ID, RECEIVED_AT, SOURCE, TRACE_ID, with_trace_ids
from bus.topics import DEADLETTER, RAW_DEVICE, RAW_DICOM, RAW_HL7V2
from observability.logging import trace_scope
from observability.metrics import Metrics

RAW_TOPICS = frozenset({RAW_HL7V2, RAW_DICOM, RAW_DEVICE})
Handler = Callable[[list[Message]], None]
WallClock = Callable[[], float]
SubscribeListener = Callable[[str, Sequence[str]], None]

# Its own logger, so an operator can turn the per-message receipt lines down without the
# rest of observability's.
trace_log = logging.getLogger("observability.trace")


def source_label(source: str | None) -> str:
    """The kind of a ``source`` header: ``mllp:10.0.0.5:4100`` -> ``mllp``."""
    if not source:
        return "unknown"
    return source.split(":", 1)[0]


def _received_at(headers: Mapping[str, str]) -> float | None:
    value = headers.get(RECEIVED_AT)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class MeteredBus(Bus):
    """``inner`` with every record traced, every successful publish counted (and timed and
    logged, for ``raw.*``), and every subscription reported to ``on_subscribe``."""

    def __init__(
        self,
        inner: Bus,
        metrics: Metrics,
        *,
        clock: WallClock = time.time,
        on_subscribe: SubscribeListener | None = None,
    ) -> None:
        self.inner = inner
        self.metrics = metrics
        self._clock = clock
        self._on_subscribe = on_subscribe

    def publish_many(self, records: Sequence[Record]) -> None:
        records = with_trace_ids(records)
        self.inner.publish_many(records)  # raises: nothing counted, nothing was published
        now = self._clock()
        counts = Counter((source_label(r.headers.get(SOURCE)), r.topic) for r in records)
        for (source, topic), count in counts.items():
            self.metrics.record_out(source, topic, count)
        for record in records:
            if record.topic == DEADLETTER:
                self._count_deadletter(record)
            elif record.topic in RAW_TOPICS:
                received = _received_at(record.headers)
                if received is not None:
                    source = source_label(record.headers.get(SOURCE))
                    self.metrics.observe_ack(source, max(0.0, now - received))
                _log_receipt(record)

    def _count_deadletter(self, record: Record) -> None:
        try:
            letter = decode_deadletter(record.value)
        except DeadLetterFormatError:
            self.metrics.record_deadletter("unknown", "unreadable")
            return
        # the exception type only ("MappingError: OBX-3 ..." -> "MappingError"): the text
        # varies per message and would make a label per message
        reason = letter.error.split(":", 1)[0].strip() or "unknown"
        self.metrics.record_deadletter(letter.topic, reason)

    def subscribe(self, group: str, topics: Iterable[str]) -> Consumer:
        wanted = list(topics)
        consumer = self.inner.subscribe(group, wanted)
        if self._on_subscribe is not None:
            self._on_subscribe(group, wanted)
        return consumer

    def ensure_topics(self, topics: Iterable[str]) -> None:
        self.inner.ensure_topics(topics)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # what only some buses have (EmbeddedBus.prune, MemoryBus.committed) still works
        return getattr(self.inner, name)


def _log_receipt(record: Record) -> None:
    if not trace_log.isEnabledFor(logging.INFO):
        return
    headers = record.headers
    trace_id = headers.get(TRACE_ID)
    trace_log.info(
        "%s from %s durable on %s (trace %s)",
        headers.get(MESSAGE_ID, "?"),
        headers.get(SOURCE, "?"),
        record.topic,
        trace_id,
        extra={
            "trace_id": trace_id,
            "source": headers.get(SOURCE),
            "message_id": headers.get(MESSAGE_ID),
            "topic": record.topic,
        },
    )


def instrument_handler(handler: Handler, metrics: Metrics) -> Handler:
    """``handler`` counting the messages it handled, per source and topic, once it returns
    (a batch that raises is counted when the worker's retry of it succeeds)."""

    def handle(batch: list[Message]) -> None:
        trace_id = batch[0].headers.get(TRACE_ID) if len(batch) == 1 else None
        with trace_scope(trace_id):
            handler(batch)
        counts = Counter((source_label(m.headers.get(SOURCE)), m.topic) for m in batch)
        for (source, topic), count in counts.items():
            metrics.record_in(source, topic, count)

    return handle
