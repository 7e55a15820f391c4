"""Unknown codes counted where an adapter finds them, read by /metrics at scrape time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from adapters.codes import unmatched
from adapters.codes.unmatched import OTHER, UnmatchedTally
from adapters.hl7v2.intake import judge
from adapters.hl7v2.normalize import normalize
from adapters.hl7v2.normalizer import records_for
from bus.base import Message
from bus.headers import make_headers
from observability.metrics import Metrics
from tests.unit.hl7v2 import corpus


def value(metrics: Metrics, **labels: str) -> float | None:
    return metrics.registry.get_sample_value("caregraph_unmatched_codes_total", labels)


def test_the_tally_counts_per_source_system_and_kind() -> None:
    tally = UnmatchedTally()
    tally.count("hl7v2", "LN")
    tally.count("hl7v2", "LN", n=2)
    tally.count("hl7v2", " 99LOC ", "unknown_code")
    tally.count("hl7v2", "", "unknown_unit")
    tally.count("serial/astm", "x" * 100, "unknown_unit")
    assert tally.snapshot() == {
        ("hl7v2", "LN", "unknown_code"): 3,
        ("hl7v2", "99LOC", "unknown_code"): 1,
        ("hl7v2", "none", "unknown_unit"): 1,
        ("serial/astm", "x" * 64, "unknown_unit"): 1,
    }


def test_past_the_cap_new_systems_count_under_other_and_nothing_is_lost() -> None:
    tally = UnmatchedTally(max_series=3)
    for system in ("A", "B", "C", "D", "E", "A"):
        tally.count("hl7v2", system)
    snap = tally.snapshot()
    assert snap[("hl7v2", "A", "unknown_code")] == 2  # a known series still counts itself
    assert snap[("hl7v2", OTHER, "unknown_code")] == 2
    assert sum(snap.values()) == 6 and len(snap) == 4


def test_counting_from_many_threads_loses_nothing() -> None:
    tally = UnmatchedTally()

    def work() -> None:
        for _ in range(2000):
            tally.count("serial/intellivue", "vendor")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tally.snapshot() == {("serial/intellivue", "vendor", "unknown_code"): 8000}


def test_metrics_read_the_tally_at_each_scrape_beside_direct_counts() -> None:
    tally = UnmatchedTally()
    metrics = Metrics()
    metrics.watch_unmatched(tally.snapshot)
    labels = {"source": "hl7v2", "system": "LN", "kind": "unknown_code"}
    assert value(metrics, **labels) is None
    tally.count("hl7v2", "LN")
    assert value(metrics, **labels) == 1
    metrics.record_unmatched_code("unknown_code", 2, source="hl7v2", system="LN")
    tally.count("hl7v2", "LN")
    assert value(metrics, **labels) == 4
    assert "caregraph_unmatched_codes_total{" in metrics.render().decode()


def _odd_pcd01() -> bytes:
    return (
        corpus.pcd01("UNM0001", 1)
        .replace(b"150456^MDC_PULS_OXIM_SAT_O2^MDC", b"199999^MDC_VENDOR_THING^MDC")
        .replace(b"262688^MDC_DIM_PERCENT", b"262999^MDC_DIM_ODD")
    )


def _moved(before: dict[tuple[str, str, str], int]) -> dict[tuple[str, str, str], int]:
    after = unmatched.TALLY.snapshot()
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_the_hl7_normalizer_counts_each_unknown_code_once_per_system() -> None:
    before = unmatched.TALLY.snapshot()
    headers = make_headers("mllp:h:1", "UNM0001", "x", received_at=datetime(2026, 1, 5, tzinfo=UTC))
    records, failures, _ = records_for([Message("raw.hl7v2", 0, 0, None, _odd_pcd01(), headers, 0)])
    assert records and not failures
    assert _moved(before) == {
        ("hl7v2", "MDC", "unknown_code"): 1,
        ("hl7v2", "MDC", "unknown_unit"): 1,
    }


def test_the_gateway_answering_a_message_does_not_count_it() -> None:
    """The MLLP gateway maps a message to decide AA/AE before the normalizer maps it again;
    counting in both (e.g. in the mapping context) would count every unknown code twice."""
    before = unmatched.TALLY.snapshot()
    raw = _odd_pcd01()
    verdict = judge(raw, received_at=datetime(2026, 1, 5, tzinfo=UTC))
    assert verdict.outcome == "AA"
    assert normalize(raw, received_at=datetime(2026, 1, 5, tzinfo=UTC)).counters == {
        "unknown_code": 1,
        "unknown_unit": 1,
    }
    assert _moved(before) == {}
