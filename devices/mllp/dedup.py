"""The ACKs already given for accepted messages, so a repeated MSH-10 gets the same ACK and
is not published again.

Choice: a bounded LRU of ``capacity`` entries (100,000 by default), optionally backed by a
SQLite file so it survives a restart of the listener. A sender repeats a message whose ACK it
lost within its own timeout, seconds to minutes: 100,000 entries last 100 s at 1,000
messages/s (1,000 monitors at 1 Hz), ample. In memory an entry costs about 330 bytes (key,
ACK, LRU link; measured with PCD-01 ACKs), so a cache all in memory grows by up to 32 MiB,
for half an hour at 50 messages/s. Backed by a file, the cache keeps only the most recent
``memory_capacity`` entries (10,000 by default, ~3 MiB) in memory and looks a key up in the
file on a miss (a primary-key probe, microseconds, for every new message): the file holds
all ``capacity`` of them. Keys
are sending application + sending facility + MSH-10. Only AA is remembered: an AE or AR is
recomputed from the content (the same content gives the same answer) and a sender that
resends after an outage must get a fresh try.

What it does not guarantee, and why that is enough: an entry evicted or lost (a crash
between the publish and the write here) lets one repeat through to ``raw.hl7v2`` again;
the normalizer's deterministic resource ids then upsert the same resources, so the store
still holds no duplicate.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

#: Entries a file-backed cache keeps in memory (see the module docstring).
MEMORY_CAPACITY = 10_000


class AckCache:
    """Thread-safe bounded map: dedup key -> ACK bytes (see the module docstring)."""

    def __init__(
        self,
        capacity: int = 100_000,
        path: Path | None = None,
        memory_capacity: int = MEMORY_CAPACITY,
    ) -> None:
        if capacity < 1 or memory_capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        # all entries in memory without a file; with one, the most recent of them
        self.memory_capacity = capacity if path is None else min(capacity, memory_capacity)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        # The file may hold up to ``_slack`` rows more than ``capacity`` between prunes, so
        # a prune is one statement per ``_slack`` puts, not one per put.
        self._slack = max(1, min(1000, capacity // 10))
        self._db_rows = 0  # an upper bound on the rows in the file
        # Rows take increasing rowids (a key put again gets a new one), so the ``capacity``
        # most recent are those above ``_last_rowid - capacity``: what a miss in memory may
        # find in the file (older rows wait there for the next prune).
        self._last_rowid = 0
        if path is not None:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS acks (key TEXT PRIMARY KEY, ack BLOB)")
            # Recency is the rowid's order (below). Files written before kept a time
            # column too, and an index on it that only cost each put: the column stays
            # (unread), the index goes.
            self._db.execute("DROP INDEX IF EXISTS acks_at")
            rows = self._db.execute(
                "SELECT key, ack FROM acks ORDER BY rowid DESC LIMIT ?", (self.memory_capacity,)
            ).fetchall()
            for key, ack in reversed(rows):
                self._entries[key] = bytes(ack)
            self._db_rows = self._db.execute("SELECT count(*) FROM acks").fetchone()[0]
            self._last_rowid = self._db.execute("SELECT max(rowid) FROM acks").fetchone()[0] or 0

    def __len__(self) -> int:
        """Entries held in memory (at most ``memory_capacity``)."""
        with self._lock:
            return len(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            ack = self._entries.get(key)
            if ack is not None:
                self._entries.move_to_end(key)
                return ack
            if self._db is None:
                return None
            row = self._db.execute(
                "SELECT ack FROM acks WHERE key = ? AND rowid > ?",
                (key, self._last_rowid - self.capacity),
            ).fetchone()
            if row is None:
                return None
            ack = bytes(row[0])
            self._remember(key, ack)
            return ack

    def _remember(self, key: str, ack: bytes) -> None:
        """Into memory as the most recent entry, the least recent out beyond the bound."""
        self._entries[key] = ack
        self._entries.move_to_end(key)
        while len(self._entries) > self.memory_capacity:
            self._entries.popitem(last=False)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Remember ACKs: in memory, then in the file (one transaction)."""
        items = list(items)
        self.remember_many(items)
        self.persist_many(items)

    def remember_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Remember ACKs in memory only, where ``get`` finds them first: the MLLP
        publisher does this before it answers and writes the file after (``persist_many``),
        so no ACK waits for the file."""
        with self._lock:
            for key, ack in items:
                self._remember(key, ack)

    def persist_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write ACKs already remembered into the file (nothing without one)."""
        items = list(items)
        if not items:
            return
        with self._lock:
            if self._db is None:
                return
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO acks (key, ack) VALUES (?, ?)", items)
            self._db_rows += len(items)  # a key put again replaces its row: an upper bound
            self._last_rowid = self._db.execute("SELECT max(rowid) FROM acks").fetchone()[0]
            if self._db_rows > self.capacity + self._slack:
                # The ``capacity`` most recent puts hold the newest rowids (a key put again
                # gets a new one), so what is older is a range of the table's own B-tree:
                # about ``slack`` rows each time, whatever the capacity. (Finding the cut
                # by time, through an index, walked ``capacity`` entries: 100,000 of them.)
                self._db.execute(
                    "DELETE FROM acks WHERE rowid <= ?", (self._last_rowid - self.capacity,)
                )
                self._db_rows = self.capacity  # at most the rowids left in the window
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
