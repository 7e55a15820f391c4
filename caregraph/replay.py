"""``caregraph replay``: re-normalize what a raw topic holds, e.g. after a mapping fix.

The raw topics keep what the gateways received, byte for byte. Replay reads one of them
from the start in a group of its own (so the live normalizers' offsets are untouched),
keeps the messages received at or after ``since``, and runs the same handler the live
normalizer runs. Resource ids are deterministic, so replayed resources upsert the ones
already stored: a changed mapping yields a new version, an unchanged one no new version.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bus.headers import RECEIVED_AT
from caregraph.errors import ConfigError
from caregraph.roles import normalizers
from caregraph.wiring import Context


@dataclass(frozen=True)
class ReplayResult:
    read: int
    replayed: int


def received_at(headers: Mapping[str, str]) -> datetime | None:
    """The gateway's receipt time of a raw message, or None when absent or unreadable."""
    value = headers.get(RECEIVED_AT)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def replay(
    ctx: Context, topic: str, since: datetime, *, idle_s: float = 2.0, join_timeout_s: float = 30
) -> ReplayResult:
    """Replay ``topic`` from ``since`` until the end of the log; returns the counts.

    Raises:
        ConfigError: ``topic`` is not a raw topic.
    """
    handlers = normalizers(ctx)
    if topic not in handlers:
        raise ConfigError(f"cannot replay {topic!r}; choose one of {', '.join(handlers)}")
    _, handler = handlers[topic]
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    read = replayed = 0
    with ctx.bus.subscribe(f"replay-{uuid.uuid4().hex[:12]}", [topic]) as consumer:
        deadline = time.monotonic() + join_timeout_s
        idle_since = time.monotonic()
        while True:
            batch = consumer.poll(0.5, 500)
            if batch:
                read += len(batch)
                chosen = [m for m in batch if (received_at(m.headers) or since) >= since]
                if chosen:
                    handler(chosen)
                    replayed += len(chosen)
                consumer.commit(batch)
                idle_since = time.monotonic()
                continue
            joined = bool(consumer.assignment())
            if joined and time.monotonic() - idle_since >= idle_s:
                break
            if not joined and time.monotonic() > deadline:
                raise ConfigError(f"no partition of {topic} was assigned to the replay consumer")
    return ReplayResult(read=read, replayed=replayed)
