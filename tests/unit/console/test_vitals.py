"""The chart table covers every vital sign the sources emit, each code on one line only."""

from __future__ import annotations

from collections import Counter

import pytest

from adapters.serial import codes
from console.vitals import LOINC_SYSTEM, MDC_SYSTEM, PANELS, vitals_table
from devices.feeds.hl7 import VITALS as HL7_FEED_VITALS

CHARTED = {(system, code): s.key for p in PANELS for s in p.series for system, code in s.codings()}

SERIAL_VITALS = [
    codes.HEART_RATE,
    codes.SPO2,
    codes.PULSE_RATE,
    codes.NIBP_SYS,
    codes.NIBP_DIA,
    codes.NIBP_MEAN,
    codes.ABP_SYS,
    codes.ABP_DIA,
    codes.ABP_MEAN,
    codes.RESP_RATE,
    codes.AWAY_RESP_RATE,
    codes.TEMP,
]


@pytest.mark.parametrize("metric", SERIAL_VITALS, ids=lambda m: m.ref_id)
def test_serial_vitals_are_charted_by_mdc_and_loinc(metric: codes.Metric) -> None:
    assert metric.mdc is not None and metric.loinc is not None
    by_mdc = CHARTED.get((MDC_SYSTEM, str(metric.mdc)))
    by_loinc = CHARTED.get((LOINC_SYSTEM, metric.loinc))
    assert by_mdc is not None, metric.ref_id
    # The airway rate shares LOINC 9279-1 with the respiration rate, on the same line.
    assert by_loinc == by_mdc, metric.ref_id


@pytest.mark.parametrize("row", HL7_FEED_VITALS, ids=lambda r: r[1])
def test_hl7_feed_vitals_are_charted(row: tuple[int, str, int, str, float, float, int]) -> None:
    assert (MDC_SYSTEM, str(row[0])) in CHARTED, row[1]


def test_no_code_feeds_two_lines() -> None:
    pairs = Counter(pair for p in PANELS for s in p.series for pair in s.codings())
    assert [pair for pair, n in pairs.items() if n > 1] == []


def test_table_json_has_tokens_the_fhir_api_accepts() -> None:
    table = vitals_table()
    assert {p["key"] for p in table["panels"]} == {p.key for p in PANELS}
    for panel in table["panels"]:
        assert panel["yMin"] < panel["yMax"]
        for series in panel["series"]:
            assert series["codes"]
            for token in series["codes"]:
                system, _, code = token.partition("|")
                assert system in (LOINC_SYSTEM, MDC_SYSTEM) and code
