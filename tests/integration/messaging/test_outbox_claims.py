"""Workers claiming outbox rows at once never share a row (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from fhir_store.database import open_database
from messaging.outbox import Claimed, Outbox
from tests.unit.messaging.messages import transfer

pytestmark = pytest.mark.integration


def test_concurrent_claims_are_disjoint_and_cover_every_due_row(database_url: str) -> None:
    db = open_database(database_url)
    try:
        outbox = Outbox.open(db)
        ids = {outbox.enqueue("b", "https://b.example/x", transfer(f"m{i}")) for i in range(40)}
        results: list[list[Claimed]] = []
        start = threading.Barrier(4)

        def work() -> None:
            start.wait()
            mine: list[Claimed] = []
            while batch := outbox.claim_due(limit=3):
                mine.extend(batch)
            results.append(mine)

        workers = [threading.Thread(target=work) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        claimed = [c.id for mine in results for c in mine]
        assert sorted(claimed) == sorted(ids)  # each row exactly once
        assert all(c.attempts == 1 for mine in results for c in mine)
    finally:
        db.close()
