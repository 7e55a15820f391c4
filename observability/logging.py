"""Structured logs: one JSON object per line, with the trace id of the message at hand.

A log shipper (Fluent Bit, Vector, Promtail) reads stderr line by line; one JSON object per
line keeps a multi-line traceback in one event and lets it index ``trace_id``, so every
line about one HL7 message, from the gateway to the stored resource, is one query.

The trace id is carried in a ``ContextVar``: the code that takes a message off the wire or
the bus wraps its work in ``trace_scope(headers["trace-id"])`` and every log call inside,
however deep, carries it. Threads do not inherit context variables, so each worker thread
sets it per message (which is what it means anyway).
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_TRACE_ID: ContextVar[str | None] = ContextVar("caregraph_trace_id", default=None)

# Attributes every LogRecord has; anything else came from ``extra=`` and is logged too.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def current_trace_id() -> str | None:
    """The trace id of the message being handled in this context, if any."""
    return _TRACE_ID.get()


@contextmanager
def trace_scope(trace_id: str | None) -> Iterator[None]:
    """Logs inside the block carry ``trace_id`` (``None`` leaves the outer one in place)."""
    if trace_id is None:
        yield
        return
    token = _TRACE_ID.set(trace_id)
    try:
        yield
    finally:
        _TRACE_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time (UTC, ISO 8601), level, logger, message,
    trace_id when known, the ``extra=`` fields, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or _TRACE_ID.get()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra field that is not JSON (a Path, a datetime) must not cost
        # the whole line.
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


def configure(json: bool, level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Route every log record to ``stream`` (stderr by default), as JSON lines or as the
    plain text format; replaces the root handlers, so calling it twice is harmless."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # One line per HTTP request would drown what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
