"""The database seam: one small interface over SQLite (embedded) and PostgreSQL (production).

Everything above this module writes SQL once, with ``?`` placeholders and the portable subset
both engines share (row values, ``ON CONFLICT``, ``IN (...)``); :class:`Database` translates the
placeholders for psycopg and wraps every driver error in ``caregraph.errors.StoreError`` so
callers never see ``sqlite3`` or ``psycopg`` exceptions.

Connections are per thread: SQLite connections must not cross threads, and a small fixed
set of threads (the API's worker pool, the store writer) is what caregraph runs, so a pool
library would add nothing but a dependency.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Protocol, final
from urllib.parse import urlsplit

import psycopg

from caregraph.errors import ConfigError, StoreError, StoreUnavailable
from fhir_store.dates import now_instant
from fhir_store.errors import StoreConflict
from fhir_store.schema import MIGRATIONS, PerDialect

Params = Sequence[Any]
#: One schema change: its version and the statements that make it.
Migration = tuple[int, Sequence[str | PerDialect]]
#: Rows per multi-row INSERT (see ``Transaction.insert_rows``). Each statement binds its
#: values holding the GIL and inserts them without it: at 3,000 rather than 500 the store
#: writer's insert thread comes back for the GIL a sixth as often (``bench/store_writer.py
#: --monitors 1000 --batch 400 --messages 10000``, two pairs: wall 1.99 / 1.99 -> 1.92 /
#: 1.86 ms per message, bytes written -13%).
ROWS_PER_STATEMENT = 3000
#: The PostgreSQL advisory lock every caregraph process takes while it migrates.
_SCHEMA_LOCK_KEY = 0x63617265677261  # "caregra"


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Transaction:
    """One open transaction on one connection; SQL uses ``?`` placeholders on both engines."""

    def __init__(self, db: Database, raw: Any) -> None:
        self._db = db
        self._raw = raw

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement; returns the cursor to fetch from."""
        try:
            return self._raw.execute(self._db.translate(sql), params)  # type: ignore[no-any-return]
        except (sqlite3.Error, psycopg.Error) as exc:
            raise self._db.wrap_error(exc) from exc

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for many parameter rows (batched by the driver)."""
        if not rows:
            return
        try:
            if self._db.dialect == "sqlite":
                self._raw.executemany(sql, rows)
            else:
                with self._raw.cursor() as cur:
                    cur.executemany(self._db.translate(sql), rows)
        except (sqlite3.Error, psycopg.Error) as exc:
            raise self._db.wrap_error(exc) from exc

    def new_rids(self, count: int) -> list[int]:
        """``count`` resource numbers never handed out before (``resources.rid``), rising.

        SQLite serializes writers, so a counter row bumped inside the transaction will do;
        PostgreSQL's writers run side by side, and a sequence never makes them wait.
        """
        if count <= 0:
            return []
        if self._db.dialect == "postgresql":
            rows = self.execute(
                "SELECT nextval('resource_rid') FROM generate_series(1, ?)", (count,)
            ).fetchall()
            return sorted(int(r[0]) for r in rows)
        end = int(
            self.execute(
                "UPDATE rid_counter SET next = next + ? RETURNING next", (count,)
            ).fetchone()[0]
        )
        return list(range(end - count, end))

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Params]) -> None:
        """Bulk-load rows: PostgreSQL's COPY (several times faster than INSERT there),
        a multi-row INSERT on SQLite (where that is already the fast path)."""
        if not rows:
            return
        if self._db.dialect != "postgresql":
            self.insert_rows(table, columns, rows)
            return
        try:
            with (
                self._raw.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except (sqlite3.Error, psycopg.Error) as exc:
            raise self._db.wrap_error(exc) from exc

    def now(self) -> str:
        """The database's clock, as stored instants are written (see ``fhir_store.dates``).

        Every writer and every search takes time from the database, not from its own host,
        so lastUpdated order and search snapshots hold across hosts with skewed clocks.
        """
        return self._db.clock(self)

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Params], suffix: str = ""
    ) -> None:
        """Multi-row ``INSERT`` in chunks: one statement per chunk, not one per row.

        ``suffix`` follows the VALUES list (e.g. an ``ON CONFLICT`` clause). Chunks have a
        fixed size (``ROWS_PER_STATEMENT``, fewer for wide rows), so the same few statement
        texts come back and the driver's statement cache spares SQLite compiling a new
        statement of thousands of parameters for each batch (measured: a third less time
        per index row than one statement per batch).
        """
        if not rows:
            return
        width = len(columns)
        chunk = max(1, min(ROWS_PER_STATEMENT, self._db.max_params // width))
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = "(" + ", ".join("?" * width) + ")"
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            flat = [value for row in part for value in row]
            self.execute(head + ", ".join([one] * len(part)) + suffix, flat)


class Database(ABC):
    """A connected database with the current schema; thread-safe through a small pool.

    Public methods are written once here; subclasses only connect and describe their dialect.
    A transaction borrows one connection from the pool (at most ``max_connections`` open,
    whichever threads ask), so a 40-thread web server does not hold 40 PostgreSQL sessions.
    """

    dialect: str
    #: Bound parameters one statement may carry (SQLite's limit is 32766, psycopg's 65535).
    max_params: int = 30000

    def __init__(
        self, where: str, max_connections: int = 8, acquire_timeout_s: float = 30.0
    ) -> None:
        if max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, not {max_connections}")
        self.where = where
        self.max_connections = max_connections
        self.acquire_timeout_s = acquire_timeout_s
        self._idle: list[Any] = []
        self._open = 0
        self._cond = threading.Condition()
        self._local = threading.local()

    @abstractmethod
    def _connect(self) -> Any:
        """A new raw DB-API connection (autocommit off)."""

    @abstractmethod
    def _begin(self, raw: Any, write: bool) -> None:
        """Start a transaction on ``raw``."""

    @abstractmethod
    def translate(self, sql: str) -> str:
        """``?`` placeholders to the driver's style."""

    def clock(self, tx: Transaction) -> str:
        """The current instant in column form; the database server's clock where it has one."""
        return now_instant()[0]

    @abstractmethod
    def wrap_error(self, exc: Exception) -> StoreError:
        """The caregraph error for a driver error; unreachable servers become StoreUnavailable."""

    @final
    def _acquire(self) -> tuple[Any, bool]:
        """A connection and whether it is fresh; waits while all are busy."""
        with self._cond:
            deadline = time.monotonic() + self.acquire_timeout_s
            while not self._idle and self._open >= self.max_connections:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(
                        f"all {self.max_connections} connections to {self.where} stayed busy"
                        f" for {self.acquire_timeout_s:g}s"
                    )
                self._cond.wait(remaining)
            if self._idle:
                return self._idle.pop(), False
            self._open += 1
        try:
            return self._connect(), True
        except (sqlite3.Error, psycopg.Error, OSError) as exc:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise StoreUnavailable(self.unreachable(exc)) from exc

    @final
    def _release(self, raw: Any) -> None:
        with self._cond:
            self._idle.append(raw)
            self._cond.notify()

    def unreachable(self, exc: BaseException) -> str:
        """The one-line reason shown by ``caregraph check`` and ``/readyz``."""
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot reach {self.where}: {reason}; check CAREGRAPH_DATABASE_URL"

    @final
    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        """A transaction committed when the block ends, rolled back if it raises.

        ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so two
        writers queue instead of one failing with "database is locked" mid-transaction.

        Raises:
            StoreError: a transaction is already open in this thread (nesting would wait on
                itself under SQLite's write lock).
            StoreUnavailable: the database cannot be reached, or the pool stayed busy.
        """
        if getattr(self._local, "active", False):
            raise StoreError("a transaction is already open in this thread; nesting is a bug")
        with self._in_turn(write):
            raw = self._begun(write)
            self._local.active = True
            try:
                yield Transaction(self, raw)
            except BaseException:
                self._local.active = False
                try:
                    raw.rollback()
                except (sqlite3.Error, psycopg.Error):
                    self._discard(raw)
                else:
                    self._release(raw)
                raise
            self._local.active = False
            try:
                raw.commit()
            except (sqlite3.Error, psycopg.Error) as exc:
                self._discard(raw)
                raise self.wrap_error(exc) from exc
            self._release(raw)

    def _in_turn(self, write: bool) -> AbstractContextManager[object]:
        """What a transaction holds from before it begins until it ends: nothing, unless
        the engine has one writer at a time (SQLite)."""
        return nullcontext()

    def _begun(self, write: bool) -> Any:
        """A pooled connection with a transaction begun; an idle connection that went stale
        (the server restarted) is replaced once by a fresh one."""
        while True:
            raw, fresh = self._acquire()
            try:
                self._begin(raw, write)
            except (sqlite3.Error, psycopg.Error) as exc:
                self._discard(raw)
                if fresh:
                    raise self.wrap_error(exc) from exc
                continue
            return raw

    def _discard(self, raw: Any) -> None:
        """Close a connection that may be broken; its slot in the pool frees up."""
        with suppress(sqlite3.Error, psycopg.Error):
            raw.close()
        with self._cond:
            self._open -= 1
            self._cond.notify()

    @final
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` with a one-line reason unless the database answers.

        Raises:
            StoreUnavailable: the server is down, refuses us, or the file cannot be opened.
        """
        try:
            with self.transaction(write=False) as tx:
                tx.execute("SELECT 1").fetchone()
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(self.unreachable(exc)) from exc

    @final
    def migrate(self, upto: int | None = None) -> int:
        """Apply the store's migrations this database has not seen yet (up to ``upto``, for
        tests of upgrades); return the schema version."""
        return self.apply_migrations("schema_version", MIGRATIONS, upto)

    @final
    def apply_migrations(
        self, table: str, migrations: Sequence[Migration], upto: int | None = None
    ) -> int:
        """Apply ``migrations`` newer than the version recorded in ``table``; return it.

        Several processes starting at once on a fresh database (a scaled-out deployment)
        would race on ``CREATE TABLE``; the schema lock makes them take turns, and each
        finds what the one before it created.
        """
        with self.transaction() as tx:
            self._lock_schema(tx)
            tx.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            row = tx.execute(f"SELECT MAX(version) FROM {table}").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            for version, statements in migrations:
                if version <= current or (upto is not None and version > upto):
                    continue
                for statement in statements:
                    if isinstance(statement, PerDialect):
                        statement = getattr(statement, self.dialect)
                    tx.execute(statement)
                tx.execute(f"INSERT INTO {table} (version) VALUES (?)", (version,))
                current = version
        return current

    @abstractmethod
    def _lock_schema(self, tx: Transaction) -> None:
        """Serialize migrations across processes until ``tx`` ends."""

    @final
    def close(self) -> None:
        """Close the idle connections; a transaction still running closes its own on return."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for raw in idle:
            with suppress(sqlite3.Error, psycopg.Error):
                raw.close()
        self._closed()

    def _closed(self) -> None:  # noqa: B027 - optional hook
        """Let go of what the engine holds beside its connections: nothing by default."""


_FILE_LOCKS: dict[Path, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    """One write lock per database file in this process, however many ``Database``s
    open it."""
    key = path.resolve()
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


#: Page cache of one pool of SQLite connections, in KiB, shared out evenly among them
#: (``connection_cache_kib``): 32 MiB each for the default 8. The store writer's
#: transactions want that much (bulk fill of 5,000-resource batches, CPU per resource:
#: 32 MiB 138-147 us, 8 MiB 160-163 us, the difference in system time re-reading pages).
POOL_CACHE_KIB = 256 * 1024
#: No connection gets less than SQLite's own default cache (2,000 KiB).
MIN_CONNECTION_CACHE_KIB = 2000
#: Prepared statements each connection keeps (Python's default is 128). A multi-row INSERT
#: of 500 rows compiles to ~300 KiB, and the last chunk of each batch has a size of its
#: own, so 128 of them held ~19 MiB per connection that had written (measured with
#: ``sqlite3_db_status``, 50-bed run); 64 still keep the few full-chunk statements that
#: come back with every batch.
CACHED_STATEMENTS = 64
#: Page size of a new SQLite database, in bytes (an existing file keeps the size it was
#: made with). Stores made by the release before this one have 16 KiB pages, which was
#: measured on small stores only: 13% less store-writer CPU for ``bench/hl7.py`` (20,000
#: Observations). On a store of 1,000,000 Observations the opposite holds. A batch of
#: 1,000 Observations over 1,000 patients inserts into about 3,000 distinct leaf pages
#: (the reference and compound indexes lead with the patient), each written whole to the
#: WAL and again by the checkpoint, so the bytes written follow the page size. Scratch
#: runs, ``upsert_many`` of 1,000 into that store, alternated, CPU per resource: 16 KiB
#: 232-288 us, 8 KiB 192-200, 4 KiB 159-181; the bulk fill of the 1,000,000 took 2.5 min
#: at 4 KiB against 3 at 16 KiB.
PAGE_SIZE = 4096


def connection_cache_kib(pool_kib: int, connections: int) -> int:
    """Each connection's share of the pool's page cache, in KiB (``PRAGMA cache_size``
    takes it negated), never below SQLite's default.

    A connection's cache holds the pages it read outside the mapped part of the file
    and the pages it wrote. In WAL mode a connection drops its whole cache when it
    begins a transaction after another connection wrote, so in practice only the
    connection that wrote last has a full one (50-bed run: ~35 MiB in all at 32 MiB
    each, up to ~9 MiB at 8 MiB each; ``sqlite3_db_status``); the budget bounds the pool
    however large it is made, where a fixed size per connection grew with it.
    """
    return max(MIN_CONNECTION_CACHE_KIB, pool_kib // max(1, connections))


class _Checkpointer:
    """Copies a database's WAL into its file from a thread of its own: one per file in this
    process, while a ``SqliteDatabase`` of this process has connections to it.

    SQLite's default copies inside the commit that takes the WAL past 1,000 pages, with two
    fsyncs: at 300 beds more than half of the store writer's commit time went there
    (``py-spy --native``), on the thread every reading waits for. Connections here turn
    ``wal_autocheckpoint`` up to ``BACKSTOP_PAGES`` and this thread checkpoints instead,
    PASSIVE (it never waits for a reader or a writer), every ``BUSY_PAUSE_S`` while the WAL
    grows and less often when it does not; the commits copy again only if the WAL reaches
    the backstop (this thread failing). Copying once a second instead (tried in an earlier
    session) let the WAL grow to tens of MB between copies, and every reader's page lookups
    slowed.
    """

    BUSY_PAUSE_S = 0.02
    IDLE_PAUSE_S = 0.5
    #: ``wal_autocheckpoint`` of the connections (SQLite's default: 1,000 pages).
    BACKSTOP_PAGES = 10_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.users = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        pause, last = self.BUSY_PAUSE_S, None
        while not self.stop.wait(pause):
            try:
                if conn is None:
                    conn = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True)
                    conn.execute("PRAGMA busy_timeout=0")
                _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                frames = last  # the file is gone or busy: try again later
            if frames != last:  # the WAL grew (or a writer restarted it): keep up
                pause, last = self.BUSY_PAUSE_S, frames
            else:
                pause = min(2 * pause, self.IDLE_PAUSE_S)
        if conn is not None:
            conn.close()


_CHECKPOINTERS: dict[Path, _Checkpointer] = {}


def _use_checkpointer(path: Path) -> None:
    """Count one more user of ``path``'s checkpointer, starting it for the first."""
    key = path.resolve()
    with _FILE_LOCKS_GUARD:
        found = _CHECKPOINTERS.get(key)
        if found is None:
            found = _CHECKPOINTERS[key] = _Checkpointer(key)
            found.thread.start()
        found.users += 1


def _leave_checkpointer(path: Path) -> None:
    """One user fewer; the last one stops the thread (within ``IDLE_PAUSE_S``)."""
    key = path.resolve()
    with _FILE_LOCKS_GUARD:
        found = _CHECKPOINTERS.get(key)
        if found is not None:
            found.users -= 1
            if found.users <= 0:
                found.stop.set()
                del _CHECKPOINTERS[key]


class SqliteDatabase(Database):
    """SQLite in WAL mode: readers never block the single writer."""

    dialect = "sqlite"
    max_params = 32000

    def __init__(
        self,
        path: Path,
        max_connections: int = 8,
        pool_cache_kib: int = POOL_CACHE_KIB,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(f"SQLite at {path}", max_connections)
        self.path = path
        self.pool_cache_kib = pool_cache_kib
        self.page_size = page_size
        self._checkpointing = False  # whether this object counts as a checkpointer's user

    def _connect(self) -> Any:
        raw = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=CACHED_STATEMENTS,
        )
        # Only a database with no page yet takes it: before WAL mode writes the header.
        raw.execute(f"PRAGMA page_size={self.page_size}")
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA busy_timeout=30000")
        # Index probes of a search hop around a large file: keep hot pages mapped and
        # cached rather than re-read through 2 MB of default page cache per connection;
        # the pool's cache is one budget shared out (``connection_cache_kib``).
        kib = connection_cache_kib(self.pool_cache_kib, self.max_connections)
        raw.execute(f"PRAGMA cache_size={-kib}")
        raw.execute("PRAGMA mmap_size=268435456")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute(f"PRAGMA wal_autocheckpoint={_Checkpointer.BACKSTOP_PAGES}")
        with self._cond:
            start = not self._checkpointing
            self._checkpointing = True
        if start:
            _use_checkpointer(self.path)
        return raw

    def _closed(self) -> None:
        with self._cond:
            stop, self._checkpointing = self._checkpointing, False
        if stop:
            _leave_checkpointer(self.path)

    def _begin(self, raw: Any, write: bool) -> None:
        raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _in_turn(self, write: bool) -> Iterator[object]:
        """Writers of this process queue on a lock of the file before ``BEGIN IMMEDIATE``.

        SQLite lets one writer in at a time and makes the others poll, sleeping up to 100
        ms between tries, so the lock is often free while they sleep: with the store
        writer, the MPI and the graph in one process, writers waited more than they
        wrote. Writers of other processes still meet SQLite's busy timeout.
        """
        if not write:
            yield None
            return
        lock = _file_lock(self.path)
        if not lock.acquire(timeout=self.acquire_timeout_s):
            raise StoreUnavailable(
                f"{self.where}: another writer of this process held the database for"
                f" {self.acquire_timeout_s:g} s"
            )
        try:
            yield None
        finally:
            lock.release()

    def _lock_schema(self, tx: Transaction) -> None:
        """Nothing to add: the write transaction's ``BEGIN IMMEDIATE`` already holds the lock."""

    def translate(self, sql: str) -> str:
        return sql

    def wrap_error(self, exc: Exception) -> StoreError:
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreConflict(str(exc))
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            return StoreUnavailable(self.unreachable(exc))
        return StoreError(f"{self.where}: {exc}")


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3; READ COMMITTED, row locks taken explicitly by the store."""

    dialect = "postgresql"
    max_params = 60000

    def __init__(self, url: str, max_connections: int = 10) -> None:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        super().__init__(f"PostgreSQL at {host}:{port}{parts.path or '/'}", max_connections)
        self.url = url

    def _connect(self) -> Any:
        return psycopg.connect(self.url, connect_timeout=5, autocommit=True)

    def _begin(self, raw: Any, write: bool) -> None:
        raw.execute("BEGIN")

    def translate(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _lock_schema(self, tx: Transaction) -> None:
        # released at commit; the key is arbitrary but fixed for every caregraph process
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))

    def clock(self, tx: Transaction) -> str:
        row = tx.execute(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        ).fetchone()
        return str(row[0])

    def wrap_error(self, exc: Exception) -> StoreError:
        if isinstance(exc, psycopg.errors.IntegrityError):
            return StoreConflict(str(exc))
        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailable(self.unreachable(exc))
        return StoreError(f"{self.where}: {' '.join(str(exc).split())}")


def open_database(
    url: str, *, migrate: bool = True, max_connections: int | None = None
) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://...`` and bring its schema up to date.

    ``max_connections`` caps the pool (default 8 for SQLite, 10 for PostgreSQL).

    Raises:
        ConfigError: the URL's scheme is not one caregraph supports, or the SQLite
            directory cannot be created.
        StoreUnavailable: the database cannot be reached (one line, with the fix).
    """
    scheme = url.split(":", 1)[0].lower()
    db: Database
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///absolute/or/relative/path")
        path = Path(url[len("sqlite:///") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create directory {path.parent} for SQLite: {exc}") from exc
        db = SqliteDatabase(path, max_connections or 8)
    elif scheme in ("postgresql", "postgres"):
        db = PostgresDatabase(url, max_connections or 10)
    else:
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path or "
            "postgresql://user@host:port/db in CAREGRAPH_DATABASE_URL"
        )
    if migrate:
        try:
            db.migrate()
        except BaseException:
            db.close()
            raise
    return db
