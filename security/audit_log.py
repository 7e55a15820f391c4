"""The tamper-evident audit log: each AuditEvent carries a hash chained to the previous one.

An event's hash is SHA-256 over the previous event's hash and the event's canonical JSON
(sorted keys, no whitespace; ``meta``, which the store rewrites, and the chain extension
itself left out). The chain head is kept in ``security_audit_chain`` (one row per event,
``seq`` the primary key), so two writers cannot both extend the same head: the second one's
insert conflicts and it retries on the new head. ``verify`` recomputes the chain: an edited,
deleted or reordered event breaks it at that point, and a deleted tail shows against the
table.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from caregraph.errors import StoreError
from fhir_store.database import Database
from fhir_store.errors import StoreConflict

CHAIN_URL = "https://caregraph.dev/fhir/StructureDefinition/audit-chain"
GENESIS = "0" * 64
_RETRIES = 5

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS security_audit_chain ("
    " seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, hash TEXT NOT NULL)"
]


def canonical(event: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash covers."""
    content = {k: v for k, v in event.items() if k != "meta"}
    extensions = [e for e in content.get("extension", []) if e.get("url") != CHAIN_URL]
    if extensions:
        content["extension"] = extensions
    else:
        content.pop("extension", None)
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")


def chain_hash(previous: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(previous.encode("ascii") + canonical(event)).hexdigest()


def chain_of(event: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """(seq, previous hash, hash) from an event's chain extension, or None."""
    for ext in event.get("extension", []):
        if ext.get("url") == CHAIN_URL:
            parts = {e["url"]: e for e in ext.get("extension", [])}
            try:
                return (
                    int(parts["seq"]["valueInteger"]),
                    str(parts["previous"]["valueString"]),
                    str(parts["hash"]["valueString"]),
                )
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _with_chain(event: dict[str, Any], seq: int, previous: str, digest: str) -> dict[str, Any]:
    chain = {
        "url": CHAIN_URL,
        "extension": [
            {"url": "seq", "valueInteger": seq},
            {"url": "previous", "valueString": previous},
            {"url": "hash", "valueString": digest},
        ],
    }
    return {**event, "extension": [*event.get("extension", []), chain]}


class _Waiting:
    """One caller's event, until a group that holds it is written (or fails)."""

    __slots__ = ("done", "error", "event")

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.done = False
        self.error: BaseException | None = None


class ChainedAuditLog:
    """An audit sink: chains each event, then hands them to ``write`` (the FHIR store).

    Group commit: every request appends an event, and on SQLite each write transaction
    waits for the store writer's batch, so one transaction per event made requests queue
    behind each other at ~10 events/s while devices were being stored. Callers that arrive
    while a group is being written wait together, and the next of them chains and writes
    all of their events at once (one chain transaction, one ``write`` call); each caller
    still returns only once its own event is written, and hears of a failure of its group.
    """

    def __init__(self, db: Database, write: Callable[[list[dict[str, Any]]], None]) -> None:
        self._db = db
        self._write = write
        self._queued: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()  # one group at a time per process
        with db.transaction() as tx:
            for statement in _SCHEMA:
                tx.execute(statement)

    def __call__(self, event: dict[str, Any]) -> None:
        """Chain and write one event (with the others waiting at the same time).

        Raises:
            StoreError: the database failed (the caller decides whether that denies).
        """
        waiting = _Waiting(event)
        with self._queue_lock:
            self._queued.append(waiting)
        with self._turn:
            if not waiting.done:  # no earlier group took it: this caller writes the queue
                with self._queue_lock:
                    group, self._queued = self._queued, []
                self._commit(group)
        if waiting.error is not None:
            raise StoreError(f"the audit log failed: {waiting.error}") from waiting.error

    def _commit(self, group: list[_Waiting]) -> None:
        try:
            for attempt in range(_RETRIES):
                try:
                    chained = self._extend([w.event for w in group])
                except StoreConflict:  # another process extended the same head first
                    if attempt == _RETRIES - 1:
                        raise
                    continue
                self._write(chained)
                return
        except BaseException as exc:  # every caller of the group hears of it
            for w in group:
                w.error = exc
            if not isinstance(exc, Exception):
                raise  # an interrupt: the others have heard of it, this thread stops
        finally:
            for w in group:
                w.done = True

    def _extend(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chained: list[dict[str, Any]] = []
        rows: list[tuple[int, str, str]] = []
        with self._db.transaction() as tx:
            row = tx.execute(
                "SELECT seq, hash FROM security_audit_chain ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, previous = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            for event in events:
                seq += 1
                digest = chain_hash(previous, event)
                chained.append(_with_chain(event, seq, previous, digest))
                rows.append((seq, str(event.get("id", "")), digest))
                previous = digest
            tx.executemany(
                "INSERT INTO security_audit_chain (seq, event_id, hash) VALUES (?, ?, ?)", rows
            )
        return chained

    def verify(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Problems found walking the chain over ``events`` (any order); [] when intact."""
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT seq, hash FROM security_audit_chain ORDER BY seq").fetchall()
        return verify_chain(events, {int(r[0]): str(r[1]) for r in rows})


def verify_chain(events: Iterable[Mapping[str, Any]], heads: Mapping[int, str]) -> list[str]:
    """Walk the chain in ``seq`` order; ``heads`` is the table (seq -> hash)."""
    problems: list[str] = []
    by_seq: dict[int, Mapping[str, Any]] = {}
    for event in events:
        chain = chain_of(event)
        if chain is None:
            problems.append(f"AuditEvent/{event.get('id')} carries no chain")
        else:
            by_seq[chain[0]] = event
    previous = GENESIS
    for seq in range(1, max([*heads, *by_seq], default=0) + 1):
        found = by_seq.get(seq)
        chain = chain_of(found) if found is not None else None
        if found is None or chain is None:
            problems.append(f"event {seq} is missing")
            previous = heads.get(seq, previous)
            continue
        event = found
        _, claimed_previous, claimed = chain
        if claimed_previous != previous:
            problems.append(f"event {seq} does not follow event {seq - 1}")
        if chain_hash(claimed_previous, event) != claimed:
            problems.append(f"event {seq} (AuditEvent/{event.get('id')}) was altered")
        if heads.get(seq) not in (None, claimed):
            problems.append(f"event {seq} differs from the recorded chain")
        previous = claimed
    return problems
