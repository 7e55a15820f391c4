"""HL7 v2 over MLLP into caregraph on the embedded defaults: messages/s, Observations/s,
ACK latency, and time until every Observation is searchable in the store.

    python bench/hl7.py                       # 2,000 ORU^R01 (10 OBX each), 8 connections
    python bench/hl7.py --messages 5000 --connections 16 --no-fsync --no-store

Phases, each printed:
1. parse+map on one core: ``adapters.hl7v2.normalize`` per message (and hl7apy's parse of
   the same message, the reference, for scale), and the listener's own work per frame
   (header, verdict, ACK) with either intake setting, without sockets or bus;
2. MLLP ingest: C client threads, each a monitor (its own EUI-64, readings one second
   apart), sending its share one message at a time and waiting
   for the ACK (as MLLP senders do) into ``MllpListener`` over ``EmbeddedBus`` (durable:
   AA only after the raw message is committed, fsync'd unless ``--no-fsync``), with its
   ACK cache in a file as the mllp role has it;
3. end to end (unless ``--no-store``): the normalizer (raw.hl7v2 -> fhir.*) and the store
   writer (fhir.* -> SQLite) run during the ingest, each in its own process as the roles
   of a deployment would; the clock stops when a search counts every Observation. Then
   each process's CPU per message (its work, not its start-up), and their sum against the
   machine's cores: the most messages per second the pipeline could take at that cost,
   however well its processes overlapped (the senders' own CPU not counted);
4. the normalizer stage alone: the same messages already on ``raw.hl7v2`` (a bus of its
   own), one normalizer process consuming them until every one is handled, i.e. its
   ``fhir.*`` records are published (durable, fsync'd unless ``--no-fsync``).

The senders run in a process of their own; all on loopback, on one machine: figures are a
floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.hl7v2 import normalize
from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.header import peek_header
from adapters.hl7v2.intake import judge
from adapters.hl7v2.normalizer import Hl7v2Normalizer
from bus.base import Record
from bus.embedded import EmbeddedBus
from bus.headers import make_headers
from bus.topics import RAW_HL7V2, fhir_topic
from bus.worker import WorkerStats, run_consumer
from caregraph.runtime import settle_memory
from devices.mllp.client import MllpClient
from devices.mllp.dedup import AckCache
from devices.mllp.listener import CONTENT_TYPE_HL7V2, MllpListener
from tests.unit.hl7v2.corpus import pcd01

STORE_TYPES = (
    "Observation",
    "Patient",
    "Encounter",
    "Location",
    "Organization",
    "Device",
    "DeviceMetric",
    "Provenance",
)


FLEET = 1000  # monitors in [1]'s second figure, as bench/hospital.py's beds


def observed(i: int) -> str:
    """OBX-14 of a monitor's i-th message: one reading a second, as a monitor sends them
    (the Observation ids start with it, so the store's id indexes grow at their end as
    they do with a real feed; one time for every message would scatter them)."""
    when = datetime(2024, 3, 5, 8, 30, tzinfo=UTC) + timedelta(seconds=i)
    return when.strftime("%Y%m%d%H%M%S") + ".123+0000"


def monitor_message(i: int, monitors: int, obx: int = 10) -> bytes:
    """The ``i``-th message when ``monitors`` monitors send in turn, one reading a second
    each. Up to eight share a patient and bed, as in ``[2]``-``[4]``; more have their own,
    as the beds of ``bench/hospital.py``."""
    m = i % monitors
    raw = pcd01(
        f"C{i}", obx, eui64=f"0123456789{0xABCD00 + m:06X}", observed=observed(i // monitors)
    )
    if monitors > 8:
        raw = raw.replace(b"MRN12345", b"MRN%05d" % m).replace(b"ICU^101^B", b"ICU^%d^B" % m)
    return raw


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_parse(obx: int) -> None:
    message = pcd01("PARSE1", obx)
    now = datetime.now(UTC)
    n = 500
    started = time.process_time()
    for _ in range(n):
        normalize(message, received_at=now)
    per = (time.process_time() - started) / n
    print(
        f"[1] normalize, ORU^R01 with {obx} OBX: {per * 1e3:.3f} ms CPU/msg"
        f" = {1 / per:,.0f} msg/s per core"
    )
    # a hospital's fleet: every monitor's devices and metrics are new to the mapping's
    # memos until it has seen them all, so the second pass is what a running feed costs
    fleet = [monitor_message(i, FLEET, obx) for i in range(2 * FLEET)]
    for message in fleet[:FLEET]:
        normalize(message, received_at=now)
    started = time.process_time()
    for message in fleet[FLEET:]:
        normalize(message, received_at=now)
    per = (time.process_time() - started) / FLEET
    print(f"    the same from {FLEET:,} monitors in turn: {per * 1e3:.3f} ms CPU/msg")
    # the listener's own work per frame, without sockets, threads or the bus: its figure
    # in [2] varies with how connections happen to share group commits, this one does not
    header = peek_header(message)
    intake = []
    for map_content in (True, False):
        started = time.process_time()
        for _ in range(n):
            peek_header(message)
            judge(message, received_at=now, map_content=map_content, peeked=header)
            build_ack(header, "AA", at=now)
        intake.append((time.process_time() - started) / n)
    print(
        f"    listener intake per frame (peek, judge, ACK): full mapping"
        f" {intake[0] * 1e3:.3f} ms CPU, structure {intake[1] * 1e3:.3f} ms CPU"
    )
    try:
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.parser import parse_message

        text = message.decode()
        started = time.process_time()
        for _ in range(3):
            parse_message(text, find_groups=True, validation_level=VALIDATION_LEVEL.TOLERANT)
        ref = (time.process_time() - started) / 3
        print(
            f"    hl7apy parse_message of the same message (reference): {ref * 1e3:.1f} ms CPU;"
            f" DESIGN.md measured 17-18 ms on an idle core, so this machine runs about"
            f" {ref * 1e3 / 17.5:.1f}x slower now"
        )
    except ImportError:
        pass


def send_all(
    host: str,
    port: int,
    connections: int,
    per_conn: int,
    obx: int,
    go: EventType,
    results: Queue[tuple[list[float], list[str]]],
) -> None:
    """The senders, in their own process (as the hospital's interface engine would be):
    one thread per connection, each sending its messages one at a time, waiting for ACKs."""
    payloads = [
        [pcd01(f"B{c}-{i}", obx, eui64=f"{c:016X}", observed=observed(i)) for i in range(per_conn)]
        for c in range(connections)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def sender(batch: list[bytes]) -> None:
        mine = []
        with MllpClient(host, port) as client:
            for message in batch:
                t0 = time.perf_counter()
                ack = client.send(message)
                mine.append(time.perf_counter() - t0)
                if b"MSA|CA|" not in ack and b"MSA|AA|" not in ack:
                    failures.append(ack.decode(errors="replace")[:200])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=sender, args=(p,)) for p in payloads]
    go.wait()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((latencies, failures))


def worker(
    role: str, bus_dir: str, store_url: str, stop: EventType, cpu: Queue[tuple[str, float]]
) -> None:
    """One pipeline role in its own process, as ``caregraph up --role ...`` would run it;
    reports the CPU seconds its work used (set-up and imports left out)."""
    bus = EmbeddedBus(Path(bus_dir))
    thread_stop = threading.Event()
    if role == "normalizer":
        thread = threading.Thread(
            target=run_consumer,
            args=(bus, "hl7v2-normalizer", [RAW_HL7V2], Hl7v2Normalizer(bus)),
            kwargs={"stop": thread_stop, "poll_timeout_s": 0.05},
        )
    else:
        from fhir_store.database import open_database
        from fhir_store.store import FhirStore
        from fhir_store.writer import handle_fhir_batch

        store = FhirStore(open_database(store_url))
        thread = threading.Thread(
            target=run_consumer,
            args=(
                bus,
                "store-writer",
                [fhir_topic(t) for t in STORE_TYPES],
                handle_fhir_batch(store),
            ),
            kwargs={"stop": thread_stop, "poll_timeout_s": 0.05, "batch_size": 2000},
        )
    settle_memory()  # as caregraph up does once its services are built
    cpu_start = time.process_time()
    thread.start()
    stop.wait()
    thread_stop.set()
    thread.join(10)
    bus.close()
    cpu.put((role, time.process_time() - cpu_start))


def normalizer_alone(
    bus_dir: str, total: int, fsync: bool, out: Queue[tuple[float, float, int]]
) -> None:
    """The normalizer role in its own process over a ``raw.hl7v2`` already filled: reports
    (wall seconds, CPU seconds, records skipped as unchanged) until all ``total`` are handled."""
    bus = EmbeddedBus(Path(bus_dir), fsync=fsync)
    stop = threading.Event()
    stats = WorkerStats()
    handler = Hl7v2Normalizer(bus)
    thread = threading.Thread(
        target=run_consumer,
        args=(bus, "hl7v2-normalizer", [RAW_HL7V2], handler),
        kwargs={"stop": stop, "poll_timeout_s": 0.05, "stats": stats},
    )
    cpu_start, started = time.process_time(), time.perf_counter()
    settle_memory()  # as caregraph up does once its services are built
    thread.start()
    deadline = started + 300
    while stats.handled < total and time.perf_counter() < deadline and thread.is_alive():
        time.sleep(0.005)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_start
    stop.set()
    thread.join(10)
    bus.close()
    out.put((wall if stats.handled >= total else float("nan"), cpu, handler.skipped))


def bench_normalizer(tmp: str, connections: int, per_conn: int, obx: int, fsync: bool) -> None:
    """Phase 4: the messages the senders sent, put on a fresh ``raw.hl7v2`` as the listener
    would (key, headers), then normalized by one process (``normalizer_alone``)."""
    bus_dir = Path(tmp) / "bus-normalizer"
    bus = EmbeddedBus(bus_dir, fsync=fsync)
    received = datetime.now(UTC)
    records = []
    for c in range(connections):
        for i in range(per_conn):
            raw = pcd01(f"B{c}-{i}", obx, eui64=f"{c:016X}", observed=observed(i))
            headers = make_headers(
                "mllp:bench", f"B{c}-{i}", CONTENT_TYPE_HL7V2, received_at=received
            )
            records.append(Record(RAW_HL7V2, raw, f"B{c}".encode(), headers))
    for start in range(0, len(records), 500):
        bus.publish_many(records[start : start + 500])
    bus.close()
    total = len(records)
    spawn = multiprocessing.get_context("spawn")
    out: Queue[tuple[float, float, int]] = spawn.Queue()
    proc = spawn.Process(target=normalizer_alone, args=(str(bus_dir), total, fsync, out))
    proc.start()
    wall, cpu, skipped = out.get(timeout=330)
    proc.join(15)
    print(
        f"[4] normalizer alone (raw.hl7v2 -> fhir.* published), fsync={'on' if fsync else 'off'}:"
        f" {total} msgs in {wall:.2f} s = {total / wall:,.0f} msg/s,"
        f" {total * obx / wall:,.0f} Observations/s ({skipped} unchanged entities not"
        f" republished)"
    )
    print(
        f"    normalizer process CPU: {cpu / total * 1e3:.2f} ms/msg"
        f" = {total / cpu:,.0f} msg/s per core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--obx", type=int, default=10)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--no-store", action="store_true")
    parser.add_argument(
        "--structure-only",
        action="store_true",
        help="listener checks scope and structure only (map_content=False)",
    )
    args = parser.parse_args()

    bench_parse(args.obx)
    per_conn = args.messages // args.connections
    total = per_conn * args.connections
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        bus = EmbeddedBus(Path(tmp) / "bus", fsync=not args.no_fsync)
        stop = spawn.Event()
        cpu: Queue[tuple[str, float]] = spawn.Queue()
        workers: list[BaseProcess] = []
        store = None
        bus.ensure_topics([RAW_HL7V2, *(fhir_topic(t) for t in STORE_TYPES)])
        if not args.no_store:
            from fhir_store.database import open_database
            from fhir_store.store import FhirStore

            store_url = f"sqlite:///{tmp}/store.sqlite3"
            store = FhirStore(open_database(store_url))
            for role in ("normalizer", "store-writer"):
                proc = spawn.Process(
                    target=worker, args=(role, str(Path(tmp) / "bus"), store_url, stop, cpu)
                )
                proc.start()
                workers.append(proc)

        # the ACK cache in a file, as the mllp role keeps it (caregraph/roles.py)
        acks = AckCache(path=Path(tmp) / "mllp-acks.sqlite3")
        with MllpListener(
            "127.0.0.1", 0, bus, ack_cache=acks, map_content=not args.structure_only
        ) as listener:
            host, port = listener.address
            results: Queue[tuple[list[float], list[str]]] = spawn.Queue()
            go = spawn.Event()
            senders = spawn.Process(
                target=send_all,
                args=(host, port, args.connections, per_conn, args.obx, go, results),
            )
            senders.start()
            time.sleep(1.0)  # let the sender process import and build its messages
            started = time.perf_counter()
            cpu_started = time.process_time()
            go.set()
            latencies, failures = results.get(timeout=600)
            ingest = time.perf_counter() - started
            listener_cpu = time.process_time() - cpu_started
            senders.join(10)
        acks.close()
        fsync = "off" if args.no_fsync else "on"
        p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
        print(
            f"[2] MLLP ingest, {args.connections} connections, fsync={fsync}, "
            f"intake={'structure' if args.structure_only else 'full mapping'}: "
            f"{total} msgs in {ingest:.2f} s = {total / ingest:,.0f} msg/s, "
            f"{total * args.obx / ingest:,.0f} Observations/s; ACK latency "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"mean {statistics.fmean(latencies) * 1e3:.1f} ms; non-AA: {len(failures)}"
        )
        per_msg = listener_cpu / total
        print(
            f"    listener process CPU: {per_msg * 1e3:.2f} ms/msg"
            f" = {1 / per_msg:,.0f} msg/s per core (includes the embedded bus writes)"
        )
        if store is not None:
            expected = total * args.obx
            deadline = time.perf_counter() + 120
            count = 0
            while time.perf_counter() < deadline:
                page = store.searching.search("Observation", [("_summary", "count")])
                count = page.total or 0
                if count >= expected:
                    break
                time.sleep(0.2)
            e2e = time.perf_counter() - started
            ok = "" if count >= expected else f" (INCOMPLETE: {count}/{expected} after 120 s)"
            print(
                f"[3] end to end until searchable: {count} Observations in {e2e:.2f} s = "
                f"{total / e2e:,.0f} msg/s, {count / e2e:,.0f} Observations/s{ok}"
            )
            stop.set()
            spent = listener_cpu
            for _ in workers:
                role, seconds = cpu.get(timeout=30)
                spent += seconds
                print(
                    f"    {role} process CPU: {seconds / total * 1e3:.2f} ms/msg"
                    f" = {total / seconds:,.0f} msg/s per core"
                    f" ({total * args.obx / seconds:,.0f} Observations/s)"
                )
            # what the pipeline costs in all, against what the machine has: the ceiling no
            # overlap of the roles can lift
            cores = len(os.sched_getaffinity(0))
            print(
                f"    all three processes: {spent / total * 1e3:.2f} ms CPU per message; this"
                f" machine's {cores} cores hold at most {cores * total / spent:,.0f} msg/s"
                f" ({cores * total * args.obx / spent:,.0f} Observations/s) at that cost"
            )
            for worker_proc in workers:
                worker_proc.join(15)
        bus.close()
        bench_normalizer(tmp, args.connections, per_conn, args.obx, not args.no_fsync)


if __name__ == "__main__":
    main()
