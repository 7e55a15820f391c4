"""Two hospitals, two caregraph processes (``python -m caregraph.cli up``), two data dirs, two
keys, each on its own SQLite and embedded bus, exchange FHIR messages as partners.

Each hospital's HIS admits the same person over MLLP (different MRN authorities) and sends
vital signs. Each registers the other's public key as a Backend Services client
(``caregraph partner jwks`` + ``caregraph client add``) and names it in its partners file.
A transfers the patient to B with the recent vitals (``caregraph partner send-transfer``);
A's api role delivers it with a token from B's token endpoint; B links the incoming
patient to its own record through its MPI and answers; A sees the delivery done with B's
answer. B then sends its own vitals back the same way (``POST /fhir/$send-observations``), and A
links B's patient to its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from caregraph.demo import adt_patient_id
from caregraph.security_cli import mint_development_token
from caregraph.security_wiring import signing_key
from caregraph.settings import Settings
from caregraph.wiring import open_database
from devices.feeds.hl7 import HospitalFeed
from devices.mllp.client import MllpClient
from messaging.delivery import ClientCredentials
from messaging.identity import local_id
from security.clients import ClientRegistry
from security.keys import load_or_create_signing_key
from tests.support.services import free_port

pytestmark = pytest.mark.e2e

#: What each hospital lets the other do: write a message's resources (and nothing else).
SCOPE = "system/Patient.cru system/Encounter.cru system/Observation.cru"
WAIT_S = 30.0
T = TypeVar("T")


@dataclass
class Hospital:
    name: str
    data_dir: Path
    feed: HospitalFeed
    http_port: int = field(default_factory=free_port)
    mllp_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    interrupted: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base}/fhir/$process-message"

    @property
    def patient_id(self) -> str:
        return adt_patient_id(self.feed, self.feed.patients[0])

    @property
    def partners_file(self) -> Path:
        return self.data_dir.parent / f"{self.name}-partners.json"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
        env.update(
            CAREGRAPH_DATA_DIR=str(self.data_dir),
            CAREGRAPH_PARTNERS_FILE=str(self.partners_file),
            CAREGRAPH_OUTBOX_POLL_S="0.2",
            # the name partners know this hospital by, for the api and the CLI alike
            CAREGRAPH_PUBLIC_URL=self.base,
        )
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "caregraph.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"caregraph {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caregraph.cli",
                "up",
                "--http-port",
                str(self.http_port),
                "--mllp-port",
                str(self.mllp_port),
                "--dicom-port",
                str(self.dicom_port),
            ],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def interrupt(self) -> None:
        """Ctrl-C, once: the process stops its services and exits (a second one could land
        after it restored Python's own handler, and end it by KeyboardInterrupt)."""
        if self.process is not None and self.process.poll() is None and not self.interrupted:
            self.interrupted = True
            self.process.send_signal(signal.SIGINT)

    def stop(self) -> str:
        """Stop the process (after :meth:`interrupt`); its stderr."""
        if self.process is None:
            return ""
        self.interrupt()
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        assert self.process.returncode == 0, err
        return err

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [signing_key(Settings(data_dir=self.data_dir)).public_jwk]}

    def register(self, partner: Hospital) -> str:
        """Register ``partner``'s public key as a client here; its client_id."""
        db = open_database(Settings(data_dir=self.data_dir))
        try:
            return ClientRegistry.open(db).add(partner.name, partner.public_jwks(), SCOPE).client_id
        finally:
            db.close()

    def client(self) -> httpx.Client:
        token = mint_development_token(Settings(data_dir=self.data_dir), "system/*.cruds")
        return httpx.Client(
            base_url=self.base, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )

    def admit_with_vitals(self) -> None:
        """The HIS admits the patient, then the monitor gateway sends one set of vitals."""
        person = self.feed.patients[0]
        now = datetime.now(UTC)
        with MllpClient("127.0.0.1", self.mllp_port, timeout_s=10) as mllp:
            for message in (self.feed.admission(person, now), self.feed.vitals(person, now)):
                ack = mllp.send(message)
                assert b"MSA|CA|" in ack or b"MSA|AA|" in ack, ack


