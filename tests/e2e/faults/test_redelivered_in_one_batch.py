"""The same resource twice in one consumer batch, as at-least-once delivery produces it (a
normalizer batch redelivered after a rebalance or a kill -9 publishes its resources again,
and a consumer behind it reads both copies together). Seen in the kill -9 and broker fault
tests' logs: ``group linkage-graph: batch of 500 failed 5 times (StoreConflict: duplicate key
value violates unique constraint "linkage_edge_pkey")``; the worker then retries the batch
with backoff and handles its 500 messages one at a time."""

from __future__ import annotations

import json
from pathlib import Path

from bus.base import Message
from fhir_store.database import open_database
from linkage.graph.handler import GraphHandler
from linkage.graph.store import Graph


def _message(resource: dict[str, object], offset: int) -> Message:
    return Message("fhir.Observation", 0, offset, None, json.dumps(resource).encode(), {}, 0)


def test_the_graph_handler_takes_a_batch_with_a_resource_twice(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'graph.sqlite3'}")
    try:
        graph = Graph.open(db)
        observation = {
            "resourceType": "Observation",
            "id": "o1",
            "subject": {"reference": "Patient/p1"},
            "device": {"reference": "Device/d1"},
            "effectiveDateTime": "2026-01-01T00:00:00Z",
        }
        GraphHandler(graph)([_message(observation, 0), _message(observation, 1)])
        with db.transaction(write=False) as tx:
            edges = tx.execute("SELECT via, seq FROM linkage_edge").fetchall()
        assert edges and len(edges) == len({tuple(e) for e in edges})
    finally:
        db.close()
