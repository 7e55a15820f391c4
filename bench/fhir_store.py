"""Benchmark of the FHIR store, on SQLite and PostgreSQL; prints figures, asserts nothing.

    python bench/fhir_store.py                      # both engines, 1,000,000 Observations
    python bench/fhir_store.py --observations 100000 --engines sqlite

Per engine, in one run:
1. ingest: transaction Bundles of 1,000 Observations POSTed to the REST API served by
   uvicorn in a separate process (resources/s), after one untimed Bundle that warms the
   server up; and the CPU the API process spent per resource, which other load on the
   machine hardly changes (PostgreSQL's own CPU is not in it);
2. baseline: a raw multi-row INSERT of the same JSON into a bare table of the same database,
   1,000 rows per transaction (rows/s), and the ratio ingest/raw;
3. the store is filled to ``--observations`` over 1,000 patients through ``upsert_many``
   (the store-writer's bulk path, in this process; resources/s and CPU per resource, the
   building of the test resources not counted);
4. read latency p50/p95 of ``GET /fhir/Observation/<id>``;
5. search latency p50/p95 of
   ``Observation?patient=X&code=http://loinc.org|8867-4&date=ge<T>&_sort=-date&_count=50``;
6. ingest as in 1, now into the full store.

PostgreSQL: a scratch database is created on ``--postgres-admin`` and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_store.database import open_database  # noqa: E402
from fhir_store.store import FhirStore  # noqa: E402

CODES = [
    ("8867-4", "Heart rate", "/min"),
    ("8310-5", "Body temperature", "Cel"),
    ("9279-1", "Respiratory rate", "/min"),
    ("59408-5", "SpO2", "%"),
    ("8480-6", "Systolic BP", "mm[Hg]"),
]
PATIENTS = 1000
BASE_TIME = 1_700_000_000


def observation(n: int) -> dict[str, Any]:
    """The n-th Observation: patient n % 1000, code n % 5, one minute apart."""
    code, display, unit = CODES[n % len(CODES)]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_TIME + n * 60))
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/pat-{n % PATIENTS}"},
        "device": {"reference": f"Device/dev-{n % 50}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": 60 + n % 40,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(latencies_ms: list[float]) -> str:
    return (
        f"p50 {percentile(latencies_ms, 0.5):6.2f} ms  p95 {percentile(latencies_ms, 0.95):6.2f} ms"
    )


@contextmanager
def scratch_database(engine: str, admin: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite3"
        return
    name = f"caregraph_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu(url: str) -> float:
    """CPU time the PostgreSQL backends serving ``url``'s database have used so far (the
    server's share of an ingest, which the API process's CPU leaves out); 0 for SQLite.
    Backends are pooled, so the ones an ingest uses exist before and after it."""
    if not url.startswith("postgresql"):
        return 0.0
    with psycopg.connect(url) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    total = 0.0
    for (pid,) in pids:
        with suppress(FileNotFoundError):  # a backend that ended meanwhile
            total += cpu_seconds(pid)
    return total


@contextmanager
def api_server(url: str) -> Iterator[tuple[str, int]]:
    """uvicorn in its own process (the client and server do not share a GIL)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "serve", url, str(port)])
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def serve(url: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    from caregraph.runtime import settle_memory
    from fhir_store.api import build_router

    app = FastAPI()
    app.include_router(build_router(FhirStore(open_database(url)), lambda: None))
    settle_memory()  # as caregraph up does once its services are built
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def bundle_body(first: int, size: int = 1000) -> bytes:
    """A transaction Bundle PUTting Observations ``first`` .. ``first + size - 1``."""
    entries = []
    for n in range(first, first + size):
        obs = observation(n)
        entries.append(
            {"resource": obs, "request": {"method": "PUT", "url": f"Observation/{obs['id']}"}}
        )
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def post_bundles(client: httpx.Client, base: str, bodies: list[bytes]) -> None:
    for body in bodies:
        r = client.post(base, content=body, headers={"Content-Type": "application/fhir+json"})
        r.raise_for_status()


def timed_ingest(
    client: httpx.Client, base: str, pid: int, url: str, bodies: list[bytes]
) -> tuple[float, float, float]:
    """Resources/s, and the API process's and PostgreSQL's CPU per resource (us)."""
    count = len(bodies) * 1000
    cpu, db_cpu = cpu_seconds(pid), database_cpu(url)
    start = time.perf_counter()
    post_bundles(client, base, bodies)
    rate = count / (time.perf_counter() - start)
    return (
        rate,
        (cpu_seconds(pid) - cpu) / count * 1e6,
        (database_cpu(url) - db_cpu) / count * 1e6,
    )


def ingest_line(engine: str, label: str, rate: float, server_us: float, db_us: float) -> str:
    backends = f", PostgreSQL backends {db_us:.0f} us/resource" if engine != "sqlite" else ""
    return (
        f"{engine:10} {label:<47} {rate:9,.0f} resources/s"
        f"   (API process CPU {server_us:.0f} us/resource{backends})"
    )


def bench_engine(engine: str, total: int, bundles: int, admin: str) -> None:
    with scratch_database(engine, admin) as url:
        db = open_database(url)
        store = FhirStore(db)
        # 1. ingest through the REST API, into the empty store
        with api_server(url) as (base, pid), httpx.Client(timeout=120) as client:
            # one Bundle first, outside the timing: the server's first request imports and
            # builds the validators, which is start-up, not ingest
            post_bundles(client, base, [bundle_body(total + 2 * bundles * 1000, 1)])
            ingest, server_us, db_us = timed_ingest(
                client, base, pid, url, [bundle_body(total + b * 1000) for b in range(bundles)]
            )
            # 2. raw baseline: the same JSON, multi-row INSERT, 1,000 per transaction
            with db.transaction() as tx:
                tx.execute("CREATE TABLE bench_raw (id TEXT PRIMARY KEY, content TEXT NOT NULL)")
            rows = [
                (f"raw-{n}", json.dumps(observation(n), separators=(",", ":")))
                for n in range(bundles * 1000)
            ]
            start = time.perf_counter()
            for i in range(0, len(rows), 1000):
                with db.transaction() as tx:
                    tx.insert_rows("bench_raw", ("id", "content"), rows[i : i + 1000])
            raw = len(rows) / (time.perf_counter() - start)
            print(
                ingest_line(
                    engine,
                    "ingest (transaction Bundles of 1,000 via REST):",
                    ingest,
                    server_us,
                    db_us,
                )
            )
            print(
                f"{engine:10} raw multi-row INSERT baseline:                {raw:9,.0f} rows/s"
                f"   ratio {ingest / raw:.2f}"
            )
            # 3. fill to `total` through the bulk path
            elapsed = cpu = 0.0
            for i in range(0, total, 5000):
                batch = [observation(n) for n in range(i, min(total, i + 5000))]
                start, started = time.perf_counter(), time.process_time()
                store.upsert_many(batch)
                elapsed += time.perf_counter() - start
                cpu += time.process_time() - started
            print(
                f"{engine:10} bulk fill (upsert_many, 5,000/batch):  {total / elapsed:9,.0f}"
                f" resources/s   (CPU {cpu / total * 1e6:.0f} us/resource;"
                f" {total:,} Observations, {PATIENTS} patients)"
            )
            # What autovacuum would have done after a bulk load: statistics, and on
            # PostgreSQL the visibility map that index-only scans rely on.
            if engine == "postgresql":
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            else:
                with db.transaction() as tx:
                    tx.execute("ANALYZE")
            rng = random.Random(7)
            # 4. reads
            lat = []
            for _ in range(500):
                n = rng.randrange(total)
                t = time.perf_counter()
                client.get(f"{base}/Observation/obs-{n}").raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
            print(f"{engine:10} read   {spread(lat)}")
            # 5. searches
            lat = []
            since = time.strftime("%Y-%m-%d", time.gmtime(BASE_TIME + total * 60 // 2))
            hits = 0
            for _ in range(200):
                params = {
                    "patient": f"Patient/pat-{rng.randrange(PATIENTS)}",
                    "code": "http://loinc.org|8867-4",
                    "date": f"ge{since}",
                    "_sort": "-date",
                    "_count": "50",
                }
                t = time.perf_counter()
                r = client.get(f"{base}/Observation", params=params)
                lat.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                hits += len(r.json().get("entry", []))
            print(
                f"{engine:10} search {spread(lat)}"
                f"  (mean {statistics.mean(lat):.2f} ms, {hits / 200:.0f} hits/page)"
            )
            # 6. ingest again, now into the full store (deeper B-trees, colder pages)
            full, server_us, db_us = timed_ingest(
                client,
                base,
                pid,
                url,
                [bundle_body(total + (bundles + b) * 1000) for b in range(bundles)],
            )
            print(ingest_line(engine, "ingest into the full store:", full, server_us, db_us))
        db.close()


def main() -> None:
    # A terminated run still stops its server and drops its scratch database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--bundles", type=int, default=20, help="ingest bundles of 1,000")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    # Figures from a busy machine are not comparable with a quiet one's: say which it was.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for engine in args.engines.split(","):
        bench_engine(engine, args.observations, args.bundles, args.postgres_admin)


if __name__ == "__main__":
    main()
