"""The normalizer role's device stage as composed: an analyzer's patient id names the patient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.serial import astm
from adapters.serial import headers as dh
from bus import RAW_DEVICE
from bus.base import Message
from bus.headers import make_headers
from caregraph.roles import normalizers
from caregraph.settings import Settings
from caregraph.wiring import open_context

pytestmark = pytest.mark.integration


def test_an_analyzer_result_is_stored_under_the_patient_its_sample_names(
    tmp_path: Path,
) -> None:
    ctx = open_context(Settings(data_dir=tmp_path))
    try:
        ctx.store.upsert_many(
            [
                {
                    "resourceType": "Patient",
                    "id": "ward-7",
                    "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN7"}],
                }
            ]
        )
        records = [b"H|\\^&|||LAB", b"P|1|MRN7", b"R|1|^^^K|4.2|mmol/L"]
        records += [b"P|2|MRN8", b"R|1|^^^K|5", b"L|1"]
        raw = b"".join(astm.encode_message(records))
        headers = make_headers("serial/astm", "lab-1/1/1", "application/octet-stream")
        headers[dh.PROTOCOL] = astm.PROTOCOL
        headers[dh.DEVICE_ID] = "lab-1"
        _, handle = normalizers(ctx)[RAW_DEVICE]
        ctx.bus.ensure_topics(["fhir.Observation"])
        with ctx.bus.subscribe("test-reader", ["fhir.Observation"]) as reader:
            handle([Message(RAW_DEVICE, 0, 1, b"lab-1", raw, headers, 0)])
            got: list[dict[str, object]] = []
            for _ in range(20):
                got += [json.loads(m.value) for m in reader.poll(0.5, 10)]
                if len(got) == 2:
                    break
        subjects = sorted(json.dumps(o["subject"], sort_keys=True) for o in got)
        assert subjects == [
            json.dumps(
                {
                    "display": "patient id reported by the device; no single Patient has it",
                    "identifier": {"value": "MRN8"},
                },
                sort_keys=True,
            ),
            json.dumps({"reference": "Patient/ward-7"}),
        ]
    finally:
        ctx.close()
