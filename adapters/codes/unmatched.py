"""Codes and units a translator passed through unmapped, counted where they were found.

The rule (issue #4): an unknown code passes through with its original coding and is
counted, never dropped. Adapters are pure, so they do not hold a metrics client; they call
``count`` here, which adds to an in-process tally under a lock (no I/O, a dict increment).
The composition root hands ``TALLY.snapshot`` to ``observability.metrics.Metrics
.watch_unmatched``, which reads it at scrape time as ``caregraph_unmatched_codes_total{
source, system, kind}``; alert rules and dashboards say which tables need extending.

    from adapters.codes import unmatched
    unmatched.count("hl7v2", "LN", "unknown_code")         # an OBX-3 LOINC code not known
    unmatched.count("serial/intellivue", "vendor", "unknown_code")

Labels name kinds of things, never the code itself (a label per code would grow without
bound); the codes are in the resources and in the logs. A sender's local coding-system
names (``99LOC``) are labels, so their number is capped: past ``MAX_SERIES`` distinct
(source, system, kind) triples, new systems count under ``OTHER``.
"""

from __future__ import annotations

import threading
from collections import Counter

UNKNOWN_CODE = "unknown_code"
UNKNOWN_UNIT = "unknown_unit"
NO_SYSTEM = "none"
OTHER = "other"
MAX_SERIES = 256
MAX_SYSTEM_CHARS = 64

Key = tuple[str, str, str]  # (source, system, kind)


class UnmatchedTally:
    """Counts per (source, code system, kind); safe to call from any thread."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self._lock = threading.Lock()
        self._counts: Counter[Key] = Counter()

    def count(self, source: str, system: str, kind: str = UNKNOWN_CODE, n: int = 1) -> None:
        """Add ``n`` unknown codes (or units, by ``kind``) of ``system`` seen from ``source``."""
        system = system.strip()[:MAX_SYSTEM_CHARS] or NO_SYSTEM
        key = (source, system, kind)
        with self._lock:
            if key not in self._counts and len(self._counts) >= self.max_series:
                key = (source, OTHER, kind)
            self._counts[key] += n

    def snapshot(self) -> dict[Key, int]:
        """The counts so far (they only grow, as Prometheus counters must)."""
        with self._lock:
            return dict(self._counts)


TALLY = UnmatchedTally()
"""The process's tally: adapters have no composition root to be handed one."""


def count(source: str, system: str, kind: str = UNKNOWN_CODE, n: int = 1) -> None:
    """``TALLY.count``: what an adapter calls where it finds an unknown code or unit."""
    TALLY.count(source, system, kind, n)
