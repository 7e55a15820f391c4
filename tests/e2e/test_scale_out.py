"""Several processes per role on Kafka and PostgreSQL, as a hospital deploys caregraph.

Two normalizers and two store writers share the partitions of their topics through their
consumer groups; every acknowledged HL7 message ends up stored exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from devices.feeds.hl7 import VITALS, HospitalFeed
from devices.mllp.client import MllpClient
from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.e2e

PATIENTS = 4
ROUNDS = 10


class Fleet:
    def __init__(self, base_env: dict[str, str], root: Path) -> None:
        self.base_env = base_env
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, *roles: str, **settings: str) -> Path:
        data_dir = self.root / name
        env = {**self.base_env, "CAREGRAPH_DATA_DIR": str(data_dir)}
        env.update({f"CAREGRAPH_{k.upper()}": v for k, v in settings.items()})
        args = [arg for role in roles for arg in ("--role", role)]
        log = (self.root / f"{name}.log").open("wb")
        self.logs.append(log)
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "caregraph.cli", "up", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return data_dir

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self.logs:
            log.close()


@pytest.fixture
def fleet(tmp_path: Path, kafka_bootstrap: str, postgres_url: str) -> Iterator[Fleet]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    env["CAREGRAPH_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env["CAREGRAPH_DATABASE_URL"] = postgres_url
    env["CAREGRAPH_KAFKA_PARTITIONS"] = "4"
    f = Fleet(env, tmp_path)
    try:
        yield f
    finally:
        f.stop()
        for log in sorted(tmp_path.glob("*.log")):
            tail = log.read_text(errors="replace")[-1500:]
            if "Traceback" in tail or "error:" in tail:
                print(f"--- {log.name}\n{tail}")


def test_two_normalizers_and_two_writers_store_everything_once(fleet: Fleet) -> None:
    http, mllp = free_port(), free_port()
    gateway = fleet.start("gateway", "api", "mllp", http_port=str(http), mllp_port=str(mllp))
    for i in range(2):  # each serves its probes and /metrics on a port of its own
        fleet.start(f"normalizer-{i}", "normalizer", http_port=str(free_port()))
        fleet.start(f"writer-{i}", "store-writer", http_port=str(free_port()))
    wait_for_port("127.0.0.1", mllp, timeout_s=60)
    wait_for_port("127.0.0.1", http, timeout_s=60)

    # an assigning authority unique to this run keeps its patients apart from anything
    # else the shared broker may hold
    oid = f"2.16.840.1.113883.3.999.{os.getpid()}.{time.time_ns() % 1_000_000}"
    feed = HospitalFeed(PATIENTS, seed=11, authority_oid=oid)
    start = datetime.now(UTC) - timedelta(hours=1)
    client = MllpClient("127.0.0.1", mllp)
    acks = []
    try:
        for p in feed.patients:
            acks.append(client.send(feed.admission(p, start)))
        for r in range(ROUNDS):
            for p in feed.patients:
                acks.append(client.send(feed.vitals(p, start + timedelta(seconds=r))))
    finally:
        client.close()
    # the feed asks for enhanced-mode accept acknowledgements
    assert all(b"MSA|CA|" in a for a in acks), acks[:3]

    token = mint_development_token(Settings(data_dir=gateway), "system/*.rs")
    per_patient = ROUNDS * len(VITALS)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{http}/fhir",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as api:

        def counts() -> list[int]:
            out = []
            for p in feed.patients:
                r = api.get(
                    "/Observation",
                    params={
                        "_summary": "count",
                        "subject:Patient.identifier": f"urn:oid:{oid}|{p.mrn}",
                    },
                )
                out.append(int(r.json()["total"]) if r.status_code == 200 else -1)
            return out

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(counts()) < per_patient * PATIENTS:
            time.sleep(1)
        time.sleep(3)  # anything still in flight would show up as a duplicate now
        assert counts() == [per_patient] * PATIENTS


def test_a_consumer_role_serves_probes_and_metrics(fleet: Fleet) -> None:
    port = free_port()
    fleet.start("writer", "store-writer", http_port=str(port))
    wait_for_port("127.0.0.1", port, timeout_s=60)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    metrics = httpx.get(f"{base}/metrics").text
    assert 'caregraph_worker_batches_total{group="store-writer"}' in metrics, metrics[:2000]
