"""Which Observation codes the console charts as vital signs, and how they are grouped.

The table is served as ``/app/vitals.json`` so the browser and the tests read one source.
Codes come in two systems because the sources differ: bedside monitors over HL7 PCD-01
and the serial drivers send IEEE 11073 MDC codes (and the serial adapters add LOINC), a
lab or HIS feed sends LOINC. Where the sources disagree on a term (Philips' ABP terms
150037.. against RTMMS' 150033..), both are listed so no reading falls off a chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class Series:
    """One line on a chart: its key, label, and the (system, code) pairs that feed it."""

    key: str
    label: str
    loinc: tuple[str, ...]
    mdc: tuple[int, ...]

    def codings(self) -> list[tuple[str, str]]:
        """``(system, code)`` pairs, LOINC first."""
        return [(LOINC_SYSTEM, c) for c in self.loinc] + [(MDC_SYSTEM, str(c)) for c in self.mdc]


@dataclass(frozen=True, slots=True)
class Panel:
    """One chart: a title, its unit as shown, a plausible y range, and its series."""

    key: str
    title: str
    unit: str
    y_min: float
    y_max: float
    series: tuple[Series, ...]


PANELS: tuple[Panel, ...] = (
    Panel(
        "hr",
        "Heart rate",
        "/min",
        40,
        160,
        (
            Series("hr", "Heart rate", ("8867-4",), (147842,)),
            Series("pr", "Pulse rate (SpO2)", ("8889-8",), (149530, 149538)),
        ),
    ),
    Panel(
        "spo2", "SpO2", "%", 85, 100, (Series("spo2", "SpO2", ("59408-5", "2708-6"), (150456,)),)
    ),
    Panel(
        "nibp",
        "Blood pressure, non-invasive",
        "mmHg",
        40,
        180,
        (
            Series("nibp-sys", "Systolic", ("8480-6",), (150021,)),
            Series("nibp-mean", "Mean", ("8478-0",), (150023,)),
            Series("nibp-dia", "Diastolic", ("8462-4",), (150022,)),
        ),
    ),
    Panel(
        "abp",
        "Blood pressure, arterial line",
        "mmHg",
        40,
        180,
        (
            Series("abp-sys", "Systolic", ("76215-3",), (150017, 150033, 150037)),
            Series("abp-mean", "Mean", ("76214-6",), (150019, 150035, 150039)),
            Series("abp-dia", "Diastolic", ("76213-8",), (150018, 150034, 150038)),
        ),
    ),
    Panel(
        "resp",
        "Respiration",
        "/min",
        5,
        35,
        (Series("resp", "Respiratory rate", ("9279-1",), (151562, 151594)),),
    ),
    Panel(
        "temp",
        "Temperature",
        "°C",
        35,
        40,
        (Series("temp", "Temperature", ("8310-5",), (150344, 150364)),),
    ),
)


def vitals_table() -> dict[str, Any]:
    """The JSON the browser loads: panels, their series and codes as FHIR token strings."""
    return {
        "panels": [
            {
                "key": p.key,
                "title": p.title,
                "unit": p.unit,
                "yMin": p.y_min,
                "yMax": p.y_max,
                "series": [
                    {
                        "key": s.key,
                        "label": s.label,
                        "codes": [f"{system}|{code}" for system, code in s.codings()],
                    }
                    for s in p.series
                ],
            }
            for p in PANELS
        ]
    }
