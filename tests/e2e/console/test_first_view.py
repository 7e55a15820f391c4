"""The issue's speed goal: a patient with 100,000 observations shows its record's first
view (identities and the latest readings on every chart) in under a second.

The Observations go in through ``FhirStore.upsert_many``, as the store writer stores what
the bus delivers (HTTP would take minutes for 100,000); the console then reads them through
the FHIR API of the in-process app (``served.py``), as in production. The time is a figure,
printed and attached to the test report (``record_property``), not a pass/fail bound: the
house measures speed with figures, since CI machines are shared and noisy. What is asserted
is that the first view really shows the record and the last hour of readings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.console.conftest import Watched, screenshot
from tests.e2e.console.seed import VITALS
from tests.e2e.console.served import Served

pytestmark = pytest.mark.e2e

PATIENT = "perf-patient-1"
READINGS = 100_002  # 16,667 rounds of the six vital signs, every 5 s: 23 hours
FIRST_VIEW_GOAL_S = 1.0  # the goal, reported beside the figure


def _observations(now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(READINGS // len(VITALS)):
        when = (now - timedelta(seconds=5 * i)).isoformat(timespec="seconds")
        for loinc, mdc, unit, mean, amp in VITALS:
            yield {
                "resourceType": "Observation",
                "id": f"perf-{mdc}-{i}",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": loinc},
                        {"system": "urn:iso:std:iso:11073:10101", "code": str(mdc)},
                    ]
                },
                "subject": {"reference": f"Patient/{PATIENT}"},
                "effectiveDateTime": when.replace("+00:00", "Z"),
                "valueQuantity": {"value": round(mean + amp * math.sin(i / 40), 1), "unit": unit},
            }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(tmp_path_factory.mktemp("first-view")) as app:
        app.store.update(
            "Patient",
            PATIENT,
            {
                "resourceType": "Patient",
                "id": PATIENT,
                "name": [{"family": "Longstay", "given": ["Petra"]}],
                "birthDate": "1950-02-02",
            },
        )
        batch: list[dict[str, Any]] = []
        for obs in _observations(datetime.now(UTC)):
            batch.append(obs)
            if len(batch) == 5000:
                app.store.upsert_many(batch)
                batch = []
        app.store.upsert_many(batch)
        yield app


def _timed(action: Callable[[], None]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def test_record_of_a_patient_with_100k_observations_first_view(
    served: Served, page: Page, watched: Watched, record_property: Callable[[str, object], None]
) -> None:
    page.goto(served.app_url + "#/patients")
    page.get_by_label("Access token").fill(served.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Find a patient")).to_be_visible()

    firsts = []
    for _ in range(5):  # the best of five: the machine is shared
        page.goto(served.app_url + "#/patients")
        expect(page.get_by_role("heading", name="Find a patient")).to_be_visible()
        firsts.append(
            _timed(
                lambda: (
                    page.goto(served.app_url + f"#/patient/{PATIENT}"),
                    page.wait_for_selector("section[aria-label=Identities] tbody tr"),
                    page.wait_for_selector("section.vitals[data-first-view=true]"),
                )
            )
        )
        whole = _timed(lambda: page.wait_for_selector("section.vitals[data-loaded=true]"))
    points = int(page.locator('figure[data-panel="hr"]').get_attribute("data-points") or 0)
    record_property("first_view_s", round(min(firsts), 3))
    print(
        f"first view {[round(f, 3) for f in firsts]} s (goal {FIRST_VIEW_GOAL_S} s); "
        f"the rest of the hour {whole:.3f} s more"
    )
    screenshot(page, "first-view-100k")
    assert points >= 600  # the whole last hour of heart rate (720 readings, decimated)
    watched.assert_clean()
