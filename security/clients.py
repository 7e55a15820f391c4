"""Registered clients of SMART Backend Services, in the store's database (``security_*``).

On the database seam ``fhir_store.database.Database`` with its own schema version table
(``security_schema_version``), like the linkage tables. A client has a JWKS (its public keys;
it signs assertions with the private ones), the scopes it may be granted, and a revocation
time. ``security_jti`` remembers each assertion's ``jti`` until it expires, so an assertion
is used once: the primary key makes a replay fail even when two requests race.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_store.database import Database
from fhir_store.errors import StoreConflict
from security.errors import ClientAuthFailed
from security.keys import JwkSet

_SCHEMA: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE security_client ("
            " client_id TEXT PRIMARY KEY, name TEXT NOT NULL, jwks TEXT NOT NULL,"
            " scope TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
            "CREATE TABLE security_jti ("
            " client_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL,"
            " PRIMARY KEY (client_id, jti))",
            "CREATE INDEX security_jti_expiry ON security_jti (expires_at)",
        ],
    )
]


def migrate(db: Database) -> int:
    """Create or upgrade the ``security_*`` tables; returns the schema version."""
    return db.apply_migrations("security_schema_version", _SCHEMA)


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    jwks: dict[str, Any]
    scope: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def keys(self) -> JwkSet:
        return JwkSet(self.jwks)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ClientRegistry:
    """Add, list, revoke clients; spend assertion ``jti`` values."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, db: Database) -> ClientRegistry:
        migrate(db)
        return cls(db)

    def add(self, name: str, jwks: dict[str, Any], scope: str) -> Client:
        """Register a client.

        Raises:
            ValueError: the JWKS has no key with a ``kid``, or a scope is not a system scope.
        """
        if not JwkSet(jwks).kids:
            raise ValueError("the client's JWKS needs at least one key with a kid")
        bad = [s for s in scope.split() if not s.startswith("system/")]
        if bad or not scope.split():
            raise ValueError(f"a backend client gets system/ scopes only, not {bad or 'none'}")
        client = Client(str(uuid.uuid4()), name, jwks, " ".join(scope.split()), _now())
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO security_client (client_id, name, jwks, scope, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (client.client_id, name, json.dumps(jwks), client.scope, client.created_at),
            )
        return client

    def get(self, client_id: str) -> Client | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT client_id, name, jwks, scope, created_at, revoked_at"
                " FROM security_client WHERE client_id = ?",
                (client_id,),
            ).fetchone()
        return _client(row) if row else None

    def list(self) -> list[Client]:
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT client_id, name, jwks, scope, created_at, revoked_at"
                " FROM security_client ORDER BY created_at, client_id"
            ).fetchall()
        return [_client(r) for r in rows]

    def revoke(self, client_id: str) -> bool:
        """Revoke a client; False if there is no such active client."""
        with self._db.transaction() as tx:
            row = tx.execute(
                "SELECT revoked_at FROM security_client WHERE client_id = ?", (client_id,)
            ).fetchone()
            if row is None or row[0] is not None:
                return False
            tx.execute(
                "UPDATE security_client SET revoked_at = ? WHERE client_id = ?",
                (_now(), client_id),
            )
        return True

    def spend_jti(self, client_id: str, jti: str, expires_at: int, now: int) -> None:
        """Record an assertion's ``jti``; forget the expired ones.

        Raises:
            ClientAuthFailed: the ``jti`` was used before (a replay).
        """
        try:
            with self._db.transaction() as tx:
                tx.execute("DELETE FROM security_jti WHERE expires_at < ?", (now,))
                tx.execute(
                    "INSERT INTO security_jti (client_id, jti, expires_at) VALUES (?, ?, ?)",
                    (client_id, jti, expires_at),
                )
        except StoreConflict:
            raise ClientAuthFailed("the assertion's jti was already used") from None


def _client(row: Any) -> Client:
    return Client(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])
