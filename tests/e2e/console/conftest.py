"""A running ``caregraph demo`` and a headless Debian chromium driven by Playwright.

One demo serves every console test (starting it costs seconds); each test gets a fresh
browser context that records page errors and CSP refusals, which the test then asserts
are absent. Screenshots go to ``ci-artifacts/screenshots/`` (CI keeps that folder).

Tokens come from ``caregraph token`` against the demo's data dir (development mode), and
the tests sign in through the console's own sign-in page. The page and its assets hold no
data and belong among the authorization middleware's public paths
(``console.public_paths()``); until the api role lists them, ``lend_token_to_shell`` lends
the token to requests for ``/app/`` only, never to ``/fhir``, so the sign-in is still real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.serial.observation import device_resource_id
from tests.support.services import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "ci-artifacts" / "screenshots"
DEMO_DEVICE = "demo-icu-monitor-1"


FULL_SCOPE = "user/*.cruds"


def mint_token(data_dir: Path, scope: str = FULL_SCOPE, subject: str = "e2e-clinician") -> str:
    """``caregraph token`` for the demo in ``data_dir``: what a developer would run."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "caregraph.cli",
            "token",
            "--data-dir",
            str(data_dir),
            "--scope",
            scope,
            "--subject",
            subject,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


@dataclass
class Demo:
    base: str  # http://127.0.0.1:PORT
    data_dir: Path
    token: str = ""

    @property
    def app(self) -> str:
        return f"{self.base}/app/"

    def fhir(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=f"{self.base}/fhir", timeout=60, headers=headers)


@dataclass
class Watched:
    """What went wrong in the page while a test drove it."""

    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


def _count(client: httpx.Client, query: str) -> int:
    response = client.get(query, params={"_summary": "count"})
    return int(response.json().get("total", -1)) if response.status_code == 200 else -1


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("console-demo")
    ports = {name: free_port() for name in ("http", "mllp", "dicom")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    # The demo logs a lot; a pipe nobody drains would fill and stall it, so: a file.
    log_path = data_dir / "demo.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "caregraph.cli",
            "demo",
            "--data-dir",
            str(data_dir),
            "--http-port",
            str(ports["http"]),
            "--mllp-port",
            str(ports["mllp"]),
            "--dicom-port",
            str(ports["dicom"]),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    demo = Demo(f"http://127.0.0.1:{ports['http']}", data_dir)
    query = f"/Observation?device=Device/{device_resource_id(DEMO_DEVICE)}"
    try:
        deadline = time.monotonic() + 90
        seen = -1
        while time.monotonic() < deadline and proc.poll() is None and not demo.token:
            # The api role creates the signing key in the data dir as it starts.
            if (data_dir / "security" / "signing-key.pem").exists():
                demo.token = mint_token(data_dir)
            else:
                time.sleep(0.3)
        with demo.fhir() as client:
            while time.monotonic() < deadline and proc.poll() is None and seen < 1:
                try:
                    seen = _count(client, query)
                except httpx.TransportError:
                    seen = -1
                time.sleep(0.5)
        if seen < 1:
            tail = log_path.read_text("utf-8", errors="replace")[-3000:]
            pytest.fail(f"caregraph demo produced no serial readings in 90 s:\n{tail}")
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Module scope, not session: Playwright's sync API runs an event loop on this thread
    # while it is open, and tests elsewhere that call asyncio.run must not see it.
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (Debian's package)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: object, watched: Watched) -> Iterator[object]:
    """A page in a fresh context; page errors and CSP refusals are recorded in ``watched``."""
    from playwright.sync_api import Browser, ConsoleMessage

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))

    def on_console(message: ConsoleMessage) -> None:
        if "Refused to" in message.text or "Content Security Policy" in message.text:
            watched.errors.append(f"CSP: {message.text}")

    pg.on("console", on_console)
    try:
        yield pg
    finally:
        context.close()


def lend_token_to_shell(page: object, token: str) -> None:
    """Requests for the console's own files (``/app/...``) carry ``token``; nothing else."""
    from playwright.sync_api import Page, Route

    assert isinstance(page, Page)

    def add_token(route: Route) -> None:
        headers = {**route.request.headers, "authorization": f"Bearer {token}"}
        route.continue_(headers=headers)

    page.route("**/app/**", add_token)
    page.route("**/app", add_token)


def sign_in(page: object, demo: Demo, token: str | None = None) -> None:
    """Open the console and sign in through its sign-in page with ``token``."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    lend_token_to_shell(page, demo.token)
    page.goto(demo.app)
    expect(page.get_by_role("heading", name="Sign in to the caregraph console")).to_be_visible()
    page.get_by_label("Access token").fill(token or demo.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def screenshot(page: object, name: str) -> Path:
    """Save a full-page screenshot where CI collects them; returns the path."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(
    browser: object, url: str, ready: str, token: str | None = None, *, signed_in: bool = True
) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on ``url`` once ``ready`` is visible; with
    ``token``, the shell may load, and with ``signed_in`` the tab's session holds the token
    as the sign-in page leaves it."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    # axe is injected as a script; the console's CSP forbids that (rightly), so this one
    # context bypasses CSP. The other tests run with the CSP on.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        if token:
            lend_token_to_shell(page, token)
        if token and signed_in:
            page.add_init_script(
                f"sessionStorage.setItem('caregraph.console.token', {json.dumps(token)})"
            )
        page.goto(url)
        expect(page.locator(ready).first).to_be_visible(timeout=20_000)
        page.add_script_tag(content=AXE.read_text("utf-8"))
        result: dict[str, Any] = page.evaluate(
            """() => axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
                resultTypes: ["violations"],
            })"""
        )
        return [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n["target"] for n in v["nodes"]][:5],
            }
            for v in result["violations"]
        ]
    finally:
        context.close()
