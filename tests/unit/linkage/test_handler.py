from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bus.base import Message, Record
from bus.deadletter import decode_deadletter
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, fhir_topic
from bus.worker import RetryPolicy, WorkerStats, run_consumer
from linkage.errors import InvalidPatient
from linkage.handler import IdentityHandler, PatientHandler, merge_request, publish_goldens
from linkage.identity import IdentityIndex, MemoryIdentityRepository
from linkage.links import LinkOutcome
from linkage.mpi import Mpi

from .factories import patient

PATIENT = fhir_topic("Patient")


def message(resource: Any, topic: str = PATIENT, offset: int = 0) -> Message:
    value = resource if isinstance(resource, bytes) else json.dumps(resource).encode()
    return Message(topic, 0, offset, None, value, {"source": "urn:his"}, 0)


def test_patients_are_ingested_with_the_sending_source(mpi: Mpi) -> None:
    heard: list[LinkOutcome] = []
    handler = PatientHandler(mpi, on_outcome=heard.append)
    handler([message(patient(pid="a1")), message(patient(pid="a2", given="Ana"), offset=1)])
    assert heard[0].golden_id == heard[1].golden_id
    assert mpi.repository.get_record("a1").source == "urn:his"  # type: ignore[union-attr]
    assert mpi.history(source_id="a2")[0].actor == "bus:fhir.Patient"
    handler([message(patient(pid="a1"))])  # a redelivery: nothing changes, nobody told
    assert len(heard) == 2


def test_a40_parameters_merge_the_golden_records(mpi: Mpi) -> None:
    handler = PatientHandler(mpi)
    a = handler.handle(message(patient(pid="a1")))
    z = handler.handle(message(patient("Zygmunt", "Kowalski", "1951-12-30", pid="z1")))
    assert a is not None and z is not None and a.golden_id != z.golden_id
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "target-patient", "valueReference": {"reference": "Patient/z1"}},
            {"name": "source-patient", "valueReference": {"reference": "Patient/a1"}},
        ],
    }
    handler.handle(message(params, topic=fhir_topic("Parameters")))
    assert mpi.golden_of("a1").golden_id == z.golden_id


def test_merge_request_reads_only_merge_parameters() -> None:
    assert merge_request({"resourceType": "Parameters", "parameter": []}) is None
    both = {
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "http://x/Patient/1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/2/_history/3"}},
        ]
    }
    assert merge_request(both) == ("1", "2")


@pytest.mark.parametrize(
    "value", [b"\xff not json", b"[1, 2]", json.dumps({"resourceType": "Observation"}).encode()]
)
def test_what_is_not_a_patient_is_refused(mpi: Mpi, value: bytes) -> None:
    with pytest.raises(InvalidPatient):
        PatientHandler(mpi).handle(message(value))


