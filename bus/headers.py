"""Header names every message carries, and a helper that fills them in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

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
    """Headers for a message entering caregraph; a new trace id unless one is carried on."""
    when = received_at or datetime.now(UTC)
    return {
        SOURCE: source,
        MESSAGE_ID: message_id,
        RECEIVED_AT: when.isoformat(timespec="microseconds"),
        CONTENT_TYPE: content_type,
        TRACE_ID: trace_id or uuid.uuid4().hex,
    }
