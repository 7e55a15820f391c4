"""The console in a real browser against a running ``caregraph demo``.

Clinician flow on a seeded linked record (see ``seed.py``), biomedical-engineer flow on the
demo's own serial monitors (real readings through the real pipeline), the linkage review
page, keyboard use, and an offline accessibility check with axe-core (vendored, MPL-2.0).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from adapters.registry.device import registration_from_device
from adapters.serial.observation import device_resource_id
from tests.e2e.console import seed
from tests.e2e.console.conftest import (
    DEMO_DEVICE,
    Demo,
    Watched,
    axe_violations,
    lend_token_to_shell,
    mint_token,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.e2e

ATTACHED = "console-attached-1"
ATTACHED_PATIENT = {
    "resourceType": "Patient",
    "id": ATTACHED,
    "name": [{"family": "Monitored", "given": ["Maria"]}],
    "birthDate": "1970-01-01",
}
HR_CODES = "http://loinc.org|8867-4,urn:iso:std:iso:11073:10101|147842"
SUBJECTS = ",".join(f"Patient/{p}" for p in seed.SOURCE_IDS)


def _hr_in_last_hour(fhir: httpx.Client) -> tuple[int, float]:
    """How many heart-rate readings the record's last hour holds, and the newest value."""
    since = (datetime.now(UTC) - timedelta(minutes=59)).isoformat()
    params = {"subject": SUBJECTS, "code": HR_CODES, "date": f"ge{since}"}
    total = fhir.get("/Observation", params={**params, "_summary": "count"}).json()["total"]
    newest = fhir.get("/Observation", params={**params, "_sort": "-date", "_count": "1"}).json()
    return int(total), float(newest["entry"][0]["resource"]["valueQuantity"]["value"])


def _points(page: Page, panel: str) -> int:
    return int(page.locator(f'figure[data-panel="{panel}"]').get_attribute("data-points") or -1)


def test_find_a_patient_open_the_linked_record_and_watch_vitals(
    demo: Demo, page: Page, watched: Watched
) -> None:
    with demo.fhir() as fhir:
        seed.seed(fhir)
        expected, newest = _hr_in_last_hour(fhir)
    assert expected >= 60

    sign_in(page, demo)
    expect(page.get_by_role("heading", name="Find a patient")).to_be_visible()
    page.get_by_label("Name", exact=True).fill(seed.FAMILY[:6])
    page.get_by_role("button", name="Search").click()
    result = page.get_by_role("link", name=f"{seed.FAMILY}, Ilse")
    # The golden record stands for its two sources: one row, not three.
    expect(result).to_have_count(1)
    expect(page.get_by_text("Golden record · 2 linked")).to_be_visible()
    screenshot(page, "patient-search")
    result.click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(f"{seed.FAMILY}, Ilse")
    identities = page.get_by_role("region", name="Identities")
    expect(identities.locator("tbody tr")).to_have_count(3)
    expect(identities).to_contain_text("PARTNER")
    expect(identities).to_contain_text(seed.MRN)
    parties = page.get_by_role("region", name="Staff and institutions")
    expect(parties).to_contain_text("Visser, Marta")
    expect(parties).to_contain_text("General Hospital")
    expect(parties).to_contain_text("Partner Clinic")  # from the partner's own encounter
    expect(page.get_by_role("region", name="Encounters")).to_contain_text("ICU bed 04")
    expect(page.get_by_role("region", name="Devices")).to_contain_text("ICU monitor 4")
    imaging = page.get_by_role("region", name="Imaging")
    imaging.get_by_text("CT chest").click()
    expect(imaging).to_contain_text("Axial 1 mm")

    hr = page.locator('figure[data-panel="hr"]')
    expect(page.locator("section.vitals[data-loaded=true]")).to_have_count(1)
    expect(hr).to_have_attribute("data-points", str(expected))
    line = hr.locator('polyline[data-series="hr"]')
    assert len((line.get_attribute("points") or "").split()) == expected
    expect(hr.locator(".legend")).to_contain_text(f"Heart rate: {newest:g}")
    expect(page.locator('figure[data-panel="temp"]')).not_to_have_attribute("data-points", "0")
    screenshot(page, "patient-record")

    # Live: a reading stored now appears without reloading the page.
    with demo.fhir() as fhir:
        seed.add_reading(fhir, datetime.now(UTC))
    expect(hr).to_have_attribute("data-points", str(expected + 1), timeout=20_000)
    screenshot(page, "patient-record-live")
    watched.assert_clean()


@pytest.mark.parametrize(
    ("field", "value"), [("Identifier", "P-4411"), ("Birth date", seed.BIRTH_DATE)]
)
def test_find_a_patient_by_identifier_or_birth_date(
    demo: Demo, page: Page, watched: Watched, field: str, value: str
) -> None:
    with demo.fhir() as fhir:
        seed.seed(fhir)
    sign_in(page, demo)
    page.get_by_label(field, exact=True).fill(value)
    page.get_by_label(field, exact=True).press("Enter")
    expect(page.get_by_role("link", name=f"{seed.FAMILY}, Ilse")).to_have_count(1)
    page.get_by_label("Name", exact=True).fill("Nobody-by-this-name")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No patient matches")).to_be_visible()
    watched.assert_clean()