def test_runs_in_the_consume_loop_and_dead_letters_bad_messages(mpi: Mpi) -> None:
    bus = MemoryBus(partitions=2)
    bus.publish_many(
        [
            Record(PATIENT, json.dumps(patient(pid="a1")).encode(), key=b"a"),
            Record(PATIENT, b"garbage", key=b"b"),
            Record(PATIENT, json.dumps(patient(pid="a2", given="Ana")).encode(), key=b"c"),
        ]
    )
    stop, stats = threading.Event(), WorkerStats()
    worker = threading.Thread(
        target=run_consumer,
        args=(bus, "linkage", [PATIENT], PatientHandler(mpi)),
        kwargs={
            "stop": stop,
            "retry": RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.002),
            "poll_timeout_s": 0.01,
            "stats": stats,
        },
    )
    worker.start()
    deadline = time.monotonic() + 10
    while sum(bus.committed("linkage").values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join(5)
    assert mpi.golden_of("a1").golden_id == mpi.golden_of("a2").golden_id
    [dead] = bus.snapshot(DEADLETTER)
    letter = decode_deadletter(dead.value)
    assert letter.value == b"garbage" and "InvalidPatient" in letter.error


def test_golden_patients_on_the_topic_are_skipped(mpi: Mpi) -> None:
    handler = PatientHandler(mpi)
    out = handler.handle(message(patient(pid="a1")))
    assert out is not None and out.golden is not None
    assert handler.handle(message(out.golden)) is None
    assert len(mpi.history()) == 1


def test_identity_handler_resolves_staff_and_devices(identity: IdentityIndex) -> None:
    handler = IdentityHandler(identity)
    pumps = [
        {"resourceType": "Device", "id": f"d{k}", "udiCarrier": [{"deviceIdentifier": "0188"}]}
        for k in range(2)
    ]
    handler([message(p, topic=fhir_topic("Device"), offset=k) for k, p in enumerate(pumps)])
    assert (
        identity.entity_of("Device", "d0").entity_id == identity.entity_of("Device", "d1").entity_id
    )
    with pytest.raises(InvalidPatient):
        handler.handle(message({"resourceType": "Location", "id": "l"}, topic="fhir.Location"))


def test_golden_records_are_published_for_the_store(mpi: Mpi) -> None:
    bus = MemoryBus(partitions=1)
    mpi.golden_listeners.append(publish_goldens(bus))
    handler = PatientHandler(mpi)
    out = handler.handle(message(patient(pid="a1")))
    [published] = bus.snapshot(PATIENT)
    golden = json.loads(published.value)
    assert out is not None and golden["id"] == out.golden_id
    assert published.key == out.golden_id.encode()
    assert published.headers["content-type"] == "application/fhir+json"
    # Consumed back from fhir.Patient, the golden record is skipped, not linked.
    assert handler.handle(message(golden)) is None


def test_a_batch_is_linked_in_one_transaction_and_published_once(mpi: Mpi) -> None:
    heard: list[list[str]] = []
    mpi.golden_listeners.append(lambda goldens: heard.append([g.golden_id for g in goldens]))
    batch = [
        message(patient(pid="a1")),
        message(patient(pid="a2", given="Ana"), offset=1),  # the same person: a1's golden
        message(patient("Zygmunt", "Kowalski", "1951-12-30", pid="z1"), offset=2),
    ]
    PatientHandler(mpi)(batch)
    a, z = mpi.golden_of("a1").golden_id, mpi.golden_of("z1").golden_id
    assert mpi.golden_of("a2").golden_id == a != z
    assert heard == [[a, z]]  # once, after the commit, each golden record once


def test_a_spent_budget_commits_and_begins_another_transaction(mpi: Mpi) -> None:
    heard: list[list[str]] = []
    mpi.golden_listeners.append(lambda goldens: heard.append([g.golden_id for g in goldens]))
    batch = [message(patient(pid=f"p{k}", given=f"G{k}"), offset=k) for k in range(3)]
    PatientHandler(mpi, transaction_budget_s=0.0)(batch)
    assert len(heard) == 3


def test_a_failure_rolls_back_the_transaction_it_is_in(mpi: Mpi) -> None:
    batch = [message(patient(pid="a1")), message({"resourceType": "Patient"}, offset=1)]
    with pytest.raises(InvalidPatient):
        PatientHandler(mpi)(batch)
    assert mpi.repository.get_record("a1") is None  # delivered again with the batch


class CountingRepository(MemoryIdentityRepository):
    """Counts the outermost transactions (``ingest`` opens one inside the handler's)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self._depth = 0

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[None]:
        self.opened += self._depth == 0
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1


def test_identity_batches_share_transactions_within_the_budget() -> None:
    devices = [
        message({"resourceType": "Device", "id": f"d{k}"}, topic=fhir_topic("Device"), offset=k)
        for k in range(3)
    ]
    repository = CountingRepository()
    IdentityHandler(IdentityIndex(repository))(devices)
    assert repository.opened == 1
    repository = CountingRepository()
    IdentityHandler(IdentityIndex(repository), transaction_budget_s=0.0)(devices)
    assert repository.opened == 3
