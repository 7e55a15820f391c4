"""caregraph A's outbox delivers to partner B, a real caregraph API on loopback (SQLite and
PostgreSQL), authenticated with A's own client credentials registered at B."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from fhir_store.database import open_database
from messaging.delivery import ClientCredentials, Deliverer
from messaging.identity import local_id
from messaging.outbox import DeliveryStatus, Outbox
from security.keys import generate_signing_key
from tests.support.services import free_port
from tests.unit.messaging.messages import PARTNER, transfer

from .conftest import HOSPITAL_PATIENT, Server

pytestmark = pytest.mark.integration

SCOPE = "system/Bundle.r system/Patient.cru system/Encounter.cru system/Observation.cru"


def test_a_queued_transfer_reaches_the_partner_and_links_there(
    server: Server, tmp_path: Path
) -> None:
    key = generate_signing_key()
    client = server.registry.add("caregraph A", {"keys": [key.public_jwk]}, SCOPE)
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite3")
    try:
        outbox = Outbox.open(db)
        credentials = ClientCredentials(
            f"{server.base}/auth/token", client.client_id, key, scope=SCOPE
        )
        endpoint = f"{server.base}/fhir/$process-message"
        message_id = outbox.enqueue("hospital-b", endpoint, transfer("a-1"))
        with httpx.Client(timeout=30) as http:
            sender = Deliverer(outbox, {"hospital-b": credentials}, http)
            stop = threading.Event()
            worker = threading.Thread(target=sender.run, args=(stop, 0.05), daemon=True)
            worker.start()
            try:
                deadline = 200
                while deadline and outbox.get(message_id).status is DeliveryStatus.PENDING:  # type: ignore[union-attr]
                    stop.wait(0.05)
                    deadline -= 1
            finally:
                stop.set()
                worker.join(10)
        row = outbox.get(message_id)
        assert row is not None and row.status is DeliveryStatus.DELIVERED, row
        assert row.response_code == "ok" and row.attempts == 1
        pid = local_id(PARTNER, "Patient", "p1")
        assert (
            server.mpi.golden_of(pid).golden_id == server.mpi.golden_of(HOSPITAL_PATIENT).golden_id
        )
    finally:
        db.close()


def test_an_unreachable_partner_is_retried_later(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite3")
    try:
        outbox = Outbox.open(db)
        base = f"http://127.0.0.1:{free_port()}"  # nobody listens
        credentials = ClientCredentials(f"{base}/auth/token", "a", generate_signing_key())
        message_id = outbox.enqueue("b", f"{base}/fhir/$process-message", transfer("a-2"))
        with httpx.Client(timeout=5) as http:
            assert Deliverer(outbox, {"b": credentials}, http).run_once() == 1
        row = outbox.get(message_id)
        assert row is not None and row.status is DeliveryStatus.PENDING
        assert row.attempts == 1 and "ConnectError" in (row.last_error or "")
    finally:
        db.close()
