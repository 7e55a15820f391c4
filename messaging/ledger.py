"""The messages already answered, in the store's database (tables ``messaging_*``).

Idempotency by ``Bundle.identifier``: the first response to (partner, identifier) is kept
and a repeat gets it back unchanged, whatever it carries. Two copies of one message racing
both process it (processing is idempotent: local ids are deterministic), and the insert that
loses the primary key returns the winner's response, so both partners' copies see one answer.
Transient errors are not recorded: the retry they invite must be processed again.

Tables: ``messaging.schema``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_store.database import Database
from messaging.schema import migrate


@dataclass(frozen=True, slots=True)
class Answered:
    """A response already given: its ``MessageHeader.response.code`` and the Bundle's JSON."""

    code: str
    response: str


class Ledger:
    """Responses by (partner endpoint, ``Bundle.identifier``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, db: Database) -> Ledger:
        """The ledger over ``db``, its tables created or upgraded first."""
        migrate(db)
        return cls(db)

    def find(self, partner: str, identifier: str) -> Answered | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT code, response FROM messaging_received"
                " WHERE partner = ? AND identifier = ?",
                (partner, identifier),
            ).fetchone()
        return None if row is None else Answered(row[0], row[1])

    def record(
        self, partner: str, identifier: str, event: str, code: str, response: str
    ) -> Answered:
        """Keep this response unless one is already kept; returns the one kept."""
        with self._db.transaction() as tx:
            at = tx.now()
            tx.execute(
                "INSERT INTO messaging_received"
                " (partner, identifier, received_at, event, code, response)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (partner, identifier) DO NOTHING",
                (partner, identifier, at, event, code, response),
            )
            row = tx.execute(
                "SELECT code, response FROM messaging_received"
                " WHERE partner = ? AND identifier = ?",
                (partner, identifier),
            ).fetchone()
        return Answered(row[0], row[1])
