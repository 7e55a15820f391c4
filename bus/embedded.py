"""The embedded bus: a durable log in one SQLite file, for a single machine, no server.

Why SQLite: one file gives atomic batch appends, crash recovery and safe access from many
processes (WAL mode: readers never block the writer), all in the standard library.

Layout of ``data_dir/bus.sqlite3``::

    topics(id, name, partitions)
    messages(topic_id, part, off, key, value, headers JSON, ts_ms)   -- the log
    offsets(grp, topic_id, part, off)                                -- committed positions
    members(grp, member, topics JSON, host, pid, heartbeat)          -- live group members

Durability: ``publish_many`` appends the whole batch in one transaction and returns after
COMMIT. With ``fsync=True`` (the default, ``synchronous=FULL``) the WAL is fsynced at every
commit, so a returned publish survives ``kill -9`` and power loss. With ``fsync=False``
(``synchronous=NORMAL``) it survives the death of the process (the WAL is in the OS page
cache) but the last batches may be lost if the machine loses power or the kernel crashes.
Concurrent publishers share commits (group commit), so many threads publishing one message
each do not pay one fsync each. Offset commits and heartbeats are never fsynced: losing one
to a power cut only means a group reads a few messages again, which at-least-once allows.

Groups work across processes without a coordinator: every member writes a heartbeat row;
every member computes the same assignment from the live rows (``bus.partitioning.assign``);
a row whose heartbeat is older than ``session_timeout_s``, or whose process is gone (same
host, checked with ``kill(pid, 0)``), is removed by the next member that heartbeats, and its
partitions move on. A commit is checked against the assignment inside the same write
transaction, so a member that lost a partition cannot overwrite the new owner's position.
Members heartbeat when they poll or commit: a handler that runs longer than the session
timeout loses its partitions (as Kafka's ``max.poll.interval.ms``), and its commit fails.

Retention is opt-in and conservative: ``prune`` (or ``retention_s``) deletes old messages
only once every group that reads the partition has committed past them.

Not provided: compaction, transactions across topics, use over a network file system
(SQLite locking needs a local disk).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from bus.base import Bus, Consumer, Message, Record
from bus.errors import CommitFailed
from bus.partitioning import TopicPartition, assign, partition_for
from caregraph.errors import BusError, BusUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
    topic_id INTEGER NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    PRIMARY KEY(topic_id, part, off));
CREATE TABLE IF NOT EXISTS offsets(
    grp TEXT NOT NULL, topic_id INTEGER NOT NULL, part INTEGER NOT NULL,
    off INTEGER NOT NULL, PRIMARY KEY(grp, topic_id, part));
CREATE TABLE IF NOT EXISTS members(
    grp TEXT NOT NULL, member TEXT NOT NULL, topics TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, heartbeat REAL NOT NULL, PRIMARY KEY(grp, member));
"""

DB_NAME = "bus.sqlite3"


_LOCK_WAIT_S = 30.0
"""How long a statement waits for a lock another connection holds (the write lock above all)."""


