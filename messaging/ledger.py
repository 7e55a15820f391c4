"""The messages already answered, in the store's database (tables ``messaging_*``).

Idempotency by ``Bundle.identifier``: the first response to (partner, identifier) is kept
and a repeat gets it back unchanged, whatever it carries. Two copies of one message racing
both process it (processing is idempotent: local ids are deterministic), and the insert that
loses the primary key returns the winner's response, so both partners' copies see one answer.
Transient errors are not recorded: the retry they invite must be processed again.

The schema is versioned in its own table, as ``linkage.sql`` does, so the store's
migrations and ours never need to know about each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_store.database import Database

_SCHEMA: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE messaging_received (
                partner TEXT NOT NULL, identifier TEXT NOT NULL, received_at TEXT NOT NULL,
                event TEXT NOT NULL, code TEXT NOT NULL, response TEXT NOT NULL,
                PRIMARY KEY (partner, identifier))""",
        ],
    ),
]


def migrate(db: Database) -> int:
    """Create or upgrade the ``messaging_*`` tables; returns the schema version."""
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS messaging_schema_version (version INTEGER NOT NULL)")
        row = tx.execute("SELECT MAX(version) FROM messaging_schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in _SCHEMA:
            if version <= current:
                continue
            for sql in statements:
                tx.execute(sql)
            tx.execute("INSERT INTO messaging_schema_version (version) VALUES (?)", (version,))
            current = version
    return current


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
