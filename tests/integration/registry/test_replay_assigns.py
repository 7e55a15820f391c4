"""An attachment registered after the readings arrived: ``caregraph replay raw.device``
re-resolves them with the current registry (the live normalizer's patient lookup is the
one replay runs), so unassigned readings get their patient, with the same ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.serial import datex
from adapters.serial import headers as dh
from adapters.serial.observation import UNASSIGNED
from bus import headers as bh
from bus.base import Record
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE, fhir_topic
from caregraph.replay import replay
from caregraph.roles import all_topics, normalizers
from caregraph.settings import Settings
from caregraph.wiring import Context, open_database
from tests.integration.registry.conftest import Cli

pytestmark = pytest.mark.integration


def test_replay_assigns_readings_to_a_later_attachment(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    bus = MemoryBus(partitions=1)
    ctx = Context(settings=settings, bus=bus, db=open_database(settings))
    try:
        ctx.bus.ensure_topics(all_topics(ctx))
        cli = Cli(settings.effective_database_url)
        cli("add", "mon-r", "--protocol", "datex", "--port", "/dev/null-r")
        ctx.store.upsert_many([{"resourceType": "Patient", "id": "p-r"}])
        device_time = datetime.now(UTC) - timedelta(minutes=10)
        on = datex.GROUP_EXISTS | datex.GROUP_ACTIVE
        raw = datex.encode_frame(
            datex.encode_phdb_record(int(device_time.timestamp()), {"ecg.hr": 70}, {0: on})
        )
        headers = bh.make_headers("serial/datex", "mon-r/1/1", datex.CONTENT_TYPE)
        headers[dh.PROTOCOL] = "datex"
        headers[dh.DEVICE_ID] = "mon-r"
        ctx.bus.publish_many([Record(RAW_DEVICE, raw, b"mon-r", headers)])

        # Live: nobody attached yet.
        _, handle = normalizers(ctx)[RAW_DEVICE]
        handle(bus.snapshot(RAW_DEVICE))
        (first,) = [json.loads(m.value) for m in bus.snapshot(fhir_topic("Observation"))]
        assert "subject" not in first and first["meta"]["tag"][0]["code"] == UNASSIGNED

        # The nurse records that the monitor was on p-r since 20 minutes ago.
        since = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
        cli("attach", "mon-r", "--patient", "Patient/p-r", "--from", since)
        result = replay(ctx, RAW_DEVICE, datetime.now(UTC) - timedelta(hours=1), idle_s=0.5)
        assert result.replayed == 1
        observations = [json.loads(m.value) for m in bus.snapshot(fhir_topic("Observation"))]
        assert len(observations) == 2
        again = observations[1]
        assert again["id"] == first["id"]
        assert again["subject"] == {"reference": "Patient/p-r"}
        assert "meta" not in again
    finally:
        ctx.close()
