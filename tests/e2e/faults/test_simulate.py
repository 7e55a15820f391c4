"""``caregraph simulate`` end to end on the embedded defaults, small: the figures the load
report is made of come out, and what was acknowledged is what became searchable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from caregraph.settings import Settings
from caregraph.simulate import MONITOR_PARAMETERS, Plan, simulate
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_simulate_reports_what_it_measured(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        http_port=free_port(),
        mllp_port=free_port(),
        dicom_port=free_port(),
    )
    lines: list[str] = []
    plan = Plan(beds=4, seconds=6, warmup_s=3, progress_s=2, studies_per_bed_day=86400 / 60)
    report = simulate(settings, plan, echo=lines.append)

    assert set(report.acks) <= {"AA", "CA"}, report.acks
    assert report.send_errors == 0
    # everything acknowledged became searchable, nothing else did
    assert report.drained_s is not None, report.lines()
    assert report.stored_obs == report.expected_obs
    assert report.expected_obs % len(MONITOR_PARAMETERS) == 0
    assert report.stored_obs_per_s > 0
    assert 3 <= report.offered_msgs_per_s <= 5  # four monitors at 1 Hz
    assert report.latency_samples > 0 and not math.isnan(report.latency_p99_s)
    assert 0 < report.latency_p50_s <= report.latency_p99_s <= report.latency_max_s
    assert report.rss_end_bytes > 50 * 2**20  # a Python process with the roles loaded
    assert report.dicom_status and set(report.dicom_status) == {0}
    assert "store-writer" in report.lag_end
    assert any(line.startswith("[") for line in lines)  # progress lines were shown
