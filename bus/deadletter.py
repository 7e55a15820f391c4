"""The deadletter record: what a consumer gave up on, with everything needed to replay it.

Pure encode/decode, no I/O. The value is JSON (UTF-8) so an operator can read it with any
tool; the original key and value are base64 because they are arbitrary bytes (HL7 v2 in
a legacy code page, DICOM). Version 1 fields::

    {"version": 1, "group": ..., "topic": ..., "partition": ..., "offset": ...,
     "key": base64 | null, "value": base64, "headers": {...}, "timestamp_ms": ...,
     "error": "ExcType: text", "attempts": ..., "failed_at": ISO-8601 UTC}
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bus.base import Message, Record
from bus.errors import DeadLetterFormatError
from bus.headers import CONTENT_TYPE
from bus.topics import DEADLETTER

VERSION = 1

_T = TypeVar("_T")
CONTENT_TYPE_DEADLETTER = "application/vnd.caregraph.deadletter+json; version=1"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a consumer group could not handle, and why."""

    group: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, str]
    timestamp_ms: int
    error: str
    attempts: int
    failed_at: datetime


def describe(exc: BaseException) -> str:
    """``ExcType: text`` of an exception, one line, for the record and the logs."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def deadletter_record(
    message: Message,
    group: str,
    error: str,
    attempts: int,
    *,
    failed_at: datetime | None = None,
    topic: str = DEADLETTER,
) -> Record:
    """The record to publish for ``message``; keeps its key (so per-patient order holds on
    the deadletter topic too) and its headers (so the trace id carries on)."""
    when = failed_at or datetime.now(UTC)
    body = {
        "version": VERSION,
        "group": group,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": None if message.key is None else base64.b64encode(message.key).decode(),
        "value": base64.b64encode(message.value).decode(),
        "headers": dict(message.headers),
        "timestamp_ms": message.timestamp_ms,
        "error": error,
        "attempts": attempts,
        "failed_at": when.isoformat(timespec="microseconds"),
    }
    headers = dict(message.headers)
    headers[CONTENT_TYPE] = CONTENT_TYPE_DEADLETTER
    return Record(topic, json.dumps(body).encode(), message.key, headers)


def decode_deadletter(value: bytes) -> DeadLetter:
    """Parse a deadletter record. Raises ``DeadLetterFormatError`` saying what is wrong."""
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeadLetterFormatError(f"deadletter record is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DeadLetterFormatError("deadletter record is not a JSON object")
    if body.get("version") != VERSION:
        raise DeadLetterFormatError(f"unknown deadletter version {body.get('version')!r}")
    try:
        key = body["key"]
        headers = body["headers"]
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise DeadLetterFormatError("deadletter headers must map strings to strings")
        return DeadLetter(
            group=_typed(body, "group", str),
            topic=_typed(body, "topic", str),
            partition=_typed(body, "partition", int),
            offset=_typed(body, "offset", int),
            key=None if key is None else base64.b64decode(key, validate=True),
            value=base64.b64decode(_typed(body, "value", str), validate=True),
            headers=headers,
            timestamp_ms=_typed(body, "timestamp_ms", int),
            error=_typed(body, "error", str),
            attempts=_typed(body, "attempts", int),
            failed_at=datetime.fromisoformat(_typed(body, "failed_at", str)),
        )
    except KeyError as exc:
        raise DeadLetterFormatError(f"deadletter record lacks field {exc}") from exc
    except (binascii.Error, TypeError, ValueError) as exc:
        raise DeadLetterFormatError(f"deadletter record has a bad field: {exc}") from exc


def _typed(body: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DeadLetterFormatError(f"deadletter field {name!r} must be {kind.__name__}")
    return value
