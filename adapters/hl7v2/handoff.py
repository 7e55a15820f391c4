"""The gateway's mapping of a message, handed to the normalizer of the same process.

The MLLP listener maps every message in full before it answers (``intake.judge``: content
that cannot be mapped gets AE while the sender is still connected), and the normalizer then
maps the same bytes again: at 1,000 beds the mapping was 60% of the normalizer's CPU and
42% of the listener's. When both roles run in one process (``caregraph up`` with no role),
the listener leaves each accepted message's ``Normalized`` here and the normalizer takes it
instead of mapping again.

``normalize`` is a pure function of the bytes, the receipt time and the options, and the
entry is keyed by all three, so what the normalizer takes is what it would have computed.
A miss (the normalizer runs in another process, the entry was evicted, a replay) maps as
before. An entry is taken once and never touched by the listener after it is left, so the
normalizer owns the resources it takes. Bounded: a message that is never taken (its
publish failed, its normalizer is elsewhere) is evicted oldest first.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.normalize import MAX_MESSAGE_BYTES, Normalized
from adapters.hl7v2.parties import OptionsKey, options_key

_Key = tuple[bytes, datetime, timedelta | None, OptionsKey]


def _key(raw: bytes, received_at: datetime, options: Options) -> _Key:
    """What ``normalize`` depends on; the offset too, since equal instants compare equal."""
    return raw, received_at, received_at.utcoffset(), options_key(options)


class Handoff:
    """Mappings left by the intake for the normalizer, at most ``capacity`` of them."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._entries: dict[_Key, Normalized] = {}
        self._lock = threading.Lock()
        self.taken = 0

    def put(self, raw: bytes, received_at: datetime, options: Options, result: Normalized) -> None:
        # the normalizer's parse refuses what is larger; the intake's limit may be higher
        if len(raw) > MAX_MESSAGE_BYTES:
            return
        key = _key(raw, received_at, options)
        with self._lock:
            self._entries[key] = result
            while len(self._entries) > self.capacity:
                del self._entries[next(iter(self._entries))]

    def take(self, raw: bytes, received_at: datetime, options: Options) -> Normalized | None:
        key = _key(raw, received_at, options)
        with self._lock:
            result = self._entries.pop(key, None)
        if result is not None:
            self.taken += 1
        return result

    def __len__(self) -> int:
        return len(self._entries)