def eventually(what: str, probe: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """``probe()`` once it returns something other than None; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last is not None:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def ready(hospital: Hospital) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        assert hospital.process is not None and hospital.process.poll() is None, (
            hospital.process.communicate() if hospital.process else None
        )
        return True if httpx.get(f"{hospital.base}/readyz", timeout=2).status_code == 200 else None

    return probe


def golden_of(client: httpx.Client, patient_id: str) -> str | None:
    """The golden record the hospital's MPI has confirmed ``patient_id`` in, if any."""
    response = client.get(f"/linkage/patients/{patient_id}")
    if response.status_code != 200:
        return None
    body = response.json()
    return str(body["golden"]["golden_id"]) if body["link"]["state"] == "MATCH" else None


def linked_records(client: httpx.Client, hospital: Hospital) -> int | None:
    """How many source records the hospital's MPI has confirmed in its patient's golden
    record, once the ADT and the ORU record are both there and the vitals are stored."""
    response = client.get(f"/linkage/patients/{hospital.patient_id}")
    if response.status_code != 200:
        return None
    members = response.json()["golden"]["members"]
    matched = sum(1 for m in members if m["state"] == "MATCH")
    mrn = hospital.feed.patients[0].mrn
    system = f"urn:oid:{hospital.feed.authority_oid}"
    stored = client.get(
        "/fhir/Observation",
        params={"subject:Patient.identifier": f"{system}|{mrn}", "_total": "accurate"},
    )
    vitals = stored.json().get("total", 0) if stored.status_code == 200 else 0
    return matched if matched >= 2 and vitals >= 6 else None


def vitals_of(client: httpx.Client, patient_id: str) -> int | None:
    response = client.get(
        "/fhir/Observation",
        params={
            "subject": f"Patient/{patient_id}",
            "category": "vital-signs",
            "_total": "accurate",
        },
    )
    total = response.json().get("total", 0) if response.status_code == 200 else 0
    return int(total) or None


def delivered(client: httpx.Client, message_id: str) -> dict[str, Any] | None:
    """The delivery's parts once it is no longer pending."""
    response = client.get("/fhir/$outbox-status", params={"id": message_id})
    assert response.status_code == 200, response.text
    parts = {p["name"]: p for p in response.json()["parameter"][0]["part"]}
    return None if parts["status"]["valueCode"] == "pending" else parts


@pytest.fixture
def hospitals(tmp_path: Path) -> Iterator[tuple[Hospital, Hospital]]:
    a = Hospital(
        "hospital-a",
        tmp_path / "a",
        HospitalFeed(patients=1, seed=5, facility="HOSPA", authority_oid="1.2.3.4.100"),
    )
    b = Hospital(
        "hospital-b",
        tmp_path / "b",
        HospitalFeed(patients=1, seed=5, facility="HOSPB", authority_oid="1.2.3.4.200"),
    )
    # Each registers the other's public key as a Backend Services client (what
    # ``caregraph partner jwks`` prints and ``caregraph client add`` registers; both commands
    # are tested in tests/integration/messaging/test_partner_cli.py: in-process here, for
    # speed, as subprocesses cost seconds each on a loaded machine).
    client_at: dict[str, str] = {}
    for host, guest in ((a, b), (b, a)):
        client_at[f"{guest.name}@{host.name}"] = host.register(guest)
    for own, other in ((a, b), (b, a)):
        entry = {
            "name": other.name,
            "fhir_base": f"{other.base}/fhir",
            "token_url": f"{other.base}/auth/token",
            "client_id": client_at[f"{own.name}@{other.name}"],
            "inbound_client_id": client_at[f"{other.name}@{own.name}"],
            "scope": SCOPE,
            "events": ["transfer", "observations"],
        }
        own.partners_file.write_text(json.dumps({"partners": [entry]}))
    try:
        for hospital in (a, b):
            hospital.start()
        for hospital in (a, b):
            eventually(f"{hospital.name} ready", ready(hospital))
        yield a, b
    finally:
        for hospital in (a, b):
            hospital.interrupt()  # both stop at once
        errors = [h.stop() for h in (a, b)]
        assert all("Traceback" not in e for e in errors), errors


def test_a_transfers_a_patient_to_b_and_b_reports_back(
    hospitals: tuple[Hospital, Hospital],
) -> None:
    a, b = hospitals
    with a.client() as at_a, b.client() as at_b:
        # The partners may fetch each other's key from the running server as well.
        jwks = httpx.get(f"{a.base}/.well-known/jwks.json", timeout=5).json()
        assert jwks == a.public_jwks()
        # ... and find where to send messages in the CapabilityStatement.
        statement = at_b.get("/fhir/metadata").json()
        assert statement["messaging"][0]["endpoint"][0]["address"] == b.endpoint
        assert "process-message" in {o["name"] for o in statement["rest"][0]["operation"]}

        for hospital in (a, b):
            hospital.admit_with_vitals()
        # Each HIS and monitor feed makes its own source record; the linkage role links them.
        for hospital, http in ((a, at_a), (b, at_b)):
            eventually(
                f"{hospital.name}'s records linked",
                lambda h=hospital, c=http: linked_records(c, h),  # type: ignore[misc]
            )

        # A transfers its patient to B, with the recent vitals.
        sent = a.cli("partner", "send-transfer", "--patient", a.patient_id, "--to", b.name)
        parts = eventually("A's delivery", lambda: delivered(at_a, sent))
        assert parts["status"]["valueCode"] == "delivered", parts
        assert parts["responseCode"]["valueCode"] == "ok"
        answer = parts["response"]["resource"]
        header, outcome = (e["resource"] for e in answer["entry"])
        assert header["response"]["code"] == "ok"
        assert header["destination"] == [{"endpoint": a.endpoint}]

        # B linked the incoming patient to its own record, and says so in its answer.
        incoming = local_id(a.endpoint, "Patient", a.patient_id)
        b_golden = golden_of(at_b, b.patient_id)
        assert golden_of(at_b, incoming) == b_golden
        said = [i["diagnostics"] for i in outcome["issue"]]
        assert f"Patient/{incoming} is in golden record Patient/{b_golden}" in said
        assert vitals_of(at_b, incoming) == 6  # one ORU: six vital signs
        assert any(s.startswith("stored Encounter/msg-") for s in said)

        # B reports its own vitals of the patient back; A's own vitals are not echoed.
        # (this time through the REST operation, as a front end at B would)
        queued = at_b.post(
            "/fhir/$send-observations",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "patient", "valueReference": {"reference": f"Patient/{b.patient_id}"}},
                    {"name": "partner", "valueString": a.name},
                ],
            },
            headers={"Content-Type": "application/fhir+json"},
        )
        assert queued.status_code == 202, queued.text
        back = queued.json()["parameter"][0]["part"][0]["valueString"]
        parts = eventually("B's delivery", lambda: delivered(at_b, back))
        assert parts["status"]["valueCode"] == "delivered", parts
        returned = local_id(b.endpoint, "Patient", b.patient_id)
        assert golden_of(at_a, returned) == golden_of(at_a, a.patient_id) is not None
        assert vitals_of(at_a, returned) == 6

        # The status is on the command line too, with B's answer.
        line, *response = a.cli("partner", "outbox", "--id", sent).splitlines()
        assert line.split("\t")[:3] == [sent, b.name, "delivered"]
        assert json.loads("\n".join(response))["entry"][0]["resource"]["response"]["code"] == "ok"

    spoof_refused(a, b)


