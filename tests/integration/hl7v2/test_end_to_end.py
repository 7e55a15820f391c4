"""HL7 v2 over a real socket to resources searchable in the store: the listener, the
durable embedded bus, the normalizer and the store writer, each in its consume loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.hl7v2.normalizer import Hl7v2Normalizer
from bus.embedded import EmbeddedBus
from bus.topics import RAW_HL7V2, fhir_topic
from bus.worker import run_consumer
from devices.mllp.client import MllpClient
from devices.mllp.listener import MllpListener
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from fhir_store.writer import handle_fhir_batch
from tests.integration.fhir_store.conftest import serving
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration

TYPES = [
    "Patient",
    "Encounter",
    "Location",
    "Organization",
    "Practitioner",
    "Observation",
    "Device",
    "DeviceMetric",
    "Provenance",
]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[MllpListener, FhirStore]]:
    bus = EmbeddedBus(tmp_path / "bus", partitions=2)
    store = FhirStore(open_database(f"sqlite:///{tmp_path}/store.sqlite3"))
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=run_consumer,
            args=(bus, "hl7v2-normalizer", [RAW_HL7V2], Hl7v2Normalizer(bus)),
            kwargs={"stop": stop, "poll_timeout_s": 0.05},
        ),
        threading.Thread(
            target=run_consumer,
            args=(bus, "store-writer", [fhir_topic(t) for t in TYPES], handle_fhir_batch(store)),
            kwargs={"stop": stop, "poll_timeout_s": 0.05},
        ),
    ]
    for w in workers:
        w.start()
    try:
        with MllpListener("127.0.0.1", 0, bus) as listener:
            yield listener, store
    finally:
        stop.set()
        for w in workers:
            w.join(10)
        bus.close()


def search(store: FhirStore, type_name: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    return [s.resource() for s in store.searching.search(type_name, list(params)).matches]


def wait_for(store: FhirStore, type_name: str, count: int, *params: tuple[str, str]) -> list[Any]:
    deadline = time.monotonic() + 30
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = search(store, type_name, *params)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{type_name}{params}: {len(found)} of {count} after 30 s")


def test_adt_and_pcd01_become_searchable(pipeline: tuple[MllpListener, FhirStore]) -> None:
    listener, store = pipeline
    host, port = listener.address
    with MllpClient(host, port) as client:
        assert b"MSA|AA|ADT0001" in client.send(corpus.ADT_A01)
        assert b"MSA|CA|PCD0007" in client.send(corpus.pcd01("PCD0007", 10))
        assert b"MSA|CA|PCD0007" in client.send(corpus.pcd01("PCD0007", 10))  # a repeat

    # two source records for one MRN: the ADT feed's and the result feed's (linkage joins them)
    patients = wait_for(store, "Patient", 2, ("identifier", "urn:oid:1.2.840.99999.1.2|MRN12345"))
    adt_patient = next(p for p in patients if "address" in p)
    patient = next(p for p in patients if "address" not in p)
    observations = wait_for(store, "Observation", 10, ("subject", f"Patient/{patient['id']}"))
    assert len(observations) == 10  # the repeat added nothing
    (spo2,) = search(store, "Observation", ("code", "urn:iso:std:iso:11073:10101|150456"))
    assert spo2["valueQuantity"]["code"] == "%"
    (mds,) = search(
        store,
        "Device",
        ("identifier", "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680|01-23-45-67-89-AB-CD-EF"),
    )
    assert mds["patient"] == {"reference": f"Patient/{patient['id']}"}
    wait_for(store, "Encounter", 1, ("subject", f"Patient/{adt_patient['id']}"))
    wait_for(store, "Provenance", 2)

    # and the same over the FHIR REST API, on a real socket
    with serving(store) as base, httpx.Client(base_url=base, timeout=10) as http:
        bundle = http.get("/Observation", params={"subject": f"Patient/{patient['id']}"}).json()
        assert bundle["resourceType"] == "Bundle"
        assert len(bundle["entry"]) == 10
        spo2_http = http.get(f"/Observation/{spo2['id']}").json()
        assert spo2_http["device"]["reference"].startswith("DeviceMetric/")
        metric = http.get(f"/{spo2_http['device']['reference']}").json()
        assert metric["source"] == {"reference": f"Device/{mds['id']}"}
        bed = http.get(f"/{mds['location']['reference']}").json()
        assert bed["physicalType"]["coding"][0]["code"] == "bd"
