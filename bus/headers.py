"""Header names every message carries, helpers that fill them in, and the trace id rule.

The trace id follows one message from the gateway to the stored resource (gateway log line,
``raw.*`` header, normalizer logs, ``fhir.*`` header, the stored resource's ``meta.tag``).
It is carried on when a message already has one; where none was given it is *derived from
the message* (``derive_trace_id``: topic, message id and bytes), never random. So a message
that arrives twice, resent by its sender after a lost ACK or redelivered by the bus after a
crash, keeps its trace id, and the store (which versions a resource when its content,
``meta.tag`` included, changes) does not make a new version of its resources.

Who derives it: ``observability.instrument.MeteredBus`` on publish (and logs it, the
gateway's line), and ``bus.worker.run_consumer`` on consume for a message that arrived
without one (published through a bare bus, or before trace ids existed); both give the same
value for the same message.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bus.base import Message, Record

SOURCE = "source"
MESSAGE_ID = "message-id"
RECEIVED_AT = "received-at"
CONTENT_TYPE = "content-type"
TRACE_ID = "trace-id"

Headers = dict[str, str]


def make_headers(
    source: str,
    message_id: str,
    content_type: str,
    *,
    trace_id: str | None = None,
    received_at: datetime | None = None,
) -> Headers:
    """Headers for a message entering caregraph, with ``trace_id`` when one is carried on.

    Without one, no ``trace-id`` header is set here: the publish derives it from the
    message's bytes (see the module docstring), which this function does not see.
    """
    when = received_at or datetime.now(UTC)
    headers = {
        SOURCE: source,
        MESSAGE_ID: message_id,
        RECEIVED_AT: when.isoformat(timespec="microseconds"),
        CONTENT_TYPE: content_type,
    }
    if trace_id:
        headers[TRACE_ID] = trace_id
    return headers


def derive_trace_id(topic: str, message_id: str | None, value: bytes) -> str:
    """The trace id of a message that came without one: 32 lowercase hex digits (the W3C
    trace-context size), a SHA-256 prefix of the topic, the message id and the bytes.

    The message id is in it because equal bytes are not always one message (two identical
    serial frames a second apart are two readings, with two message ids); the bytes are in
    it because a message id alone is not unique across senders (MSH-10).
    """
    digest = hashlib.sha256()
    for part in (topic.encode("utf-8"), (message_id or "").encode("utf-8")):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(value)
    return digest.hexdigest()[:32]


def trace_id_of(topic: str, headers: Mapping[str, str], value: bytes) -> str:
    """The message's ``trace-id`` header, or the one derived from it when absent or empty."""
    return headers.get(TRACE_ID) or derive_trace_id(topic, headers.get(MESSAGE_ID), value)


def with_trace_ids(records: Sequence[Record]) -> Sequence[Record]:
    """``records`` with a ``trace-id`` header on each (the same objects when all have one)."""
    if all(r.headers.get(TRACE_ID) for r in records):
        return records
    return [
        r
        if r.headers.get(TRACE_ID)
        else dataclasses.replace(
            r, headers={**r.headers, TRACE_ID: trace_id_of(r.topic, r.headers, r.value)}
        )
        for r in records
    ]


def traced(message: Message) -> Message:
    """``message`` with a ``trace-id`` header (itself when it has one)."""
    if message.headers.get(TRACE_ID):
        return message
    trace_id = trace_id_of(message.topic, message.headers, message.value)
    return dataclasses.replace(message, headers={**message.headers, TRACE_ID: trace_id})