def test_devices_live_status_registration_and_real_readings(
    demo: Demo, page: Page, watched: Watched
) -> None:
    serial_id = device_resource_id(DEMO_DEVICE)
    sign_in(page, demo)
    page.goto(demo.app + "#/devices")
    row = page.locator(f'tr[data-device="{serial_id}"]')
    expect(row).to_have_attribute("data-state", "ok")
    rate = int(row.locator("td").nth(5).inner_text())
    assert rate > 0, "the demo monitor sends readings every second"
    # The demo may register its monitors itself (with their serial connection), or not yet.
    with demo.fhir() as fhir:
        before = fhir.get(f"/Device/{serial_id}")
    registered = before.status_code == 200
    if not registered:
        expect(row).to_contain_text("not registered")

    # Its readings come through the real serial driver, normalizer and store.
    row.get_by_role("rowheader").get_by_role("link").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Device: " if registered else "Unregistered device")
    expect(page.locator("section.vitals[data-loaded=true]")).to_have_count(1)
    expect(page.locator('figure[data-panel="hr"]')).not_to_have_attribute("data-points", "0")
    assert _points(page, "spo2") > 0
    screenshot(page, "device-readings")

    page.get_by_label("Name", exact=True).fill("ICU monitor, bed 1")
    page.get_by_role("button", name="Save changes" if registered else "Register").click()
    expect(heading).to_have_text("Device: ICU monitor, bed 1")
    with demo.fhir() as fhir:
        stored = fhir.get(f"/Device/{serial_id}").json()
    assert stored["deviceName"][0]["name"] == "ICU monitor, bed 1"
    assert stored["identifier"][0] == {"system": "urn:caregraph:device", "value": DEMO_DEVICE}
    # What the console wrote is a registration the registry reads, and an edit keeps the
    # serial connection and placements the registry had.
    registration = registration_from_device(stored)
    assert registration.device_id == DEMO_DEVICE
    if registered:
        previous = registration_from_device(before.json())
        assert registration.connection == previous.connection
        assert registration.placements == previous.placements

    # Attach it to a patient (the registry's DeviceUseStatement) on the device page ...
    with demo.fhir() as fhir:
        fhir.put(f"/Patient/{ATTACHED}", json=ATTACHED_PATIENT).raise_for_status()
    page.reload()
    attachments = page.get_by_role("region", name="Patient attachments")
    attachments.get_by_label("Patient id").fill(ATTACHED)
    attachments.get_by_role("button", name="Attach").click()
    expect(attachments.get_by_role("link", name="Monitored, Maria")).to_be_visible()
    expect(attachments).to_contain_text("attached now")
    # ... and the monitor's next readings, through the real pipeline, are that patient's.
    attachments.get_by_role("link", name="Monitored, Maria").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Monitored, Maria")
    expect(page.get_by_role("region", name="Devices")).to_contain_text("ICU monitor, bed 1")
    hr = page.locator('figure[data-panel="hr"]')
    expect(hr).not_to_have_attribute("data-points", "0", timeout=30_000)
    screenshot(page, "attached-patient-live")
    page.go_back()

    # A device that never sent anything, on a serial line: registered, then shown silent.
    page.goto(demo.app + "#/device-new")
    page.get_by_label("Device identifier (as the driver reports it)").fill("e2e-pump-9")
    page.get_by_label("Name", exact=True).fill("Infusion pump 9")
    page.get_by_label("Serial protocol").select_option("astm")
    page.get_by_label("Serial port").fill("/dev/ttyE2E9")
    page.get_by_label("Baud rate").fill("9600")
    page.get_by_label("Patient id system", exact=True).fill("urn:oid:1.2.3")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Device: Infusion pump 9")
    with demo.fhir() as fhir:
        pump = fhir.get(f"/Device/{device_resource_id('e2e-pump-9')}").json()
    connection = registration_from_device(pump).connection
    assert connection is not None
    assert (connection.protocol, connection.port, connection.line.baudrate) == (
        "astm",
        "/dev/ttyE2E9",
        9600,
    )
    assert connection.patient_id_system == "urn:oid:1.2.3"

    page.get_by_role("link", name="All devices").click()
    pump = page.locator(f'tr[data-device="{device_resource_id("e2e-pump-9")}"]')
    expect(pump).to_have_attribute("data-state", "no-readings")
    expect(pump).to_have_class("silent")
    expect(row).to_contain_text("ICU monitor, bed 1")
    expect(row).to_contain_text("Monitored, Maria")  # attached now
    expect(row).to_have_attribute("data-state", "ok")
    expect(row).not_to_have_class("silent")
    screenshot(page, "devices")
    watched.assert_clean()


