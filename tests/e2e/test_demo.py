"""``caregraph demo`` as a newcomer runs it: data from simulated sources becomes searchable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapters.serial.observation import device_resource_id
from caregraph.demo import adt_patient_id
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from devices.feeds.hl7 import HospitalFeed
from tests.support.services import free_port

pytestmark = pytest.mark.e2e


def _count(client: httpx.Client, query: str) -> int:
    response = client.get(query, params={"_summary": "count"})
    if response.status_code != 200:
        return -1
    return int(response.json().get("total", -1))


def test_demo_makes_data_flow_end_to_end(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("http", "mllp", "dicom")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "caregraph.cli",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--http-port",
            str(ports["http"]),
            "--mllp-port",
            str(ports["mllp"]),
            "--dicom-port",
            str(ports["dicom"]),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, int] = {}
    feed = HospitalFeed(patients=6, seed=1)  # the demo's feed: same seed, same patients
    wanted = {
        # serial monitors on PTYs, registered, read by the serial role, and attached to
        # the first two admitted patients: their readings carry the patient
        **{
            f"Observation?device=Device/{device_resource_id(device)}"
            f"&subject=Patient/{adt_patient_id(feed, patient)}": 1
            for device, patient in zip(
                ("demo-icu-monitor-1", "demo-or-monitor-1"), feed.patients, strict=False
            )
        },
        # the HIS over MLLP: admitted patients, and their PCD-01 vitals by LOINC-less MDC code
        "Patient?identifier=urn:oid:2.16.840.1.113883.3.999.1|MRN100005": 1,
        "Encounter?subject:Patient.identifier=MRN100000": 1,
        "Observation?code=urn:iso:std:iso:11073:10101|147842"
        "&subject:Patient.identifier=MRN100000": 2,
        # the modality over DICOM, for the first patient
        "ImagingStudy?subject:Patient.identifier=MRN100000": 1,
    }
    try:
        base = f"http://127.0.0.1:{ports['http']}/fhir"
        deadline = time.monotonic() + 90
        token = mint_development_token(Settings(data_dir=tmp_path), "user/*.rs")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=5, headers=auth) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    seen = {q: _count(client, "/" + q) for q in wanted}
                except httpx.TransportError:
                    seen = {}
                if seen and all(seen[q] >= n for q, n in wanted.items()):
                    break
                time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        assert seen and all(seen[q] >= n for q, n in wanted.items()), seen
        time.sleep(4)  # at least one tally line (every 3 s)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stored:" in out
