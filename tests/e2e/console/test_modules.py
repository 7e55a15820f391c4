"""The console's pure JavaScript, run in the browser it ships to: scope checks, token
claims, chart decimation and ticks, Observation-to-reading mapping, the registry's
serial-connection extension. (No Node.js on the CI machine: chromium is the runtime.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.e2e.console.served import Served

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(tmp_path_factory.mktemp("modules")) as app:
        yield app


@pytest.fixture
def js(served: Served, page: Page) -> Any:
    """``js(module, body)``: run ``body`` (an async function of the module) in the page."""
    page.goto(served.app_url)

    def run(module: str, body: str, arg: Any = None) -> Any:
        return page.evaluate(
            f"async (arg) => {{ const m = await import('./static/js/{module}'); {body} }}", arg
        )

    return run


def test_scopes_grant_what_smart_says(js: Any) -> None:
    cases = [
        ("user/*.cruds", "Device", "cruds"),
        ("user/Patient.rs", "Device", ""),
        ("user/Patient.rs patient/Observation.read", "Observation", "rs"),
        ("user/*.write", "Device", "cud"),
        ("system/*.*", "Patient", "cruds"),
        ("openid fhirUser launch/patient", "Patient", ""),
        ("user/Observation.rs?category=vital-signs", "Observation", ""),  # granular: none
    ]
    for scope, kind, want in cases:
        got = js(
            "session.js",
            "return [...m.permissionsFor(arg[0], arg[1])].sort().join('')",
            [scope, kind],
        )
        assert got == "".join(sorted(want)), (scope, kind, got)


def test_token_claims_and_problems(js: Any) -> None:
    payload = "eyJzdWIiOiJkciIsImV4cCI6MX0"  # {"sub":"dr","exp":1}
    assert js("session.js", "return m.claimsOf(arg)", f"h.{payload}.s") == {"sub": "dr", "exp": 1}
    assert js("session.js", "return m.claimsOf(arg)", "not-a-jwt") is None
    assert "expired" in js("session.js", "return m.problemWith(arg)", f"h.{payload}.s")
    assert "not an access token" in js("session.js", "return m.problemWith(arg)", "x.y")


def test_decimation_keeps_extremes_and_bounds_the_point_count(js: Any) -> None:
    out = js(
        "chart.js",
        """const pts = [];
        for (let i = 0; i < 100000; i++) {
          pts.push([i, Math.sin(i / 500) * 10 + (i === 4242 ? 99 : 0)]);
        }
        const d = m.decimate(pts, 0, 99999, 200);
        const values = d.map((p) => p[1]);
        return {n: d.length, max: Math.max(...values), min: Math.min(...values),
                sorted: d.every((p, i) => i === 0 || d[i - 1][0] <= p[0])};""",
    )
    assert out["n"] <= 400 and out["sorted"]
    assert out["max"] > 99 and out["min"] <= -9.99


def test_time_ticks_fall_on_round_steps(js: Any) -> None:
    ticks = js("chart.js", "return m.timeTicks(arg[0], arg[1], 6)", [0, 3_600_000])
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert len(ticks) >= 4 and steps <= {600_000, 900_000}


def test_reading_maps_charted_codes_only(js: Any) -> None:
    out = js(
        "vitals.js",
        """const panels = [{key: "hr", series: [{key: "hr", codes: ["http://loinc.org|8867-4"]}]}];
        const index = m.codeIndex(panels);
        const obs = (code, value) => ({
          id: "o1",
          code: {coding: [{system: "http://loinc.org", code}]},
          effectiveDateTime: "2026-01-01T00:00:00Z",
          valueQuantity: value === null ? undefined : {value},
        });
        return [m.reading(obs("8867-4", 72), index), m.reading(obs("9999-9", 72), index),
                m.reading(obs("8867-4", null), index)];""",
    )
    assert out[0]["panel"] == "hr" and out[0]["v"] == 72 and out[0]["t"] == 1767225600000
    assert out[1] is None and out[2] is None


def test_connection_extension_keeps_line_settings_and_options(js: Any) -> None:
    previous = {
        "url": "urn:caregraph:fhir:extension:serial-connection",
        "extension": [
            {"url": "protocol", "valueCode": "datex"},
            {"url": "port", "valueString": "/dev/ttyS0"},
            {"url": "parity", "valueCode": "E"},
            {"url": "option", "extension": [{"url": "name", "valueString": "poll_interval_s"}]},
        ],
    }
    ext = js(
        "devices.js", "return m.connectionExtension(arg, 'medibus', '/dev/ttyS1', 9600)", previous
    )
    by_url = [
        (x["url"], x.get("valueCode") or x.get("valueString") or x.get("valueInteger"))
        for x in ext["extension"]
    ]
    assert by_url[:3] == [("protocol", "medibus"), ("port", "/dev/ttyS1"), ("baudrate", 9600)]
    assert ("parity", "E") in by_url and any(u == "option" for u, _ in by_url)
    assert js("devices.js", "return m.connectionExtension(null, 'astm', '', null)") is None


def test_connection_extension_sets_keeps_and_clears_the_patient_id_system(js: Any) -> None:
    previous = {
        "url": "urn:caregraph:fhir:extension:serial-connection",
        "extension": [
            {"url": "protocol", "valueCode": "astm"},
            {"url": "port", "valueString": "/dev/ttyS0"},
            {"url": "patient-id-system", "valueUri": "urn:oid:1.2.3"},
        ],
    }

    def systems(call: str) -> list[str]:
        ext = js("devices.js", f"return m.connectionExtension(arg, {call})", previous)
        return [x["valueUri"] for x in ext["extension"] if x["url"] == "patient-id-system"]

    assert systems("'astm', '/dev/ttyS0', null") == ["urn:oid:1.2.3"]  # not given: kept
    assert systems("'astm', '/dev/ttyS0', null, 'urn:oid:9'") == ["urn:oid:9"]
    assert systems("'astm', '/dev/ttyS0', null, ''") == []


def test_state_of_a_device(js: Any) -> None:
    states = js(
        "devices.js",
        "return [m.deviceState(null, 100000, 30000), m.deviceState(90000, 100000, 30000),"
        " m.deviceState(50000, 100000, 30000)]",
    )
    assert states == ["no-readings", "ok", "silent"]


def test_hex_rows_of_a_frame(js: Any) -> None:
    rows = js(
        "trail.js", "return [m.hexRows(arg, 4), m.hexRows(''), m.hexRows(arg)]", "01 24 37 44 0d"
    )
    assert rows == [["01 24 37 44", "0d"], [], ["01 24 37 44 0d"]]


def test_vendor_dir_is_not_served(served: Served) -> None:
    # axe-core is test data only: the console never ships it (401 without a token: an
    # unknown path is not public; 404 with one).
    assert Path(__file__).with_name("vendor").joinpath("axe.min.js").exists()
    url = served.app_url + "static/axe.min.js"
    assert httpx.get(url).status_code == 401
    auth = {"Authorization": f"Bearer {served.token}"}
    assert httpx.get(url, headers=auth).status_code == 404