def test_linkage_review_page(demo: Demo, page: Page, watched: Watched) -> None:
    auth = {"Authorization": f"Bearer {demo.token}"}
    mounted = httpx.get(f"{demo.base}/linkage/review", headers=auth).status_code != 404
    sign_in(page, demo)
    page.goto(demo.app + "#/review")
    expect(page.get_by_role("heading", level=1)).to_have_text("Linkage review")
    if mounted:
        expect(page.locator("section.view[data-loaded=true]")).to_have_count(1)
    else:
        expect(page.get_by_text("The linkage API (/linkage) is not mounted")).to_be_visible()
    screenshot(page, "linkage-review")
    watched.assert_clean()


def test_keyboard_reaches_sections_and_chart_controls(
    demo: Demo, page: Page, watched: Watched
) -> None:
    with demo.fhir() as fhir:
        golden = seed.seed(fhir)
    sign_in(page, demo)
    page.reload()  # a fresh load of the signed-in console: the skip link comes first
    expect(page.get_by_role("heading", name="Find a patient")).to_be_visible()
    page.locator("body").focus()
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Patients")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Devices")
    page.keyboard.press("Enter")
    # the view's heading takes the focus once the route has changed (the link itself,
    # focused and reading "Devices" too, must not pass for it meanwhile)
    expect(page.locator("h1:focus")).to_have_text("Devices")
    assert page.evaluate("document.activeElement.tagName") == "H1"

    page.goto(demo.app + f"#/patient/{golden}")
    expect(page.locator("section.vitals[data-loaded=true]")).to_have_count(1)
    zoom = page.get_by_role("button", name="Zoom in Heart rate")
    zoom.focus()
    page.keyboard.press("Enter")
    expect(page.locator('figure[data-panel="hr"] .zoom-label')).to_contain_text("zoomed")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_attribute("aria-label", "Reset zoom Heart rate")
    page.keyboard.press("Enter")
    expect(page.locator('figure[data-panel="hr"] .zoom-label')).to_have_text("")
    watched.assert_clean()


@pytest.mark.parametrize(
    ("fragment", "ready"),
    [
        ("#/patients?name=Quellw", "table.patients"),
        ("#/patient/{golden}", "section.vitals[data-loaded=true]"),
        ("#/devices", "section.view[data-loaded=true]"),
        (
            f"#/device/{device_resource_id(DEMO_DEVICE)}",
            "section.vitals[data-loaded=true]",
        ),
        ("#/device-new", "form.device-form"),
        ("#/review", "section.view h1"),
        ("#/sign-in", "form.signin"),
    ],
)
def test_accessibility_wcag_aa_with_axe(
    demo: Demo, browser: Browser, fragment: str, ready: str
) -> None:
    with demo.fhir() as fhir:
        fragment = fragment.format(golden=seed.seed(fhir))
    if fragment == "#/sign-in":  # signed out: the sign-in page itself
        violations = axe_violations(
            browser, demo.app + fragment, ready, demo.token, signed_in=False
        )
        assert violations == [], violations
        return
    violations = axe_violations(browser, demo.app + fragment, ready, demo.token)
    assert violations == [], violations


def test_sign_in_refuses_a_bad_token_and_ends_a_rejected_session(
    demo: Demo, page: Page, watched: Watched
) -> None:
    lend_token_to_shell(page, demo.token)
    page.goto(demo.app + "#/devices")
    # Not signed in: the sign-in page, which will return to the page asked for.
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the caregraph console")
    expect(page.get_by_role("link", name="Devices")).to_be_hidden()
    # the token form's own alert (the development sign-in form beside it has another)
    alert = page.get_by_role("form", name="Sign in").get_by_role("alert")
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(alert).to_contain_text("not an access token")
    forged = demo.token[: demo.token.rindex(".") + 1] + "AAAA"  # a bad signature
    page.get_by_label("Access token").fill(forged)
    page.get_by_role("button", name="Sign in").click()
    expect(alert).to_contain_text("does not accept this token")
    page.get_by_label("Access token").fill(demo.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Devices")
    screenshot(page, "signed-in")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the caregraph console")
    watched.assert_clean()


def test_pages_offer_only_what_the_token_allows(demo: Demo, page: Page, watched: Watched) -> None:
    # Patients and their vitals may be read; devices not at all.
    scope = "user/Patient.rs user/Observation.rs user/Encounter.rs user/ImagingStudy.rs"
    reader = mint_token(demo.data_dir, scope, subject="e2e-reader")
    with demo.fhir() as fhir:
        golden = seed.seed(fhir)
    sign_in(page, demo, reader)
    expect(page.get_by_role("link", name="Patients")).to_be_visible()
    expect(page.get_by_role("link", name="Devices")).to_be_hidden()
    page.goto(demo.app + "#/devices")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    page.goto(demo.app + f"#/patient/{golden}")
    expect(page.locator("section.vitals[data-loaded=true]")).to_have_count(1)
    expect(page.locator('figure[data-panel="hr"]')).not_to_have_attribute("data-points", "0")
    # The server refuses the Device search; the page says so instead of failing.
    expect(page.get_by_role("region", name="Devices")).to_contain_text("not allowed")
    screenshot(page, "reader-record")
    watched.assert_clean()
