"""Health rows as JSON and as Prometheus text; silence alerts written only on a change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.detectedissue import DetectedIssue

from adapters.registry.alerts import CLEARED, OPEN
from caregraph.device_api import prometheus_text
from caregraph.device_registry import HealthRow, SilenceAlerts
from caregraph.errors import StoreUnavailable
from devices.serial.base import DriverStats
from devices.serial.gateway import DeviceHealth
from devices.serial.port import LineSettings

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _health(device_id: str, silent: bool, frames: int = 10) -> DeviceHealth:
    stats = DriverStats(connected=True, frames=frames, checksum_errors=2, reconnects=1)
    stats.last_frame_at = T0
    return DeviceHealth(
        device_id,
        "datex",
        "/dev/pts/9",
        True,
        T0,
        40.0 if silent else 0.5,
        silent,
        stats.snapshot(),
        LineSettings(19200, 8, "E", 1, True),
    )


def test_row_json_and_prometheus_text() -> None:
    rows = [HealthRow(_health('mon "1"\nx', False), 1.5, None)]
    row = rows[0].as_json()
    assert row["line"] == "19200 8E1 RTS/CTS"
    assert row["frames"] == 10 and row["frames_per_s"] == 1.5 and row["checksum_errors"] == 2
    assert row["last_frame_at"] == T0.isoformat() and row["stats"]["last_frame_at"]
    text = prometheus_text(rows)
    labels = 'device="mon \\"1\\"\\nx",protocol="datex"'
    assert f"caregraph_device_frames_total{{{labels}}} 10\n" in text
    assert f"caregraph_device_checksum_errors_total{{{labels}}} 2\n" in text
    assert f"caregraph_device_frames_per_second{{{labels}}} 1.5\n" in text
    assert f"caregraph_device_last_frame_timestamp_seconds{{{labels}}} {T0.timestamp():g}" in text
    assert text.count("# TYPE ") == 7
    # No rate yet (first sample): the series is left out rather than reported as 0.
    assert "frames_per_second{" not in prometheus_text([HealthRow(_health("a", False), None, None)])


class FakeStore:
    """Records writes; SilenceAlerts only reads through ``all_resources`` when loading."""

    def __init__(self) -> None:
        self.writes: list[list[dict[str, Any]]] = []
        self.down = False

    def upsert_many(self, resources: list[dict[str, Any]]) -> None:
        if self.down:
            raise StoreUnavailable("database down")
        self.writes.append(resources)


def test_silence_alerts_write_only_on_change() -> None:
    store = FakeStore()
    alerts = SilenceAlerts(store, 30)  # type: ignore[arg-type]
    alerts.loaded = True  # nothing left open by an earlier run
    refs = {"a": "Device/a", "b": "Device/b"}
    alerts.update([_health("a", False), _health("b", False)], refs, T0)
    assert store.writes == []
    alerts.update([_health("a", True), _health("b", False)], refs, T0)
    ((raised,),) = store.writes
    assert raised["status"] == OPEN and raised["identifiedPeriod"]["start"] == (
        "2026-11-25T07:59:20.000Z"  # now minus the 40 s of silence
    )
    assert alerts.issue_id("a") == raised["id"]
    alerts.update([_health("a", True), _health("b", False)], refs, T0 + timedelta(seconds=5))
    assert len(store.writes) == 1  # still silent: nothing new to write
    alerts.update([_health("a", False)], refs, T0 + timedelta(seconds=9))
    (cleared,) = store.writes[1]
    assert cleared["id"] == raised["id"] and cleared["status"] == CLEARED
    assert alerts.issue_id("a") is None
    # A device silent and then no longer served (retired) is cleared too.
    alerts.update([_health("b", True)], refs, T0 + timedelta(seconds=10))
    alerts.update([], refs, T0 + timedelta(seconds=11))
    assert [w[0]["status"] for w in store.writes[2:]] == [OPEN, CLEARED]


def test_an_alert_that_could_not_be_written_is_written_next_time() -> None:
    store = FakeStore()
    alerts = SilenceAlerts(store, 30)  # type: ignore[arg-type]
    alerts.loaded = True
    store.down = True
    with pytest.raises(StoreUnavailable):
        alerts.update([_health("a", True)], {}, T0)
    assert alerts.issue_id("a") is None
    store.down = False
    alerts.update([_health("a", True)], {}, T0)
    ((issue,),) = store.writes
    DetectedIssue.model_validate(issue)  # no Device resource known: identifier only
    assert issue["implicated"] == [{"identifier": {"system": "urn:caregraph:device", "value": "a"}}]
