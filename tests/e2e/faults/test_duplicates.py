"""The same HL7 message (same MSH-10) and the same DICOM instance delivered twice: the
sender gets the same answer again and caregraph stores each once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from devices.feeds.modality import PatientLabel, relabel
from tests.e2e.faults.conftest import Hospital
from tests.e2e.faults.workload import (
    GOLDEN_TAG,
    MESSAGES,
    PATIENTS,
    TIME_BOUND_S,
    Hl7Stream,
    api_client,
    check_exactly_once,
    describe_patients,
    summary,
    wait_for_count,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TIME_BOUND_S)]


def storescu(port: int, path: Path) -> None:
    subprocess.run(
        ["storescu", "-aec", "CAREGRAPH", "127.0.0.1", str(port), str(path)],
        check=True,
        timeout=60,
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
    )


def test_hl7_message_and_dicom_instance_delivered_twice(hospital: Hospital, tmp_path: Path) -> None:
    stream = Hl7Stream(max(100, MESSAGES // 3), twice=True)
    stream.send("127.0.0.1", hospital.mllp_port)
    sent_twice = [o for o in stream.outcomes if o.again is not None]
    assert len(sent_twice) == len(stream.outcomes)
    different = [o for o in sent_twice if o.again != o.first]
    assert different == [], "a repeated MSH-10 must get the same ACK again"

    p = stream.feed.patients[0]
    label = PatientLabel(p.mrn, stream.feed.authority_oid, p.family, p.given, p.birth_date, p.sex)
    image = tmp_path / "ct.dcm"
    relabel("CT_small.dcm", label, "twice").save_as(image)
    storescu(hospital.dicom_port, image)
    storescu(hospital.dicom_port, image)  # a new association, the same instance

    with api_client(*hospital.front) as api:
        problems = check_exactly_once(api, stream)
        goldens = wait_for_count(api, "Patient", PATIENTS, _tag=GOLDEN_TAG)
        patients = describe_patients(api) if goldens != PATIENTS else ""
        studies = wait_for_count(api, "ImagingStudy", 1)
        study = api.get("/ImagingStudy").json()["entry"][0]["resource"]
        history = api.get(f"/Observation/{_some_observation(api)}/_history").json()
    print(f"each HL7 message twice: {summary(stream)}")
    assert problems == [], problems[:10]
    assert goldens == PATIENTS, patients
    assert studies == 1
    instances = [i for s in study.get("series", []) for i in s.get("instance", [])]
    assert len(instances) == 1, study
    assert study.get("numberOfInstances") == 1
    assert history["total"] == 1  # the identical second delivery added no version


def _some_observation(api: httpx.Client) -> str:
    return str(api.get("/Observation", params={"_count": "1"}).json()["entry"][0]["resource"]["id"])