def spoof_refused(a: Hospital, b: Hospital) -> None:
    """B's client at A holds a valid token, but a message naming another source is refused,
    and without a token nothing is processed."""
    partners = json.loads(b.partners_file.read_text())["partners"][0]
    key = load_or_create_signing_key(b.data_dir / "security" / "signing-key.pem")
    credentials = ClientCredentials(partners["token_url"], partners["client_id"], key, SCOPE)
    with httpx.Client(timeout=10) as http:
        token = credentials.token(http)
        message = {
            "resourceType": "Bundle",
            "type": "message",
            "identifier": {"system": "urn:test", "value": "spoof-1"},
            "entry": [
                {
                    "resource": {
                        "resourceType": "MessageHeader",
                        "id": "h1",
                        "eventCoding": {
                            "system": "http://hl7.org/fhir/message-events",
                            "code": "observation-provide",
                        },
                        "source": {"endpoint": "https://somebody-else.example/fhir"},
                    }
                }
            ],
        }
        headers = {"Content-Type": "application/fhir+json"}
        spoofed = http.post(
            a.endpoint, json=message, headers={**headers, "Authorization": f"Bearer {token}"}
        )
        assert spoofed.status_code == 403, spoofed.text
        anonymous = http.post(a.endpoint, json=message, headers=headers)
        assert anonymous.status_code == 401
