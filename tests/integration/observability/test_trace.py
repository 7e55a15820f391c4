"""One trace id from the gateway to the stored resource: HL7 over a real MLLP connection, the
normalizer and the store writer on their consume loops, the Observations in SQLite carry the
trace id the gateway logged; the sender's resend keeps it, so no version is added."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.hl7v2.normalizer import Hl7v2Normalizer
from bus.embedded import DB_NAME, EmbeddedBus
from bus.topics import RAW_HL7V2, fhir_topic
from bus.worker import run_consumer
from devices.mllp.client import MllpClient
from devices.mllp.listener import MllpListener
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from fhir_store.writer import TRACE_SYSTEM, handle_fhir_batch, trace_tag_of
from observability.instrument import MeteredBus
from observability.lag import EmbeddedLag
from observability.logging import configure
from observability.metrics import Metrics
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration

RECEIVED = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure(json=True, stream=stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)


def _caught_up(lag: EmbeddedLag) -> bool:
    """Both groups have committed everything there is (the normalizer publishes before it
    commits, so a message in flight always shows as lag somewhere)."""
    samples = lag()
    groups = {s.group for s in samples}
    return groups >= {"normalizer-hl7v2", "store-writer"} and all(s.lag == 0 for s in samples)


def gateway_lines(stream: io.StringIO) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "observability.trace"]


def test_the_stored_observation_carries_the_trace_id_the_gateway_logged(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    bus = MeteredBus(EmbeddedBus(tmp_path / "bus", partitions=2, fsync=False), Metrics())
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite3")
    store = FhirStore(db)
    topics = [fhir_topic(t) for t in store.registry.types]
    bus.ensure_topics([RAW_HL7V2, *topics])
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=run_consumer,
            args=(bus, "normalizer-hl7v2", [RAW_HL7V2], Hl7v2Normalizer(bus)),
            kwargs={"stop": stop, "poll_timeout_s": 0.05},
        ),
        threading.Thread(
            target=run_consumer,
            args=(bus, "store-writer", topics, handle_fhir_batch(store)),
            kwargs={"stop": stop, "poll_timeout_s": 0.05},
        ),
    ]
    message = corpus.pcd01("TRACE0001", 3)

    def observations() -> list[dict[str, object]]:
        page = store.searching.search("Observation", [("_count", "100")])
        return [json.loads(m.content) for m in page.matches]

    try:
        for worker in workers:
            worker.start()
        # A listener without a shared ACK cache, like a second replica behind a balancer:
        # the resend below is published again rather than answered from the cache. Its clock
        # is fixed because Observation.issued is the receipt time, which a real resend
        # changes (a new version for that reason alone); with it fixed, the second copy is
        # what a redelivery by the bus is, and must add no version for its trace tag.
        for attempt in range(2):
            with MllpListener(
                "127.0.0.1", 0, bus, idle_timeout_s=20, clock=lambda: RECEIVED
            ) as listener:
                with MllpClient(*listener.address, timeout_s=20) as client:
                    ack = client.send(message)
                assert b"MSA|CA|TRACE0001" in ack  # enhanced mode: commit accept
            if attempt == 0:
                wait_for(lambda: len(observations()) == 3)
        logged = gateway_lines(json_log)
        assert len(logged) == 2  # one receipt line per delivery, both with one trace id
        trace_id = logged[0]["trace_id"]
        assert logged[1]["trace_id"] == trace_id and len(trace_id) == 32
        assert logged[0]["message_id"] == "TRACE0001" and logged[0]["topic"] == RAW_HL7V2

        # the resend went all the way through before we look: both groups caught up
        lag = EmbeddedLag(tmp_path / "bus" / DB_NAME, ttl_s=0)
        try:
            wait_for(lambda: _caught_up(lag))
        finally:
            lag.close()
        stored = observations()
        assert len(stored) == 3
        for resource in stored:
            assert trace_tag_of(resource) == trace_id
            assert resource["meta"]["versionId"] == "1"  # type: ignore[index]
        # and _tag finds what that one message produced
        found = store.searching.search("Observation", [("_tag", f"{TRACE_SYSTEM}|{trace_id}")])
        assert sorted(m.id for m in found.matches) == sorted(str(r["id"]) for r in stored)
        provenance = store.searching.search("Provenance", [("_tag", f"{TRACE_SYSTEM}|{trace_id}")])
        assert len(provenance.matches) == 1
        patient = json.loads(store.searching.search("Patient", []).matches[0].content)
        assert trace_tag_of(patient) is None  # entities many messages repeat are not tagged
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
        bus.close()
        db.close()
