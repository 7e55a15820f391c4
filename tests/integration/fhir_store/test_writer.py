"""The store-writer handler on both engines: batches land once, bad messages are typed errors."""

from __future__ import annotations

import base64
import json

import pytest

from bus.base import Message
from caregraph.errors import MappingError
from fhir_store.store import FhirStore
from fhir_store.writer import handle_fhir_batch

pytestmark = pytest.mark.integration


def message(topic: str, value: bytes, offset: int = 0) -> Message:
    return Message(topic, 0, offset, b"k", value, {}, 0)


def test_batch_upserts_and_redelivery_adds_no_version(store: FhirStore) -> None:
    handle = handle_fhir_batch(store)
    batch = [
        message(
            "fhir.Observation",
            json.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": {"text": "hr"},
                    "subject": {"reference": "Patient/p"},
                }
            ).encode(),
            i,
        )
        for i in range(3)
    ]
    handle(batch)
    handle(batch)
    total = store.searching.history("Observation").total
    assert total == 3
    assert [
        m.id for m in store.searching.search("Observation", [("subject", "Patient/p")]).matches
    ] == ["o0", "o1", "o2"]


@pytest.mark.parametrize(
    ("topic", "value", "needle"),
    [
        ("fhir.Observation", b"\xff", "UTF-8"),
        ("fhir.Observation", b"[1]", "JSON object"),
        ("fhir.Patient", b'{"resourceType":"Observation","id":"x"}', "on topic fhir.Patient"),
        ("fhir.Observation", b'{"resourceType":"Observation"}', "no id"),
    ],
)
def test_bad_messages_raise_mapping_error(
    store: FhirStore, topic: str, value: bytes, needle: str
) -> None:
    with pytest.raises(MappingError, match=needle) as info:
        handle_fhir_batch(store)([message(topic, value, 7)])
    assert info.value.location == f"{topic}[0]@7"


def test_consumer_loop_stores_redelivery_once_and_deadletters_poison(store: FhirStore) -> None:
    """The real wiring: bus.worker.run_consumer over the in-process bus, into the store."""
    import threading
    import time

    from bus.memory import MemoryBus
    from bus.topics import DEADLETTER
    from bus.worker import RetryPolicy, WorkerStats, run_consumer

    bus = MemoryBus(partitions=2)
    good = [
        json.dumps(
            {
                "resourceType": "Observation",
                "id": f"w{i}",
                "status": "final",
                "code": {"text": "hr"},
                "subject": {"reference": "Patient/p"},
            }
        ).encode()
        for i in range(20)
    ]
    for value in [*good[:10], b"not json", *good[10:], *good]:  # the second pass: redelivery
        bus.publish("fhir.Observation", value, key=b"p")
    stop = threading.Event()
    stats = WorkerStats()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "store-writer", ["fhir.Observation"], handle_fhir_batch(store)),
        kwargs={
            "stop": stop,
            "stats": stats,
            "poll_timeout_s": 0.05,
            "retry": RetryPolicy(max_attempts=1, base_delay_s=0.0, max_delay_s=0.0),
        },
    )
    worker.start()
    deadline = time.monotonic() + 20
    while stats.handled + stats.deadlettered < 41 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(10)
    assert stats.deadlettered == 1
    total = store.searching.history("Observation").total
    assert total == 20
    with bus.subscribe("check", [DEADLETTER]) as consumer:
        dead = consumer.poll(timeout_s=1.0)
    assert len(dead) == 1
    record = json.loads(dead[0].value)
    assert base64.b64decode(record["value"]) == b"not json"
    assert record["error"].startswith("MappingError: not UTF-8 JSON")
