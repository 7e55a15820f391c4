"""``caregraph replay``: re-normalizing a raw topic stores each resource once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus import RAW_HL7V2, fhir_topic
from bus.headers import make_headers
from caregraph.errors import ConfigError
from caregraph.replay import replay
from caregraph.settings import Settings
from caregraph.wiring import Context, open_context
from devices.feeds.hl7 import HospitalFeed
from fhir_store.writer import handle_fhir_batch

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _store_everything(ctx: Context, group: str) -> int:
    """Drain the fhir.* topics into the store, as the store-writer role does."""
    topics = [fhir_topic(t) for t in ctx.store.registry.types]
    handle = handle_fhir_batch(ctx.store)
    stored = 0
    with ctx.bus.subscribe(group, topics) as consumer:
        idle = 0
        while idle < 3:
            batch = consumer.poll(0.5, 1000)
            if not batch:
                idle += 1 if consumer.assignment() else 0
                continue
            idle = 0
            handle(batch)
            consumer.commit(batch)
            stored += len(batch)
    return stored


def _observation_versions(ctx: Context) -> list[str]:
    page = ctx.store.searching.search("Observation", [("_count", "1000")])
    return sorted(str(stored.version) for stored in page.matches)


def test_replay_since_a_time_and_again_without_duplicates(tmp_path: Path) -> None:
    ctx = open_context(Settings(data_dir=tmp_path))
    try:
        feed = HospitalFeed(patients=1, seed=5)
        patient = feed.patients[0]
        messages = [feed.vitals(patient, T0 + timedelta(minutes=i)) for i in range(3)]
        ctx.bus.ensure_topics([RAW_HL7V2])
        for i, raw in enumerate(messages):
            headers = make_headers(
                "mllp", f"m{i}", "application/hl7-v2", received_at=T0 + timedelta(hours=i)
            )
            ctx.bus.publish(RAW_HL7V2, raw, key=patient.mrn.encode(), headers=headers)

        result = replay(ctx, RAW_HL7V2, T0 + timedelta(minutes=30), idle_s=1.0)
        assert (result.read, result.replayed) == (3, 2)
        _store_everything(ctx, "test-store-1")
        first = _observation_versions(ctx)
        assert len(first) == 2 * 6  # two messages, six vitals each
        assert set(first) == {"1"}

        again = replay(ctx, RAW_HL7V2, T0, idle_s=1.0)
        assert (again.read, again.replayed) == (3, 3)
        _store_everything(ctx, "test-store-2")
        second = _observation_versions(ctx)
        assert len(second) == 3 * 6
        assert set(second) == {"1"}, "a replayed, unchanged reading must not add a version"
    finally:
        ctx.close()


def test_replay_refuses_a_topic_that_is_not_raw(tmp_path: Path) -> None:
    ctx = open_context(Settings(data_dir=tmp_path))
    try:
        with pytest.raises(ConfigError, match=r"raw\.hl7v2"):
            replay(ctx, "fhir.Patient", T0)
    finally:
        ctx.close()
