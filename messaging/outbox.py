"""The durable outbox: message Bundles for partners, kept in ``messaging_outbox`` until
delivered, with their delivery status readable at any time.

A row is written in the caller's own time (``enqueue``) and delivered later by
``delivery.Deliverer``, so a partner being down never blocks caregraph and a crash loses
nothing: an undelivered row is simply still due. Workers claim due rows by stamping them
with a claim token and pushing ``next_attempt_at`` a lease ahead, in one transaction, so
two workers (two processes, SQLite or PostgreSQL) never send one row at the same time; a
worker that dies mid-send leaves its rows due again once the lease ends.

    pending --ok--> delivered
       |  --transient (network, 5xx, 429, 401, transient-error)--> pending, backed off
       |  --fatal (fatal-error, other 4xx) or attempts exhausted--> failed
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fhir_store.database import Database
from messaging.schema import migrate


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1: ``base_s * 2**(n-1)``, capped, less up to ``jitter`` of it
    (so partners recovering from an outage are not hit by every sender at once)."""

    base_s: float = 2.0
    cap_s: float = 300.0
    max_attempts: int = 10
    jitter: float = 0.1

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        full = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return full * (1 - self.jitter * rng())


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as its status reader sees it."""

    id: str
    partner: str
    endpoint: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    last_error: str | None
    response_code: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row a worker holds for one attempt: where to send what."""

    id: str
    partner: str
    endpoint: str
    bundle: str
    attempts: int


_COLUMNS = (
    "id, partner, endpoint, status, attempts, next_attempt_at, last_error, response_code,"
    " created_at, finished_at"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row[0],
        row[1],
        row[2],
        DeliveryStatus(row[3]),
        int(row[4]),
        float(row[5]),
        row[6],
        row[7],
        float(row[8]),
        None if row[9] is None else float(row[9]),
    )


class Outbox:
    """Outgoing messages by id (the Bundle's ``identifier.value``)."""

    def __init__(
        self,
        db: Database,
        *,
        backoff: Backoff | None = None,
        lease_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.backoff = backoff or Backoff()
        self.lease_s = lease_s
        self._clock = clock

    @classmethod
    def open(cls, db: Database, **options: Any) -> Outbox:
        """The outbox over ``db``, its tables created or upgraded first."""
        migrate(db)
        return cls(db, **options)

    def enqueue(self, partner: str, endpoint: str, bundle: dict[str, Any]) -> str:
        """Keep a message Bundle for ``partner`` (delivered to ``endpoint``); returns its id.

        Idempotent by the Bundle's identifier: enqueueing one message twice keeps one row
        (and so sends it once). A Bundle without an identifier gets one.

        Raises:
            ValueError: not a message Bundle.
        """
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "message":
            raise ValueError("the outbox takes message Bundles only")
        ident = bundle.get("identifier") or {}
        message_id = ident.get("value")
        if not isinstance(message_id, str):
            message_id = f"urn:uuid:{uuid.uuid4()}"
            bundle = {**bundle, "identifier": {"system": "urn:ietf:rfc:3986", "value": message_id}}
        now = self._clock()
        text = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False)
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO messaging_outbox (id, partner, endpoint, bundle, status, attempts,"
                " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (message_id, partner, endpoint, text, DeliveryStatus.PENDING.value, now, now),
            )
        return message_id

    def get(self, message_id: str) -> Delivery | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute(
                f"SELECT {_COLUMNS} FROM messaging_outbox WHERE id = ?", (message_id,)
            ).fetchone()
        return None if row is None else _delivery(row)

    def response(self, message_id: str) -> str | None:
        """The partner's answer to a finished message (its response message, as sent), or
        None while there is none."""
        with self._db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT response FROM messaging_outbox WHERE id = ?", (message_id,)
            ).fetchone()
        return None if row is None else row[0]

    def recent(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        """The newest rows first, of one status or all."""
        where, params = ("WHERE status = ?", [status.value]) if status else ("", [])
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_COLUMNS} FROM messaging_outbox {where} ORDER BY created_at DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_delivery(r) for r in rows]

    def claim_due(self, limit: int = 50) -> list[Claimed]:
        """Due pending rows, held for one attempt each (see the module docstring)."""
        now = self._clock()
        claim = uuid.uuid4().hex
        with self._db.transaction() as tx:
            due = tx.execute(
                "SELECT id FROM messaging_outbox WHERE status = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?",
                (DeliveryStatus.PENDING.value, now, limit),
            ).fetchall()
            for (message_id,) in due:
                # Re-checked in the UPDATE: a concurrent worker's claim makes it match nothing.
                tx.execute(
                    "UPDATE messaging_outbox SET claim = ?, next_attempt_at = ?,"
                    " attempts = attempts + 1"
                    " WHERE id = ? AND status = ? AND next_attempt_at <= ?",
                    (claim, now + self.lease_s, message_id, DeliveryStatus.PENDING.value, now),
                )
            rows = tx.execute(
                "SELECT id, partner, endpoint, bundle, attempts FROM messaging_outbox"
                " WHERE claim = ?",
                (claim,),
            ).fetchall()
        return [Claimed(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]

    def delivered(self, item: Claimed, response_code: str, response: str) -> None:
        self._finish(item, DeliveryStatus.DELIVERED, None, response_code, response)

    def failed(
        self, item: Claimed, error: str, response_code: str | None = None, response: str = ""
    ) -> None:
        self._finish(item, DeliveryStatus.FAILED, error, response_code, response or None)

    def retry(self, item: Claimed, error: str, response_code: str | None = None) -> None:
        """Back off for another attempt, or fail once ``max_attempts`` were made."""
        if item.attempts >= self.backoff.max_attempts:
            self.failed(item, f"gave up after {item.attempts} attempts: {error}", response_code)
            return
        at = self._clock() + self.backoff.delay(item.attempts)
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE messaging_outbox SET next_attempt_at = ?, last_error = ?,"
                " response_code = ?, claim = NULL WHERE id = ?",
                (at, error, response_code, item.id),
            )

    def _finish(
        self,
        item: Claimed,
        status: DeliveryStatus,
        error: str | None,
        response_code: str | None,
        response: str | None,
    ) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE messaging_outbox SET status = ?, last_error = ?, response_code = ?,"
                " response = ?, finished_at = ?, claim = NULL WHERE id = ?",
                (status.value, error, response_code, response, self._clock(), item.id),
            )
