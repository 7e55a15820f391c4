"""The ``messaging_*`` tables in the store's database, versioned in their own table (as
``linkage.sql`` does), so the store's migrations and ours never need to know about each other.

Times the outbox schedules by are epoch seconds (``DOUBLE PRECISION``): they are compared,
never shown, and the same column type sorts alike on both engines.
"""

from __future__ import annotations

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
    (
        2,
        [
            """CREATE TABLE messaging_outbox (
                id TEXT PRIMARY KEY, partner TEXT NOT NULL, endpoint TEXT NOT NULL,
                bundle TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                next_attempt_at DOUBLE PRECISION NOT NULL, claim TEXT,
                last_error TEXT, response_code TEXT, response TEXT,
                finished_at DOUBLE PRECISION)""",
            "CREATE INDEX messaging_outbox_due ON messaging_outbox (status, next_attempt_at)",
        ],
    ),
]


def migrate(db: Database) -> int:
    """Create or upgrade the ``messaging_*`` tables; returns the schema version."""
    return db.apply_migrations("messaging_schema_version", _SCHEMA)
