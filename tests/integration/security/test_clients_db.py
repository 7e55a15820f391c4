"""The client registry on both database engines: add, list, revoke, single-use jti."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_store.database import Database, open_database
from security.clients import ClientRegistry, migrate
from security.errors import ClientAuthFailed

pytestmark = pytest.mark.integration

JWKS = {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "k1"}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/db.sqlite3"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    database = open_database(url)
    try:
        yield database
    finally:
        database.close()


def test_registry_round_trip(db: Database) -> None:
    registry = ClientRegistry.open(db)
    assert migrate(db) == 1  # idempotent
    first = registry.add("Hospital B", JWKS, "system/*.rs  system/Observation.c")
    second = registry.add("Lab", JWKS, "system/Observation.rs")
    assert first.scope == "system/*.rs system/Observation.c"
    assert {c.client_id for c in registry.list()} == {first.client_id, second.client_id}
    fetched = registry.get(first.client_id)
    assert fetched is not None and fetched.keys().kids == ["k1"] and fetched.active
    assert registry.revoke(first.client_id)
    assert not registry.revoke(first.client_id)
    assert not registry.revoke("nobody")
    revoked = registry.get(first.client_id)
    assert revoked is not None and not revoked.active
    assert registry.get("nobody") is None


def test_registry_refuses_bad_clients(db: Database) -> None:
    registry = ClientRegistry.open(db)
    with pytest.raises(ValueError, match="kid"):
        registry.add("X", {"keys": [{"kty": "EC"}]}, "system/*.rs")
    with pytest.raises(ValueError, match="system/"):
        registry.add("X", JWKS, "user/*.rs")


def test_jti_is_single_use_and_expired_ones_are_forgotten(db: Database) -> None:
    registry = ClientRegistry.open(db)
    registry.spend_jti("c1", "j1", expires_at=1000, now=900)
    with pytest.raises(ClientAuthFailed, match="already used"):
        registry.spend_jti("c1", "j1", expires_at=1000, now=950)
    registry.spend_jti("c2", "j1", expires_at=1000, now=950)  # per client
    registry.spend_jti("c1", "j2", expires_at=2000, now=1500)  # purges j1 (expired)
    registry.spend_jti("c1", "j1", expires_at=2000, now=1500)
