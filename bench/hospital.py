"""A hospital against caregraph: ``caregraph simulate`` at 1,000 beds, on the embedded
defaults and, when given, on Kafka + PostgreSQL.

    python bench/hospital.py                                   # 1,000 beds, 120 s, embedded
    python bench/hospital.py --beds 200 --seconds 60 --split
    python bench/hospital.py --kafka 127.0.0.1:9092 --postgres postgresql://u@h/db
    python bench/hospital.py --beds 50 --seconds 600 --kafka tansu --postgres scratch \
        --skip-embedded     # a Tansu broker and a scratch database, as the tests start them

Each bed has a monitor reporting ten parameters at 1 Hz (1,000 beds: 10,000 Observations/s
offered) through its ward's PCD-01 gateway over MLLP, beside an HIS's ADT traffic and a CT
sending studies; see ``caregraph/simulate.py`` for how each figure is measured. The target
(issue 9): 10,000 Observations/s sustained with p99 frame-to-searchable <= 1 s, and flat
resident memory (<= 1 GB) after 10 minutes (``--seconds 600``). Memory is reported as RSS
and, beside it, RssAnon (the heap, what a leak grows) with its slope over the second half of
the window, and RssFile (code and the SQLite store's mmap, reclaimable file cache).

caregraph runs in child processes (one for all roles, or one per role group with
``--split``, the default on Kafka); the sources run in this process. Both share this
machine's cores: the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caregraph.settings import Settings
from caregraph.simulate import Plan, Report, simulate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    label: str, plan: Plan, *, split: bool, kafka: str | None = None, postgres: str | None = None
) -> Report:
    print(
        f"== {label}: {plan.beds} beds, {'one process per role group' if split else 'one process'}"
    )
    with tempfile.TemporaryDirectory(prefix="caregraph-hospital-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=postgres,
            kafka_bootstrap=kafka,
            kafka_partitions=4,
            http_port=free_port(),
            mllp_port=free_port(),
            dicom_port=free_port(),
        )
        return simulate(settings, plan, split=split)


@contextlib.contextmanager
def services(kafka: str | None, postgres: str | None) -> Iterator[tuple[str | None, str | None]]:
    """``--kafka tansu`` starts a Tansu broker and ``--postgres scratch`` creates an empty
    database on the local server, as the tests do (``tests/support/services.py``); both
    are gone afterwards. Other values are used as given."""
    with contextlib.ExitStack() as stack:
        if kafka == "tansu" or postgres == "scratch":
            from tests.support import services as test_services

            if kafka == "tansu":
                kafka = stack.enter_context(test_services.tansu_broker())
                print(f"Tansu broker at {kafka}")
            if postgres == "scratch":
                postgres = stack.enter_context(test_services.fresh_postgres_database())
                print(f"scratch database {postgres}")
        yield kafka, postgres


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0, help="measuring window")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--split", action="store_true", help="embedded: one process per role group")
    ap.add_argument("--kafka", help="bootstrap of a Kafka-compatible broker, or 'tansu'")
    ap.add_argument("--postgres", help="URL of an empty PostgreSQL database, or 'scratch'")
    ap.add_argument("--skip-embedded", action="store_true")
    args = ap.parse_args()
    plan = Plan(beds=args.beds, seconds=args.seconds, warmup_s=args.warmup)
    reports: list[tuple[str, Report]] = []
    if not args.skip_embedded:
        reports.append(
            ("embedded (SQLite + embedded bus)", run("embedded", plan, split=args.split))
        )
    if args.kafka or args.postgres:
        label = " + ".join(
            name for name, given in (("Kafka", args.kafka), ("PostgreSQL", args.postgres)) if given
        )
        with services(args.kafka, args.postgres) as (kafka, postgres):
            reports.append((label, run(label, plan, split=True, kafka=kafka, postgres=postgres)))
    print("\n== summary")
    for label, report in reports:
        print(f"-- {label}")
        for line in report.lines():
            print(line)


if __name__ == "__main__":
    main()
