"""The figures of ``caregraph simulate`` without running a hospital: per-process
RssAnon/RssFile, the flatness slope, and the latency probe."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time

import httpx

from caregraph.simulate import (
    LOST_AFTER_S,
    Probe,
    ProcessMemory,
    Report,
    metric_value,
    slope_per_min,
)
from observability.metrics import Metrics
from observability.ops import OpsServer

MIB = 2**20


def test_slope_is_per_minute_and_zero_when_flat() -> None:
    assert slope_per_min([(0.0, 100), (30.0, 100), (60.0, 100)]) == 0
    assert slope_per_min([(0.0, 0), (30.0, 5 * MIB), (60.0, 10 * MIB)]) == 10 * MIB
    assert math.isnan(slope_per_min([(1.0, 5)]))
    assert math.isnan(slope_per_min([(1.0, 5), (1.0, 6)]))


def test_process_memory_splits_rss_into_anon_and_file() -> None:
    mine = ProcessMemory.read("me", os.getpid())
    assert mine.rss > 0 and mine.anon > 0 and mine.file > 0
    assert mine.anon + mine.file <= mine.rss + MIB  # RssShmem is the rest


def test_a_process_that_is_gone_reads_as_zeros() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    gone = ProcessMemory.read("gone", int(proc.stdout))
    assert (gone.rss, gone.anon, gone.file) == (0, 0, 0)


def _report(anon_series: list[tuple[float, int]]) -> Report:
    start = [ProcessMemory("caregraph", 1, 400 * MIB, 300 * MIB, 100 * MIB)]
    end = [ProcessMemory("caregraph", 1, 500 * MIB, 350 * MIB, 150 * MIB)]
    return Report(
        beds=2,
        window_s=600,
        offered_msgs_per_s=2,
        stored_obs_per_s=20,
        latency_p50_s=0.1,
        latency_p99_s=0.2,
        latency_max_s=0.3,
        latency_samples=10,
        latency_lost=0,
        latency_censored=0,
        ack_p50_s=0.01,
        ack_p99_s=0.02,
        acks={"CA": 10},
        send_errors=0,
        adt=2,
        dicom_status={0: 1},
        rss_start_bytes=400 * MIB,
        rss_end_bytes=500 * MIB,
        rss_max_bytes=500 * MIB,
        rss_series=[],
        cpu_cores=0.5,
        lag_end={},
        lag_max={},
        behind_s=0,
        drained_s=1.0,
        expected_obs=100,
        stored_obs=100,
        anon_start_bytes=300 * MIB,
        anon_end_bytes=350 * MIB,
        anon_series=anon_series,
        processes_start=start,
        processes_end=end,
        load_avg=(1.0, 2.0, 3.0),
    )


def test_flatness_leaves_out_the_first_half_of_the_window() -> None:
    # caches fill in the first minutes, then nothing grows
    series = [(0.0, 300 * MIB), (150.0, 350 * MIB), (300.0, 350 * MIB), (600.0, 350 * MIB)]
    report = _report(series)
    assert report.anon_slope_bytes_per_min == 0
    text = "\n".join(report.lines())
    assert "anon (heap) start 300 MiB, end 350 MiB" in text
    assert "+0.0 MiB/min" in text
    assert "caregraph 400 -> 500 (anon 300 -> 350)" in text
    assert "load average at the window's end 1.00 2.00 3.00" in text


def test_per_process_memory_shows_the_middle_of_the_window_when_read() -> None:
    report = _report([(0.0, 300 * MIB), (600.0, 350 * MIB)])
    report.processes_mid = [ProcessMemory("caregraph", 1, 450 * MIB, 320 * MIB, 130 * MIB)]
    assert "caregraph 400 -> 450 -> 500 (anon 300 -> 320 -> 350)" in "\n".join(report.lines())


def test_sqlite_share_of_the_heap_is_read_from_the_process_metrics() -> None:
    # the exposition a caregraph process serves (observability.ops), read as simulate does
    keep = sqlite3.connect(":memory:")  # so that SQLite holds some memory in this process
    keep.execute("CREATE TABLE t (x)")
    ops = OpsServer("127.0.0.1", 0, {}, Metrics())
    ops.start()
    try:
        url = f"http://127.0.0.1:{ops.port}/metrics"
        mine = ProcessMemory.read("me", os.getpid(), url)
        assert 0 < mine.sqlite < mine.anon
        assert ProcessMemory.read("me", os.getpid(), "http://127.0.0.1:9/metrics").sqlite == 0
    finally:
        ops.stop()
        keep.close()


def test_metric_value_finds_one_series() -> None:
    text = (
        "# HELP x\n"
        'caregraph_memory_bytes{kind="rss_anon"} 5.0\n'
        'caregraph_memory_bytes{kind="sqlite"} 3e+06\n'
    )
    assert metric_value(text, 'caregraph_memory_bytes{kind="sqlite"}') == 3e6
    assert metric_value(text, 'caregraph_memory_bytes{kind="malloc_free"}') is None


def test_the_heap_without_sqlite_caches_has_its_own_slope() -> None:
    # SQLite's caches fill with the store while the rest stays flat: the line says so
    report = _report([(0.0, 300 * MIB), (300.0, 320 * MIB), (600.0, 340 * MIB)])
    report.heap_series = [(0.0, 250 * MIB), (300.0, 250 * MIB), (600.0, 250 * MIB)]
    report.processes_start = [
        ProcessMemory("caregraph", 1, 400 * MIB, 300 * MIB, 100 * MIB, 50 * MIB)
    ]
    report.processes_end = [
        ProcessMemory("caregraph", 1, 500 * MIB, 340 * MIB, 100 * MIB, 90 * MIB)
    ]
    text = "\n".join(report.lines())
    assert "+4.0 MiB/min" in text  # RssAnon's slope over the second half
    assert "SQLite's caches and statements start 50 MiB, end 90 MiB" in text
    assert "the heap without them +0.0 MiB/min" in text


def test_the_window_closing_during_a_probe_search_counts_each_sample_once() -> None:
    # A 1,000-bed run: the searches of one poll outlasted the window, close_window counted
    # the pending samples meanwhile, and the poll then deleted them again (KeyError).
    probe: Probe

    def answer(request: httpx.Request) -> httpx.Response:
        probe.close_window()
        ids = request.url.params["_id"].split(",")
        return httpx.Response(200, json={"entry": [{"resource": {"id": i}} for i in ids]})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as client:
        probe = Probe(client, interval_s=1.0)
        probe.recording = True
        probe.add(("a", "b"), 0.0)
        probe.poll_once()
    assert len(probe.latencies_s) == 1 and probe.censored == 1 and probe.lost == 0


def test_a_sample_waiting_long_is_searched_less_often() -> None:
    searched: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        searched.append(request.url.params["_id"])
        return httpx.Response(200, json={"entry": []})  # nothing searchable yet

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as client:
        probe = Probe(client, interval_s=0.05)
        now = time.monotonic()
        probe.add(("young",), now)
        probe.add(("old",), now - 30.0)  # 30 s behind: searched again in 3 s, not 0.05
        probe.poll_once()
        assert searched == ["old,young"]
        time.sleep(0.06)
        probe.poll_once()
        assert searched[1:] == ["young"]


def test_a_sample_never_found_is_given_up_on_just_after_the_limit() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"entry": []})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as client:
        probe = Probe(client, interval_s=0.05)
        probe.recording = True
        probe.add(("late",), time.monotonic() - (LOST_AFTER_S - 0.05))
        probe.poll_once()  # not yet lost; a tenth of its age would wait 12 s
        time.sleep(0.1)
        probe.poll_once()
    assert probe.lost == 1
    assert LOST_AFTER_S < probe.latencies_s[0] < LOST_AFTER_S + 1
