"""Console benchmark: the first view of the linked record of a patient with 100,000
observations, in real headless chromium (Debian's ``/usr/bin/chromium``, Playwright).

    python bench/console.py                          # 100,002 observations, 5 runs
    python bench/console.py --observations 20000 --runs 3
    python bench/console.py --database postgresql://postgres@127.0.0.1:5432/bench  (empty db)

The caregraph app (FHIR, linkage and console routers behind the authorization middleware,
as ``caregraph up`` serves them) runs in this process on uvicorn over a fresh database; the
Observations go in through ``FhirStore.upsert_many``, as the store writer stores what the
bus delivers. Each run opens the record in a fresh tab (a cold page load: the shell, its
modules, then the data) and reads the browser's own clocks, all from navigation start:

- first contentful paint (``paint`` timing);
- identities shown (``caregraph:identities`` mark);
- chart's first points drawn (``caregraph:vitals-first-points``: the first page of
  readings, the newest of every vital sign, rendered into the charts' SVG);
- first view = the later of the two above (what the issue's "under 1 s" is about);
- the whole hour loaded (every page of the default one-hour window);
- the API, broken out from the resource timings of that first Observation page: time
  waiting for the server (request sent to first byte) and download.

Then the same first-page query is timed from Python against the server alone (``httpx``,
no browser) for the server-side share. Medians over ``--runs``; every run is printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script from a clone: the repository root goes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from caregraph import security_wiring
from caregraph.app import create_app
from caregraph.auth import authorize
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from console import build_console_router, public_paths
from fhir_store.api import build_router as fhir_router
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.api import build_router as linkage_router
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from security.middleware import DEFAULT_PUBLIC, AuthorizationMiddleware

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PATIENT = "bench-patient-1"
GOAL_S = 1.0
# (LOINC, MDC, unit, mean, amplitude): the six vital signs the console charts.
VITALS = (
    ("8867-4", 147842, "/min", 82.0, 9.0),
    ("59408-5", 150456, "%", 96.0, 2.0),
    ("8480-6", 150021, "mm[Hg]", 124.0, 8.0),
    ("8462-4", 150022, "mm[Hg]", 79.0, 5.0),
    ("9279-1", 151562, "/min", 17.0, 3.0),
    ("8310-5", 150364, "Cel", 37.1, 0.3),
)
# What vitals.js asks for first (keep in step with console/static/js/vitals.js).
ELEMENTS = "code,effectiveDateTime,effectiveInstant,effectivePeriod,issued,valueQuantity,device"
FIRST_PAGE = 250


def observations(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    """``count`` readings, the six vital signs every 5 s back from ``now``."""
    for i in range(math.ceil(count / len(VITALS))):
        when = (now - timedelta(seconds=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for loinc, mdc, unit, mean, amp in VITALS:
            yield {
                "resourceType": "Observation",
                "id": f"bench-{mdc}-{i}",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": loinc},
                        {"system": "urn:iso:std:iso:11073:10101", "code": str(mdc)},
                    ]
                },
                "subject": {"reference": f"Patient/{PATIENT}"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": round(mean + amp * math.sin(i / 40), 1), "unit": unit},
            }


def seed(store: FhirStore, count: int) -> float:
    start = time.perf_counter()
    store.update(
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
    for obs in observations(count, datetime.now(UTC)):
        batch.append(obs)
        if len(batch) == 5000:
            store.upsert_many(batch)
            batch = []
    store.upsert_many(batch)
    return time.perf_counter() - start


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class App:
    """The caregraph app on uvicorn in this process."""

    def __init__(self, data_dir: Path, database: str) -> None:
        settings = Settings(data_dir=data_dir)
        self.db = open_database(database)
        self.store = FhirStore(self.db)
        mpi = Mpi(SqlRepository.open(self.db))
        app = create_app(
            readiness={},
            routers=[
                linkage_router(mpi, authorize),
                fhir_router(self.store, authorize),
                build_console_router(),
            ],
        )
        guard = security_wiring.build_guard(settings, self.store, mpi)
        app.add_middleware(
            AuthorizationMiddleware, guard=guard, public_paths=DEFAULT_PUBLIC | public_paths()
        )
        self.token = mint_development_token(settings, "user/*.cruds", subject="bench")
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> App:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise SystemExit("uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.db.close()


# Read in the page once the window is loaded: the marks, paint and resource timings.
TIMINGS_JS = """() => {
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  const fcp = performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null;
  const obs = performance.getEntriesByType("resource")
    .filter((r) => r.name.includes("/fhir/Observation?"));
  const first = obs[0];
  const api = first ? {
    start: first.startTime, wait: first.responseStart - first.requestStart,
    download: first.responseEnd - first.responseStart, end: first.responseEnd,
    bytes: first.encodedBodySize,
  } : null;
  const fhir = performance.getEntriesByType("resource").filter((r) => r.name.includes("/fhir/"));
  return {
    fcp, identities: mark("caregraph:identities"),
    points: mark("caregraph:vitals-first-points"),
    loaded: mark("caregraph:vitals-window-loaded"),
    api, pages: obs.length,
  };
}"""


def browser_runs(app: App, runs: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    url = f"{app.base}/app/#/patient/{PATIENT}"
    out: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            # Signed in as the sign-in page leaves it: the token in this tab's session.
            context.add_init_script(
                f"sessionStorage.setItem('caregraph.console.token', {app.token!r})"
            )
            for i in range(runs + 1):  # one warm-up: chromium's own start-up is not the page's
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("section.vitals[data-loaded=true]", timeout=120_000)
                page.wait_for_selector("section[aria-label=Identities] tbody tr", timeout=60_000)
                timing = page.evaluate(TIMINGS_JS)
                page.close()
                if i:
                    out.append(timing)
        finally:
            chromium.close()
    return out


def api_runs(app: App, runs: int) -> list[float]:
    """The first Observation page the charts ask for, timed from Python (server alone)."""
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    codes = ",".join(f"http://loinc.org|{loinc}" for loinc, *_ in VITALS)
    params = {
        "subject": f"Patient/{PATIENT}",
        "code": codes,
        "date": f"ge{since}",
        "_sort": "-date",
        "_count": str(FIRST_PAGE),
        "_elements": ELEMENTS,
        "_total": "none",
    }
    times = []
    headers = {"Authorization": f"Bearer {app.token}", "Accept": "application/fhir+json"}
    with httpx.Client(base_url=f"{app.base}/fhir", headers=headers, timeout=60) as client:
        for i in range(runs + 1):
            start = time.perf_counter()
            response = client.get("/Observation", params=params)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if i:
                times.append(elapsed)
            if i == 0 and len(response.json().get("entry", [])) < min(FIRST_PAGE, 100):
                raise SystemExit("the first page holds too few readings: codes out of step?")
    return times


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=100_002)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", help="an empty database URL (default: SQLite in a tmp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="caregraph-bench-console-") as tmp:
        database = args.database or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        with App(Path(tmp), database) as app:
            took = seed(app.store, args.observations)
            print(
                f"seeded {args.observations:,} observations of one patient in {took:.1f} s"
                f" ({database.split(':')[0]})"
            )
            server = api_runs(app, args.runs)
            runs = browser_runs(app, args.runs)

    print(f"\nper run, ms from navigation start (chromium headless, {args.runs} runs):")
    print("  run   FCP  identities  first-points  first-view  hour-loaded  api-wait  api-dl")
    views = []
    for n, r in enumerate(runs, 1):
        view = max(r["identities"] or 0, r["points"] or 0)
        views.append(view)
        api = r["api"] or {}
        print(
            f"  {n:>3} {ms(r['fcp']):>5} {ms(r['identities']):>11} {ms(r['points']):>13}"
            f" {ms(view):>11} {ms(r['loaded']):>12} {ms(api.get('wait')):>9}"
            f" {ms(api.get('download')):>7}"
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs if r[key] is not None)

    api_wait = statistics.median(r["api"]["wait"] for r in runs if r["api"])
    api_start = statistics.median(r["api"]["start"] for r in runs if r["api"])
    first_view_s = statistics.median(views) / 1000
    print(
        f"\nmedian: first view {first_view_s:.3f} s (goal < {GOAL_S:.0f} s:"
        f" {'met' if first_view_s < GOAL_S else 'NOT met'});"
        f" first contentful paint {med('fcp'):.0f} ms;"
        f" chart's first points {med('points'):.0f} ms; identities {med('identities'):.0f} ms;"
        f" whole hour {med('loaded'):.0f} ms"
    )
    print(
        f"API: first Observation page asked at {api_start:.0f} ms, server wait {api_wait:.0f} ms"
        f" in the browser; {statistics.median(server) * 1000:.0f} ms from Python alone"
        f" (median of {len(server)}; {FIRST_PAGE} readings,"
        f" {runs[0]['api']['bytes'] / 1024:.0f} KiB);"
        f" {statistics.median(r['pages'] for r in runs):.0f} pages for the hour"
    )


if __name__ == "__main__":
    main()
