"""Hospital A and hospital B, two caregraph APIs with their own databases and keys, exchange
messages both ways; each authorises the other with SMART Backend Services (its own key,
registered as a client at the other), and each links the other's patient to its own record.

One process here, on SQLite and PostgreSQL; everything else is real: uvicorn, token
endpoints, the authorization middleware, the outboxes. The same exchange between two
``caregraph up`` processes is ``tests/e2e/test_partner_exchange.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from messaging.envelope import OPERATION, request
from messaging.events import FHIR_EVENTS, V2_EVENTS
from messaging.identity import local_id
from messaging.outbox import DeliveryStatus
from messaging.partners import Partner, Partners
from tests.unit.messaging.messages import encounter, heart_rate

from .conftest import HOSPITAL_PATIENT, Server, running_api

pytestmark = pytest.mark.integration

# What each hospital lets the other do: write messages' resources, read the answer message.
SCOPE = "system/Bundle.r system/Patient.cru system/Encounter.cru system/Observation.cru"


def partner_of(sender: Server, receiver: Server, name: str) -> Partners:
    """``receiver`` registers ``sender``'s own key as a client; ``sender`` keeps the result."""
    client = receiver.registry.add(f"caregraph {name}", {"keys": [sender.key.public_jwk]}, SCOPE)
    link = Partner(
        name,
        f"{receiver.base}/fhir/{OPERATION}",
        f"{receiver.base}/auth/token",
        client.client_id,
        SCOPE,
    )
    return Partners([link], sender.key)


def delivered(sender: Server, partners: Partners, message_id: str) -> str:
    """Run ``sender``'s delivery loop until the message left the outbox; its final status."""
    stop = threading.Event()
    worker = threading.Thread(target=partners.worker(sender.outbox, idle_s=0.05), args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = sender.outbox.get(message_id)
            if row is not None and row.status is not DeliveryStatus.PENDING:
                return row.status.value
            time.sleep(0.05)
        return "pending"
    finally:
        stop.set()
        worker.join(10)


def test_a_transfer_from_a_and_vitals_from_b_each_link_to_the_receivers_record(
    server: Server, tmp_path: Path
) -> None:
    hospital_b = server
    with running_api(f"sqlite:///{tmp_path}/a.sqlite3", tmp_path / "a") as hospital_a:
        to_b = partner_of(hospital_a, hospital_b, "hospital-b")
        to_a = partner_of(hospital_b, hospital_a, "hospital-a")
        a_endpoint = f"{hospital_a.base}/fhir/{OPERATION}"
        b_endpoint = f"{hospital_b.base}/fhir/{OPERATION}"

        # A transfers its patient h1 to B with two recent heart rates.
        anna = hospital_a.store.read("Patient", HOSPITAL_PATIENT).resource()
        transfer = request(
            (V2_EVENTS, "A02"),
            [
                {k: v for k, v in anna.items() if k != "meta"},
                encounter("enc-7", HOSPITAL_PATIENT),
                heart_rate("hr-1", HOSPITAL_PATIENT, 88),
                heart_rate("hr-2", HOSPITAL_PATIENT, 91),
            ],
            source=a_endpoint,
            destination=b_endpoint,
            focus=["Encounter/enc-7"],
        )
        sent = to_b.send(hospital_a.outbox, "hospital-b", transfer)
        assert delivered(hospital_a, to_b, sent) == "delivered"
        at_b = local_id(a_endpoint, "Patient", HOSPITAL_PATIENT)
        b_golden = hospital_b.mpi.golden_of(HOSPITAL_PATIENT).golden_id
        assert hospital_b.mpi.golden_of(at_b).golden_id == b_golden
        vitals = hospital_b.store.searching.search("Observation", [("subject", f"Patient/{at_b}")])
        assert len(vitals.matches) == 2

        # A's delivery status is readable over A's API.
        status = httpx.get(
            f"{hospital_a.base}/fhir/$outbox-status",
            params={"id": sent},
            headers=hospital_a.token("system/*.cruds"),
        )
        assert status.status_code == 200, status.text
        parts = {p["name"]: p for p in status.json()["parameter"][0]["part"]}
        assert parts["status"]["valueCode"] == "delivered"
        assert parts["responseCode"]["valueCode"] == "ok"

        # B answers with its own observation of the patient; A links B's record to its own.
        b_record = hospital_b.store.read("Patient", HOSPITAL_PATIENT).resource()
        back = request(
            (FHIR_EVENTS, "observation-provide"),
            [
                {k: v for k, v in b_record.items() if k != "meta"},
                heart_rate("hr-9", HOSPITAL_PATIENT, 80),
            ],
            source=b_endpoint,
            destination=a_endpoint,
        )
        returned = to_a.send(hospital_b.outbox, "hospital-a", back)
        assert delivered(hospital_b, to_a, returned) == "delivered"
        at_a = local_id(b_endpoint, "Patient", HOSPITAL_PATIENT)
        a_golden = hospital_a.mpi.golden_of(HOSPITAL_PATIENT).golden_id
        assert hospital_a.mpi.golden_of(at_a).golden_id == a_golden
