"""Sign-in through the page: the development sign-in (development auth mode only) gets a
token from the server for the person chosen, and each page then shows only what that
token allows; without it (jwks mode) the form is not offered at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.console.conftest import Watched, axe_violations, screenshot
from tests.e2e.console.served import Served

pytestmark = pytest.mark.e2e

FAMILY = "Oakhollow"


def _patient(pid: str, given: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": FAMILY, "given": [given]}],
        "birthDate": "1970-01-01",
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with Served(tmp_path, development_sign_in=True) as s:
        for pid, given in (("oak-1", "Ada"), ("oak-2", "Bert")):
            s.store.update("Patient", pid, _patient(pid, given))
        yield s


def _sections(page: Page) -> list[str]:
    return [a.inner_text() for a in page.locator("nav a[data-section]").all() if a.is_visible()]


def test_development_sign_in_as_a_clinician_sees_every_patient(
    served: Served, page: Page, watched: Watched
) -> None:
    page.goto(served.app_url)
    card = page.get_by_role("region", name="Development sign-in")
    expect(card).to_be_visible()
    expect(page.get_by_label("User", exact=True)).to_have_value("0")  # the first person
    expect(page.get_by_label("Scopes")).to_have_value("user/*.cruds")
    screenshot(page, "sign-in-development")
    page.get_by_role("button", name="Start development session").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator(".session .who")).to_contain_text("dr-clinician")
    assert _sections(page) == ["Patients", "Devices", "Linkage review"]
    page.get_by_label("Name").fill(FAMILY)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table caption")).to_contain_text("2 matching patient records")
    watched.assert_clean()


def test_a_nurse_for_one_patient_sees_only_that_patient(
    served: Served, page: Page, watched: Watched
) -> None:
    page.goto(served.app_url)
    page.get_by_label("User", exact=True).select_option(label="Nurse: one patient's records")
    expect(page.get_by_label("Scopes")).to_have_value("patient/*.rs")
    page.get_by_label("Patient id").fill("oak-2")
    page.get_by_role("button", name="Start development session").click()
    expect(page.locator(".session .who")).to_contain_text("ward-nurse (patient oak-2)")
    assert "Linkage review" in _sections(page)  # patient/*.rs reads Patient
    page.get_by_label("Name").fill(FAMILY)
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Bert")
    # The token itself, not the page, is what refuses the other patient.
    token = page.evaluate("sessionStorage.getItem('caregraph.console.token')")
    auth = {"Authorization": f"Bearer {token}"}
    other = httpx.get(f"{served.app_url[:-5]}/fhir/Patient/oak-1", headers=auth, timeout=10)
    assert other.status_code in (403, 404)
    watched.assert_clean()


def test_an_engineer_gets_the_device_pages_only(
    served: Served, page: Page, watched: Watched
) -> None:
    page.goto(served.app_url + "#/patients")
    page.get_by_label("User", exact=True).select_option(
        label="Biomedical engineer: devices and their readings"
    )
    page.get_by_role("button", name="Start development session").click()
    expect(page.locator(".session .who")).to_contain_text("biomed-engineer")
    assert _sections(page) == ["Devices"]
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()  # asked for patients
    watched.assert_clean()


def test_a_mistyped_scope_is_refused_by_the_server(
    served: Served, page: Page, watched: Watched
) -> None:
    page.goto(served.app_url)
    page.get_by_label("User", exact=True).select_option(label="Someone else")
    page.get_by_label("User name").fill("tester")
    page.get_by_label("Scopes").fill("user/Patient.rs user/Observaton.rx")
    page.get_by_role("button", name="Start development session").click()
    alert = page.get_by_role("region", name="Development sign-in").get_by_role("alert")
    expect(alert).to_contain_text("not a SMART scope: user/Observaton.rx")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    watched.assert_clean()


def test_sign_in_page_is_accessible(served: Served, browser: Browser) -> None:
    violations = axe_violations(
        browser, served.app_url, "button:has-text('Start development session')", signed_in=False
    )
    assert violations == [], violations


def test_without_development_mode_there_is_no_development_sign_in(
    tmp_path: Path, page: Page, watched: Watched
) -> None:
    with Served(tmp_path) as plain:
        page.goto(plain.app_url)
        expect(page.get_by_label("Access token")).to_be_visible()
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("heading", name="Development sign-in")).to_have_count(0)
        posted = httpx.post(
            plain.app_url + "sign-in/development",
            json={"subject": "x", "scope": "user/*.rs"},
            timeout=10,
        )
        assert posted.status_code == 401  # not public, and not there for a token either
        page.get_by_label("Access token").fill(plain.token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    watched.assert_clean()