def _connect(path: Path, fsync: bool) -> sqlite3.Connection:
    """Open the log; autocommit mode, so transactions are the explicit BEGINs below."""
    try:
        conn = sqlite3.connect(
            path, timeout=_LOCK_WAIT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    except sqlite3.Error as exc:
        raise BusUnavailable(
            f"cannot open the embedded bus at {path}: {exc}; check CAREGRAPH_DATA_DIR"
        ) from exc
    return conn


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to ``_LOCK_WAIT_S`` for the write lock.

    Not through SQLite's busy handler: it sleeps in steps growing to 100 ms, so a writer
    queued behind a long transaction (a normalizer's batch of thousands of records) went on
    sleeping for up to tens of milliseconds after the lock was free, and the MLLP senders
    waiting for their ACKs with it. Polling with a backoff capped at 2 ms takes the lock
    soon after it is released. Other statements keep the busy timeout.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        delay = 0.0002
        deadline: float | None = None
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + _LOCK_WAIT_S
                elif now >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(_LOCK_WAIT_S * 1000)}")


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; BEGIN IMMEDIATE takes the write lock up front, so two
    writers queue (``_begin_immediate``) instead of failing halfway with SQLITE_BUSY."""
    try:
        _begin_immediate(conn)
    except sqlite3.Error as exc:
        raise BusError(f"embedded bus: cannot start a write: {exc}") from exc
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise BusError(f"embedded bus: commit failed: {exc}") from exc


class EmbeddedBus(Bus):
    """A durable bus in ``data_dir/bus.sqlite3``; safe for many threads and processes.

    ``partitions`` is used for topics this process creates (explicitly or by publishing to
    them); a topic keeps the count it was created with. ``session_timeout_s`` is how long a
    silent group member keeps its partitions, i.e. how long one batch may take: 120 s, as
    the Kafka bus's ``max.poll.interval``, because a member whose process died is noticed
    at once anyway (``kill(pid, 0)``) and a store writer's batch on a loaded machine has
    taken more than 10 s, lost its partitions and been delivered again. Raises
    ``BusUnavailable`` if the file cannot be opened. With ``retention_s``, publishing
    prunes (see ``prune``) at most once a minute.
    ``max_poll_bytes`` bounds the memory of one poll (DICOM objects can be large).
    """

    def __init__(
        self,
        data_dir: Path,
        partitions: int = 6,
        *,
        fsync: bool = True,
        session_timeout_s: float = 120.0,
        retention_s: float | None = None,
        max_poll_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {partitions}")
        self.data_dir = Path(data_dir)
        self.partitions = partitions
        self.fsync = fsync
        self.session_timeout_s = session_timeout_s
        self.retention_s = retention_s
        self.max_poll_bytes = max_poll_bytes
        self._last_prune = time.monotonic()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BusUnavailable(
                f"cannot create the bus directory {self.data_dir}: {exc.strerror}; "
                "check CAREGRAPH_DATA_DIR"
            ) from exc
        self.path = self.data_dir / DB_NAME
        self._lock = threading.Lock()  # guards self._conn
        self._queue_cond = threading.Condition()  # guards _queue and _writing
        self._queue: list[_Ticket] = []
        self._writing = False
        # Consumers of this bus wait on it; a local publish on one of their topics wakes
        # them at once (``_published_count`` says which topics had one). Consumers fed by
        # other processes fall back to polling the file every few milliseconds.
        self._published = threading.Condition()
        self._published_count: dict[str, int] = {}
        self._conn = _connect(self.path, fsync)
        self._topics: dict[str, tuple[int, int]] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._closed = False
        try:
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise BusUnavailable(
                f"cannot initialise the embedded bus at {self.path}: {exc}"
            ) from exc

    # -- Bus ---------------------------------------------------------------------------

    def publish_many(self, records: Sequence[Record]) -> None:
        """Append ``records`` in one transaction; durable when this returns.

        Group commit: while one thread writes, the batches of other threads queue up and the
        next writer appends them all in one transaction, so concurrent publishers (one per
        MLLP connection, say) share one fsync instead of waiting for one each.
        """
        if not records:
            return
        for record in records:
            _check_topic(record.topic)
        ticket = _Ticket(records)
        with self._queue_cond:
            self._queue.append(ticket)
            while not ticket.done:
                if self._writing:
                    self._queue_cond.wait()
                    continue
                self._writing = True
                group, self._queue = self._queue, []
                error: BaseException | None = None
                self._queue_cond.release()
                try:
                    self._append([r for t in group for r in t.records])
                except (sqlite3.Error, BusError) as exc:
                    error = exc
                finally:
                    self._queue_cond.acquire()
                    self._writing = False
                    for t in group:
                        t.done, t.error = True, error
                    self._queue_cond.notify_all()
        if ticket.error is not None:
            raise BusError(f"embedded bus: publish failed: {ticket.error}") from ticket.error
        with self._published:
            for topic in {r.topic for r in records}:
                self._published_count[topic] = self._published_count.get(topic, 0) + 1
            self._published.notify_all()
        if self.retention_s is not None and time.monotonic() - self._last_prune > 60.0:
            self._last_prune = time.monotonic()  # one thread prunes; the others go on
            self.prune(self.retention_s)

    def _append(self, records: list[Record]) -> None:
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._check_open()
            # partitions and header text before the write lock, which other processes wait
            # for (a normalizer's batch is thousands of records); only topics not seen yet
            # need the transaction
            placed = self._place(None, records)
            with _write(self._conn) as conn:
                if placed is None:
                    placed = self._place(conn, records)
                    assert placed is not None  # with a transaction, every topic is created
                conn.executemany(
                    "INSERT INTO messages(topic_id, part, off, key, value, headers, ts_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    _numbered(conn, placed, now_ms),
                )

    def subscribe(
        self, group: str, topics: Iterable[str], *, session_timeout_s: float | None = None
    ) -> EmbeddedConsumer:
        wanted = sorted(set(topics))
        if not wanted:
            raise ValueError("subscribe needs at least one topic")
        self.ensure_topics(wanted)
        return EmbeddedConsumer(self, group, wanted, session_timeout_s or self.session_timeout_s)

    def ensure_topics(self, topics: Iterable[str]) -> None:
        names = list(topics)
        for name in names:
            _check_topic(name)
        with self._lock:
            self._check_open()
            try:
                with _write(self._conn) as conn:
                    for name in names:
                        self._topic(conn, name)
            except sqlite3.Error as exc:
                raise BusError(f"embedded bus: cannot create topics {names}: {exc}") from exc

    def ping(self) -> None:
        with self._lock:
            if self._closed:
                raise BusUnavailable(f"the embedded bus at {self.path} is closed")
            try:
                self._conn.execute("SELECT count(*) FROM topics").fetchone()
            except sqlite3.Error as exc:
                raise BusUnavailable(f"cannot read the embedded bus at {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
        with self._published:
            self._published.notify_all()

    # -- maintenance -------------------------------------------------------------------

    def prune(self, keep_s: float) -> int:
        """Delete messages older than ``keep_s`` seconds that every group has committed.

        Conservative, unlike Kafka's time-based retention: a message no group has committed
        is kept however old, so nothing unread is lost (a group that stopped for good holds
        its topic's log; drop its rows from ``offsets`` to release it). The last message of
        each partition stays, so offsets are never reused. Returns how many were deleted;
        works partition by partition, so each delete is an index range scan.
        """
        cutoff = int((time.time() - keep_s) * 1000)
        deleted = 0
        with self._lock:
            self._check_open()
            try:
                with _write(self._conn) as conn:
                    bounds = conn.execute(
                        "SELECT o.topic_id, o.part, min(o.off),"
                        " (SELECT max(m.off) FROM messages AS m"
                        "  WHERE m.topic_id = o.topic_id AND m.part = o.part)"
                        " FROM offsets AS o GROUP BY o.topic_id, o.part"
                    ).fetchall()
                    for topic_id, part, committed, last in bounds:
                        if last is None:
                            continue
                        deleted += conn.execute(
                            "DELETE FROM messages WHERE topic_id = ? AND part = ?"
                            " AND off < ? AND ts_ms < ?",
                            (topic_id, part, min(committed, last), cutoff),
                        ).rowcount
            except sqlite3.Error as exc:
                raise BusError(f"embedded bus: prune failed: {exc}") from exc
        self._last_prune = time.monotonic()
        return deleted

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"the embedded bus at {self.path} is closed")

    def _topic(self, conn: sqlite3.Connection, name: str) -> tuple[int, int]:
        """(id, partitions) of a topic, created if missing; call inside a write."""
        known = self._topics.get(name)
        if known is not None:
            return known
        conn.execute(
            "INSERT OR IGNORE INTO topics(name, partitions) VALUES (?, ?)",
            (name, self.partitions),
        )
        row = conn.execute("SELECT id, partitions FROM topics WHERE name = ?", (name,)).fetchone()
        self._topics[name] = known = (int(row[0]), int(row[1]))
        self._round_robin[name] = itertools.count()
        return known

    def _place(
        self, conn: sqlite3.Connection | None, records: Sequence[Record]
    ) -> list[_Placed] | None:
        """(topic id, partition, key, value, header text) of each record; None when a topic
        is not known yet and there is no write transaction (``conn``) to create it in."""
        placed: list[_Placed] = []
        # the records of one message usually share one headers mapping (a normalizer's
        # dozen resources): written once per mapping, not once per record
        texts: dict[int, str] = {}
        topics = self._topics
        for r in records:
            known = topics.get(r.topic)
            if known is None:
                if conn is None:
                    return None
                known = self._topic(conn, r.topic)
            topic_id, count = known
            if r.key is None:
                part = next(self._round_robin[r.topic]) % count
            else:
                part = partition_for(r.key, count)
            text = texts.get(id(r.headers))
            if text is None:
                text = texts[id(r.headers)] = _dump_headers(r.headers)
            placed.append((topic_id, part, r.key, r.value, text))
        return placed


_Placed = tuple[int, int, bytes | None, bytes, str]
_Row = tuple[int, int, int, bytes | None, bytes, str, int]


def _numbered(conn: sqlite3.Connection, placed: list[_Placed], now_ms: int) -> list[_Row]:
    """The rows to insert: each placed record with the next offset of its partition; call
    inside the write transaction."""
    next_off: dict[tuple[int, int], int] = {}
    rows = []
    for topic_id, part, key, value, text in placed:
        off = next_off.get((topic_id, part))
        if off is None:
            off = _next_off(conn, topic_id, part)
        next_off[(topic_id, part)] = off + 1
        rows.append((topic_id, part, off, key, value, text, now_ms))
    return rows


def _dump_headers(headers: Mapping[str, str]) -> str:
    """Headers as compact JSON text: orjson (a few times faster than ``json``, which is kept
    for what orjson refuses, e.g. a lone surrogate); both are read back by ``_load_headers``."""
    try:
        return orjson.dumps(dict(headers)).decode()
    except TypeError:
        return json.dumps(dict(headers))


def _load_headers(text: str) -> dict[str, str]:
    try:
        loaded: dict[str, str] = orjson.loads(text)
    except orjson.JSONDecodeError:  # what json wrote and orjson refuses (lone surrogates)
        loaded = json.loads(text)
    return loaded


def _check_topic(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise BusError(f"not a topic name: {name!r}")


class _Ticket:
    """One caller's batch waiting for a group commit."""

    __slots__ = ("done", "error", "records")

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = records
        self.done = False
        self.error: BaseException | None = None


def _next_off(conn: sqlite3.Connection, topic_id: int, part: int) -> int:
    row = conn.execute(
        "SELECT max(off) FROM messages WHERE topic_id = ? AND part = ?", (topic_id, part)
    ).fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


#: How long an idle consumer trusts ``data_version`` alone before it reads its assignment
#: and partitions again (see ``EmbeddedConsumer._may_have_news``).
QUIET_RECHECK_S = 1.0


class EmbeddedConsumer(Consumer):
    """A group member on an ``EmbeddedBus``; one connection of its own, one thread at a time."""

    def __init__(
        self, bus: EmbeddedBus, group: str, topics: list[str], session_timeout_s: float
    ) -> None:
        self._bus = bus
        self._group = group
        self._topics = topics
        self._session_timeout_s = session_timeout_s
        self._member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._conn = _connect(bus.path, fsync=False)
        self._topic_names: dict[int, str] = {}
        self._counts: dict[str, int] = {}
        self._ids: dict[str, int] = {}
        self._owned: frozenset[TopicPartition] = frozenset()
        self._positions: dict[TopicPartition, int] = {}
        self._last_heartbeat = 0.0
        self._start = 0  # where the next poll starts reading (see ``_fetch``)
        self._quiet: tuple[int, float] | None = None  # see ``_may_have_news``
        self._closed = False
        self._heartbeat(force=True)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while True:
            if self._closed:
                raise BusError("poll on a closed consumer")
            seen = self._local_publishes()  # before the read: a publish after it wakes us
            try:
                self._heartbeat()
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                batch = []
                if self._may_have_news(version):
                    self._sync_assignment()
                    batch = self._fetch(max_records)
                    recheck_at = time.monotonic() + QUIET_RECHECK_S
                    self._quiet = None if batch else (version, recheck_at)
            except sqlite3.Error as exc:
                raise BusError(f"embedded bus: poll failed: {exc}") from exc
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return batch
            self._wait(seen, time.monotonic() + min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _may_have_news(self, version: int) -> bool:
        """False while nothing can have changed since a poll that found nothing: no other
        connection committed since (SQLite's ``data_version``: a publish of any process, a
        member's heartbeat or commit), and less than ``QUIET_RECHECK_S`` passed, after
        which the assignment is checked again (a member's session runs out without a
        write). An idle consumer then reads one pragma a poll, not every partition."""
        if self._quiet is None:
            return True
        quiet_version, recheck_at = self._quiet
        return version != quiet_version or time.monotonic() >= recheck_at

    def _local_publishes(self) -> int:
        counts = self._bus._published_count
        return sum(counts.get(topic, 0) for topic in self._topics)

    def _wait(self, seen: int, until: float) -> None:
        """Until a publish of this process on one of our topics, or ``until`` (when the file
        is read again, for other processes' publishes). Publishes on other topics do not
        wake us: with every consumer of a process woken by every publish, the idle ones
        (device trail, DICOM and device normalizers, MPI) spent 4-5% of a core each
        re-reading the file at 100 beds."""
        published = self._bus._published
        with published:
            while not self._bus._closed and self._local_publishes() == seen:
                left = until - time.monotonic()
                if left <= 0:
                    return
                published.wait(left)

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        upto: dict[TopicPartition, int] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            upto[tp] = max(upto.get(tp, 0), m.offset + 1)
        try:
            with _write(self._conn) as conn:
                live = self._live_members(conn)
                if self._member not in live:
                    raise CommitFailed(
                        f"member {self._member} of group {self._group!r} timed out; "
                        "its partitions moved to other members"
                    )
                owned = assign(live, self._partition_counts(conn))[self._member]
                lost = sorted(tp for tp in upto if tp not in owned)
                if lost:
                    raise CommitFailed(f"group {self._group!r} was rebalanced; {lost} moved away")
                conn.executemany(
                    "INSERT INTO offsets(grp, topic_id, part, off) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(grp, topic_id, part) DO UPDATE SET off = excluded.off",
                    [(self._group, self._ids[t], p, off) for (t, p), off in upto.items()],
                )
                self._beat(conn)
        except sqlite3.Error as exc:
            raise BusError(f"embedded bus: commit failed: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with _write(self._conn) as conn:
                conn.execute(
                    "DELETE FROM members WHERE grp = ? AND member = ?",
                    (self._group, self._member),
                )
        except (sqlite3.Error, BusError):
            pass  # the others expire this member after the session timeout anyway
        finally:
            self._conn.close()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._owned

    # -- group membership ----------------------------------------------------------------

    def _heartbeat(self, *, force: bool = False) -> None:
        """Refresh this member's row and drop dead members, at most every third of the
        session timeout (each heartbeat is a write transaction)."""
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self._session_timeout_s / 3:
            return
        with _write(self._conn) as conn:
            self._beat(conn)
            self._expire(conn)

    def _beat(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO members(grp, member, topics, host, pid, heartbeat)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(grp, member)"
            " DO UPDATE SET heartbeat = excluded.heartbeat",
            (
                self._group,
                self._member,
                json.dumps(self._topics),
                socket.gethostname(),
                os.getpid(),
                time.time(),
            ),
        )
        self._last_heartbeat = time.monotonic()

    def _expire(self, conn: sqlite3.Connection) -> None:
        host = socket.gethostname()
        stale = time.time() - self._session_timeout_s
        dead = [
            (grp, member)
            for grp, member, member_host, pid, heartbeat in conn.execute(
                "SELECT grp, member, host, pid, heartbeat FROM members"
            )
            if heartbeat < stale or (member_host == host and not _alive(pid))
        ]
        conn.executemany("DELETE FROM members WHERE grp = ? AND member = ?", dead)

    def _live_members(self, conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
        stale = time.time() - self._session_timeout_s
        return {
            member: frozenset(json.loads(topics))
            for member, topics in conn.execute(
                "SELECT member, topics FROM members WHERE grp = ? AND heartbeat >= ?",
                (self._group, stale),
            )
        }

    def _partition_counts(self, conn: sqlite3.Connection) -> dict[str, int]:
        for topic_id, name, count in conn.execute("SELECT id, name, partitions FROM topics"):
            if name not in self._counts:
                self._ids[name] = topic_id
                self._topic_names[topic_id] = name
                self._counts[name] = count
        return self._counts

    def _sync_assignment(self) -> None:
        """Recompute what this member owns; new partitions start at the committed offset."""
        conn = self._conn
        live = self._live_members(conn)
        if self._member not in live:
            self._heartbeat(force=True)  # expired while busy: rejoin
            live = self._live_members(conn)
        owned = assign(live, self._partition_counts(conn)).get(self._member, frozenset())
        if owned == self._owned:
            return
        committed = {
            (self._topic_names[topic_id], part): off
            for topic_id, part, off in conn.execute(
                "SELECT topic_id, part, off FROM offsets WHERE grp = ?", (self._group,)
            )
        }
        self._positions = {
            tp: self._positions[tp] if tp in self._owned else committed.get(tp, 0)
            for tp in sorted(owned)
        }
        self._owned = owned

    def _fetch(self, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages and ``max_poll_bytes`` of values (but at least one
        message, however large).

        Each poll starts at the partition after the last one it read from, so partitions
        with a backlog take turns, one poll each. (Starting one partition further each poll
        did not: a consumer of many topics, of which two had a backlog, started on an empty
        partition most of the time and then read whichever backlog came next in order, for
        as many polls in a row as there were empty partitions before it. The store writer
        of ``bench/hl7.py`` wrote every Observation before the Provenances of the same
        messages, and in a 1,000-bed run no Observation became searchable for 10-15 s at a
        time, every 35-40 s.)
        """
        if not self._positions:
            return []
        order = list(self._positions)
        start = self._start % len(order)
        self._start = start + 1  # nothing read: the next poll starts one further
        batch: list[Message] = []
        budget = self._bus.max_poll_bytes
        used = 0
        full = False
        loads = _load_headers
        for i, tp in enumerate(order[start:] + order[:start]):
            room = max_records - len(batch)
            if room <= 0 or full:
                break
            topic, part = tp
            cursor = self._conn.execute(
                "SELECT off, key, value, headers, ts_ms FROM messages"
                " WHERE topic_id = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?",
                (self._ids[topic], part, self._positions[tp], room),
            )
            last = None
            for off, key, value, headers, ts in cursor:
                if batch and used + len(value) > budget:
                    full = True
                    break
                batch.append(Message(topic, part, off, key, value, loads(headers), ts))
                last = off
                used += len(value)
            cursor.close()
            if last is not None:
                self._positions[tp] = last + 1
                self._start = start + i + 1
        return batch


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
