"""Care-graph benchmark: a synthetic hospital, and the p95 of each graph query.

    python bench/graph.py                          # 10,000 patients ... 1,000,000 observations
    python bench/graph.py --observations 200000    # smaller, quicker
    python bench/graph.py --database postgresql://postgres@127.0.0.1:5432/bench  (empty db)

The hospital: N patients (linked by the MPI; one in ten also registered by a partner
institution), 2,000 staff with PractitionerRoles, 5,000 devices (one in five placed on a
patient by a DeviceUseStatement), 200 locations in 10 organizations, three encounters per
patient over one year (a location, two practitioners, one or two devices at the bed), and
the observations, each made during an encounter by one of its bedside devices, with one of
its practitioners as performer (as bedside data arrives: from the devices at the bed).
Every resource goes through ``Graph.put_resources`` in batches, as from the bus. Then each
query runs ``--queries`` times on random subjects and windows; p50 / p95 / p99 in ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script from a clone: the repository root goes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_store.database import open_database
from linkage.batch import link_batch
from linkage.graph.store import Graph, MpiIdentity
from linkage.mpi import Mpi
from linkage.sql import SqlRepository

YEAR = datetime(2025, 1, 1, tzinfo=UTC)
GIVEN = ["anna", "marc", "lea", "noah", "mia", "luca", "emma", "elias", "lina", "ben", "sara"]
FAMILY = ["meier", "keller", "weber", "huber", "schmid", "brunner", "baumann", "frei", "moser"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def r(kind: str, ident: str) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


class Hospital:
    def __init__(self, patients: int, staff: int, devices: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n_patients, self.n_staff, self.n_devices = patients, staff, devices
        self.encounters: list[tuple[int, datetime, datetime, list[str], list[str]]] = []

    def patients(self) -> list[dict[str, Any]]:
        rng, out = self.rng, []
        for k in range(self.n_patients):
            dob = f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            name = {"family": rng.choice(FAMILY) + str(k), "given": [rng.choice(GIVEN)]}
            out.append(
                {
                    "resourceType": "Patient",
                    "id": f"p{k}",
                    "identifier": [{"system": "urn:hospital:mrn", "value": f"M{k}"}],
                    "name": [name],
                    "birthDate": dob,
                    "managingOrganization": r("Organization", f"org{k % 10}"),
                }
            )
            if k % 10 == 0:  # the partner's record of the same person
                out.append({**out[-1], "id": f"partner-p{k}", "identifier": []})
        return out

    def structure(self) -> Iterator[dict[str, Any]]:
        for k in range(200):
            yield {
                "resourceType": "Location",
                "id": f"l{k}",
                "managingOrganization": r("Organization", f"org{k % 10}"),
            }
        for k in range(self.n_staff):
            yield {
                "resourceType": "PractitionerRole",
                "id": f"role{k}",
                "practitioner": r("Practitioner", f"dr{k}"),
                "organization": r("Organization", f"org{k % 10}"),
                "location": [r("Location", f"l{k % 200}")],
            }
        for k in range(self.n_devices):
            yield {
                "resourceType": "Device",
                "id": f"d{k}",
                "owner": r("Organization", f"org{k % 10}"),
            }

    def visits(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        for p in range(self.n_patients):
            for e in range(3):
                start = YEAR + timedelta(minutes=rng.randrange(365 * 24 * 60))
                end = start + timedelta(hours=rng.randint(2, 240))
                eid = f"e{p}-{e}"
                staff = [f"dr{rng.randrange(self.n_staff)}" for _ in range(2)]
                # The devices at the bed during this stay (a monitor, sometimes a pump).
                beds = [f"d{rng.randrange(self.n_devices)}" for _ in range(rng.randint(1, 2))]
                self.encounters.append((p, start, end, staff, beds))
                yield {
                    "resourceType": "Encounter",
                    "id": eid,
                    "subject": r("Patient", f"p{p}"),
                    "period": {"start": iso(start), "end": iso(end)},
                    "location": [{"location": r("Location", f"l{rng.randrange(200)}")}],
                    "participant": [{"individual": r("Practitioner", who)} for who in staff],
                    "serviceProvider": r("Organization", f"org{p % 10}"),
                }
                if rng.random() < 0.2:
                    yield {
                        "resourceType": "DeviceUseStatement",
                        "id": f"use-{eid}",
                        "subject": r("Patient", f"p{p}"),
                        "device": r("Device", beds[0]),
                        "timingPeriod": {"start": iso(start), "end": iso(end)},
                    }

    def observations(self, n: int) -> Iterator[dict[str, Any]]:
        rng = self.rng
        for k in range(n):
            p, start, end, staff, beds = rng.choice(self.encounters)
            at = start + (end - start) * rng.random()
            yield {
                "resourceType": "Observation",
                "id": f"o{k}",
                "subject": r("Patient", f"p{p}"),
                "device": r("Device", rng.choice(beds)),
                "performer": [r("Practitioner", rng.choice(staff))],
                "effectiveDateTime": iso(at),
            }


def load(graph: Graph, resources: Iterator[dict[str, Any]], batch: int = 5000) -> int:
    chunk: list[dict[str, Any]] = []
    count = 0
    for resource in resources:
        chunk.append(resource)
        if len(chunk) == batch:
            count += graph.put_resources(chunk)
            chunk = []
    return count + graph.put_resources(chunk)


def size(answer: object) -> int:
    """How much a query answered: relations, path edges, or nodes reached."""
    if answer is None:
        return 0
    if isinstance(answer, list):
        return len(answer)
    if isinstance(answer, dict):
        return sum(len(v) for v in answer.values() if isinstance(v, list))
    return len(getattr(answer, "nodes", ()))


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:6.2f}  p95 {q[94]:6.2f}  p99 {q[98]:6.2f} ms"


def window(rng: random.Random) -> tuple[str, str]:
    start = YEAR + timedelta(days=rng.randrange(358))
    fmt = "%Y-%m-%dT%H:%M:%S.%f"
    return start.strftime(fmt), (start + timedelta(days=7)).strftime(fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--staff", type=int, default=2_000)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database", help="an empty database URL; default: a fresh SQLite file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(args.database or f"sqlite:///{Path(tmp) / 'graph.db'}")
        mpi = Mpi(SqlRepository.open(db))
        graph = Graph.open(db, MpiIdentity(mpi))
        h = Hospital(args.patients, args.staff, args.devices, seed=11)
        t = time.perf_counter()
        patients = h.patients()
        link_batch(mpi, patients)
        load(graph, iter(patients))
        print(f"MPI + graph: {len(patients)} Patients in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        edges = load(graph, h.structure()) + load(graph, h.visits())
        print(f"structure and encounters: {edges} edges in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        edges = load(graph, h.observations(args.observations))
        took = time.perf_counter() - t
        print(
            f"{args.observations} Observations: {edges} edges in {took:.1f} s "
            f"({args.observations / took:.0f}/s)"
        )
        rng = random.Random(5)

        def patient() -> str:
            return mpi.golden_of(f"p{rng.randrange(args.patients)}").golden_id

        queries: dict[str, Callable[[], object]] = {
            "linked record of a patient": lambda: graph.linked_record(patient()),
            "devices of a patient, 1 week": lambda: graph.devices_of_patient(
                patient(), *window(rng)
            ),
            "devices of a patient, all time": lambda: graph.devices_of_patient(patient()),
            "patients of a device, 1 week (recall)": lambda: graph.patients_of_device(
                f"d{rng.randrange(args.devices)}", *window(rng)
            ),
            "patients of a device, all time": lambda: graph.patients_of_device(
                f"d{rng.randrange(args.devices)}"
            ),
            "staff of a patient": lambda: graph.staff_of_patient(patient()),
            "patients of a practitioner, 1 week": lambda: graph.patients_of_practitioner(
                f"dr{rng.randrange(args.staff)}", *window(rng)
            ),
            "everything at a location at t": lambda: graph.at_location(
                f"l{rng.randrange(200)}", window(rng)[0]
            ),
            "shortest path patient -> device": lambda: graph.shortest_path(
                f"Patient/p{rng.randrange(args.patients)}",
                f"Device/d{rng.randrange(args.devices)}",
                max_depth=4,
            ),
            "traverse 2 hops from a device, 1 week": lambda: graph.traverse(
                f"Device/d{rng.randrange(args.devices)}", None, *window(rng), depth=2
            ),
        }
        print(f"\n{'query':40} latency over {args.queries} random calls    mean answer size")
        for name, query in queries.items():
            samples, sizes = [], []
            for _ in range(args.queries):
                t = time.perf_counter()
                answer = query()
                samples.append(time.perf_counter() - t)
                sizes.append(size(answer))
            print(f"{name:40} {percentiles(samples)}   {statistics.mean(sizes):8.1f}")
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
