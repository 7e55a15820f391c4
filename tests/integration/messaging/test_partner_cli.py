"""``caregraph partner jwks|list|send-transfer|send-observations|outbox`` on a data dir's
SQLite database, and the partner settings (``CAREGRAPH_PARTNERS_FILE``, ``..._PUBLIC_URL``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from caregraph import security_wiring
from caregraph.cli import app
from caregraph.settings import Settings
from caregraph.wiring import open_database
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from messaging.outbox import Outbox
from security.keys import JwkSet
from tests.unit.messaging.messages import encounter, patient

pytestmark = pytest.mark.integration

B = {
    "name": "hospital-b",
    "fhir_base": "https://b.example/fhir",
    "token_url": "https://b.example/auth/token",
    "client_id": "cg-a",
    "events": ["transfer"],
}


def seed(settings: Settings) -> None:
    """Patient p1 with an open encounter and one heart rate taken an hour ago."""
    db = open_database(settings)
    try:
        store = FhirStore(db)
        person = patient("p1", "Andersen", "Anna", "1970-01-01", "H-1")
        store.update("Patient", "p1", person)
        Mpi(SqlRepository.open(db)).ingest(person)
        store.update("Encounter", "e1", encounter("e1", "p1"))
        taken = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
        store.update(
            "Observation",
            "o1",
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": taken,
                "valueQuantity": {"value": 88, "unit": "/min"},
            },
        )
    finally:
        db.close()


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    partners = tmp_path / "partners.json"
    partners.write_text(json.dumps({"partners": [B]}))
    for name in list(os.environ):
        if name.startswith("CAREGRAPH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CAREGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAREGRAPH_PARTNERS_FILE", str(partners))
    monkeypatch.setenv("CAREGRAPH_PUBLIC_URL", "https://a.example/")
    settings = Settings()
    seed(settings)
    return settings


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_jwks_prints_the_key_the_server_publishes(configured: Settings) -> None:
    code, out, _ = run("partner", "jwks")
    assert code == 0
    published = json.loads(out)
    key = security_wiring.signing_key(configured)
    assert published == {"keys": [key.public_jwk]}
    assert JwkSet(published).kids == [key.kid]
    assert "d" not in published["keys"][0]  # never the private part


def test_list_shows_each_partner(configured: Settings) -> None:
    code, out, _ = run("partner", "list")
    assert code == 0
    name, endpoint, token_url, client_id, inbound, events = out.strip().split("\t")
    assert (name, client_id, inbound, events) == ("hospital-b", "cg-a", "-", "transfer")
    assert endpoint == "https://b.example/fhir/$process-message"
    assert token_url == B["token_url"]


def test_send_transfer_queues_it_and_outbox_shows_it(configured: Settings) -> None:
    code, out, err = run("partner", "send-transfer", "--patient", "p1", "--to", "hospital-b")
    assert code == 0, err
    message_id = out.strip()
    db = open_database(configured)
    try:
        (claimed,) = Outbox.open(db).claim_due()
    finally:
        db.close()
    bundle = json.loads(claimed.bundle)
    header = bundle["entry"][0]["resource"]
    assert bundle["identifier"]["value"] == message_id
    assert header["source"]["endpoint"] == "https://a.example/fhir/$process-message"
    assert header["destination"] == [{"endpoint": "https://b.example/fhir/$process-message"}]
    sent = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"][1:]]
    assert sent == [("Patient", "p1"), ("Encounter", "e1"), ("Observation", "o1")]

    code, out, _ = run("partner", "outbox")
    assert code == 0
    (line,) = out.strip().splitlines()
    assert line.split("\t")[:4] == [message_id, "hospital-b", "pending", "1"]
    code, out, _ = run("partner", "outbox", "--status", "delivered")
    assert code == 0 and out == ""


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("send-transfer", "--patient", "p1", "--to", "nobody"), "no partner 'nobody'"),
        (("send-transfer", "--patient", "p9", "--to", "hospital-b"), "no Patient/p9"),
        (
            ("send-observations", "--patient", "p1", "--to", "hospital-b"),
            "does not take observations",
        ),
        (("outbox", "--status", "lost"), "--status is pending, delivered or failed"),
        (("outbox", "--id", "urn:uuid:x"), "no outgoing message"),
    ],
)
def test_mistakes_end_as_one_line(configured: Settings, args: tuple[str, ...], why: str) -> None:
    code, out, err = run("partner", *args)
    assert code == 2 and out == ""
    assert why in err and len(err.strip().splitlines()) == 1


def test_a_broken_partners_file_is_one_line(configured: Settings, tmp_path: Path) -> None:
    (tmp_path / "partners.json").write_text('{"partners": [{"name": "x"}]}')
    code, _, err = run("partner", "list")
    assert code == 2 and "partner 0 needs" in err


def test_public_url_defaults_to_the_http_listener(tmp_path: Path) -> None:
    plain = Settings(data_dir=tmp_path, http_host="127.0.0.1", http_port=9000)
    assert security_wiring.message_endpoint(plain) == (
        "http://127.0.0.1:9000/fhir/$process-message"
    )
    given = Settings(data_dir=tmp_path, public_url="https://cg.hospital.example/")
    assert given.effective_public_url == "https://cg.hospital.example"
    with pytest.raises(ValidationError, match="public_url"):
        Settings(data_dir=tmp_path, public_url="cg.hospital.example")
    assert len(security_wiring.partners(plain)) == 0
