"""Serial drivers: decode cost, one saturated 115200-baud line, and a fleet of devices.

    python bench/serial.py [--part decode|line|fleet|all] [--seconds S] [--devices N]

- ``decode``: pure codec cost, no I/O: IntelliVue poll results (12 numerics each) through
  the framer, the decoder, the FHIR mapping and ``json.dumps``; timed in thread CPU time,
  so other load on the machine does not skew it.
- ``line``: one IntelliVue simulator (in a child process, so its CPU is not counted) floods a
  pty at 11,520 bytes/s, the most a 115200-baud 8N1 line carries; one real driver reads it
  through pyserial and publishes every frame to an in-memory bus, where the normalizer turns
  it into Observations. Prints frames/s decoded and the CPU share of the driver thread and of
  the normalizer. Run twice: 12-numeric frames and 1-numeric frames.
- ``fleet``: N IntelliVue simulators (child process) on N ptys polled at 1 Hz by N drivers,
  the device normalizer and the store writer (``fhir_store`` on SQLite) on the embedded bus.
  Prints Observations/s stored, p50/p99 latency from the device time of a reading to the
  commit that makes it searchable, and the CPU the whole pipeline used (cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

# Run as a script from a clone. Replace (not prepend to) the script's own directory: this
# file is named serial.py and would otherwise shadow pyserial's ``serial`` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from adapters.registry.associations import (  # noqa: E402
    AssociationIndex,
    Attachment,
    statement_resource,
)
from adapters.serial import intellivue as iv  # noqa: E402
from adapters.serial.observation import (  # noqa: E402
    device_resource_id,
    observation_from_measurement,
)
from bus.base import Message  # noqa: E402
from bus.embedded import EmbeddedBus  # noqa: E402
from bus.memory import MemoryBus  # noqa: E402
from bus.topics import RAW_DEVICE, fhir_topic  # noqa: E402
from bus.worker import run_consumer  # noqa: E402
from devices.serial import make_driver, run_normalizer  # noqa: E402
from devices.serial.intellivue import IntelliVueDriver  # noqa: E402
from devices.simulators import start_simulator  # noqa: E402

LINE_BYTES_PER_S = 115200 / 10  # 8N1: 10 bit times per byte


def thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


# -- decode ------------------------------------------------------------------------------


def bench_decode(n: int = 3000) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    anchor = iv.TimeAnchor(0, t0)
    objs = []
    for h, pid, unit in [
        (1, 0x4182, 0x0AA0),
        (2, 0x4BB8, 0x0220),
        (3, 0x4822, 0x0AA0),
        (6, 0x500A, 0x0AE0),
        (7, 0x4B48, 0x17A0),
        (8, 0x50B0, 0x0F20),
    ]:
        objs.append(
            iv.NumericObject(h, pid, (iv.NuObs(pid, 0, unit, iv.encode_float(Decimal(72))),))
        )
    for h, base in [(4, 0x4A05), (5, 0x4A15)]:
        objs.append(
            iv.NumericObject(
                h,
                base,
                tuple(
                    iv.NuObs(base + k, 0, 0x0F20, iv.encode_float(Decimal(80 + k)))
                    for k in range(3)
                ),
            )
        )
    wire = b"".join(iv.encode_frame(iv.poll_reply(i, i, i * 8000, None, objs)) for i in range(n))
    chunks = [wire[i : i + 4096] for i in range(0, len(wire), 4096)]

    t = time.thread_time()
    framer = iv.Framer()
    frames = [f for c in chunks for f in framer.feed(c) if isinstance(f, iv.Frame)]
    t_frame = time.thread_time() - t
    assert len(frames) == n

    t = time.thread_time()
    ms = [iv.measurements(f.user_data, "d", f"m{i}", t0, anchor) for i, f in enumerate(frames)]
    t_decode = time.thread_time() - t
    count = sum(len(x) for x in ms)

    t = time.thread_time()
    for batch in ms:
        for m in batch:
            json.dumps(observation_from_measurement(m), separators=(",", ":"))
    t_fhir = time.thread_time() - t

    # The patient at device time: 64 devices with 50 attachments each in the index.
    index = AssociationIndex(
        Attachment(
            "d" if k == 0 else f"d{k}",
            {"reference": f"Patient/{k}-{j}"},
            t0 + timedelta(hours=j - 49),
            t0 + timedelta(hours=j - 48) if j < 49 else None,
            f"{k}-{j}",
        )
        for k in range(64)
        for j in range(50)
    )
    t = time.thread_time()
    for batch in ms:
        for m in batch:
            subject = index.subject_at(m.device_id, m.device_time or m.received_at)
            json.dumps(observation_from_measurement(m, subject), separators=(",", ":"))
    t_patient = time.thread_time() - t
    assert subject == {"reference": "Patient/0-49"}
    t = time.thread_time()
    for batch in ms:
        for m in batch:
            index.subject_at(m.device_id, m.device_time or m.received_at)
    t_lookup = time.thread_time() - t
    print(f"decode: {n} IntelliVue frames of {len(wire) // n} bytes, {count // n} numerics each")
    print(f"  framing (unescape + FCS-16)      {n / t_frame:10.0f} frames/s")
    print(f"  + decode to measurements         {n / (t_frame + t_decode):10.0f} frames/s")
    print(
        f"  measurement -> Observation JSON  {count / t_fhir:10.0f} observations/s "
        f"({1e6 * t_fhir / count:.1f} us each)"
    )
    print(
        f"  pure path, frame to JSON         {1e6 * (t_frame + t_decode + t_fhir) / count:.1f}"
        " us per observation"
    )
    print(
        f"  same with the patient at device time (index of {len(index)} attachments): "
        f"{1e6 * t_patient / count:.1f} us per observation; the lookup alone "
        f"{1e6 * t_lookup / count:.2f} us"
    )


# -- line --------------------------------------------------------------------------------


def _sim_process(paths: list[str], options: dict[str, Any], ready: Any, stop: Any) -> None:
    handles = [start_simulator("intellivue", p, seed=i, **options)[1] for i, p in enumerate(paths)]
    ready.set()
    stop.wait()
    for h in handles:
        h.stop()


def bench_line(seconds: float, objects: int) -> None:
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ttyIV0")
        ready, stop_sim = ctx.Event(), ctx.Event()
        opts = {"flood_bytes_per_s": LINE_BYTES_PER_S, "flood_objects": objects}
        proc = ctx.Process(target=_sim_process, args=([path], opts, ready, stop_sim))
        proc.start()
        ready.wait(10)
        bus = MemoryBus()
        driver = make_driver("intellivue", path, "bench-line", bus, poll_interval_s=1.0)
        assert isinstance(driver, IntelliVueDriver)
        stop = threading.Event()
        th = threading.Thread(target=driver.run, args=(stop,), daemon=True)
        norm = threading.Thread(target=run_normalizer, args=(bus, stop), daemon=True)
        th.start()
        norm.start()
        while driver.stats.frames < 5:
            time.sleep(0.05)
        obs_topic = fhir_topic("Observation")
        f0, b0, c0, n0, o0, w0 = (
            driver.stats.frames,
            driver.stats.bytes_in,
            thread_cpu(th),
            thread_cpu(norm),
            len(bus.snapshot(obs_topic)),
            time.monotonic(),
        )
        time.sleep(seconds)
        f1, b1, c1, n1, o1, w1 = (
            driver.stats.frames,
            driver.stats.bytes_in,
            thread_cpu(th),
            thread_cpu(norm),
            len(bus.snapshot(obs_topic)),
            time.monotonic(),
        )
        stop.set()
        th.join(5)
        norm.join(5)
        stop_sim.set()
        proc.join(10)
    wall = w1 - w0
    frames = f1 - f0
    bad = driver.stats.checksum_errors + driver.stats.framing_errors
    print(
        f"line: one IntelliVue driver, saturated 115200 baud, {objects}-object frames, {wall:.0f} s"
    )
    print(
        f"  {frames / wall:8.1f} frames/s decoded and published, {(b1 - b0) / wall:8.0f} bytes/s "
        f"(line limit {LINE_BYTES_PER_S:.0f}); bad frames {bad}"
    )
    print(
        f"  normalizer: {(o1 - o0) / wall:8.1f} Observations/s, "
        f"{100 * (n1 - n0) / wall:5.1f} % of one core "
        f"({1e6 * (n1 - n0) / max(o1 - o0, 1):.0f} us per Observation)"
    )
    print(
        f"  driver thread CPU {100 * (c1 - c0) / wall:5.1f} % of one core "
        f"({1e6 * (c1 - c0) / max(frames, 1):.0f} us per frame)"
    )


# -- fleet -------------------------------------------------------------------------------


def bench_fleet(devices: int, seconds: float) -> None:
    from caregraph.device_registry import AssociationCache
    from fhir_store.database import open_database
    from fhir_store.store import FhirStore
    from fhir_store.writer import WRITE_LINGER_S, handle_fhir_batch

    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"tty{i}") for i in range(devices)]
        ready, stop_sim = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_sim_process, args=(paths, {}, ready, stop_sim))
        proc.start()
        ready.wait(30)

        bus = EmbeddedBus(Path(tmp) / "bus")
        obs_topic = fhir_topic("Observation")
        bus.ensure_topics([RAW_DEVICE, obs_topic])
        store = FhirStore(open_database(f"sqlite:///{tmp}/store.db"))
        # Every monitor attached to its patient, so each reading's patient is resolved at
        # device time from the registry's cached index (as the normalizer role does).
        since = datetime.now(UTC) - timedelta(hours=1)
        store.upsert_many(
            [
                statement_resource(
                    f"bench-fleet-{i}",
                    f"Device/{device_resource_id(f'bench-fleet-{i}')}",
                    {"reference": f"Patient/bench-{i}"},
                    since,
                    None,
                    since,
                )
                for i in range(devices)
            ]
        )
        resolver = AssociationCache(store)
        write = handle_fhir_batch(store)
        assigned = [0]
        latencies: list[float] = []
        to_bus: list[float] = []
        stored = [0]
        measuring = [False]

        def handle(batch: list[Message]) -> None:
            write(batch)
            now = datetime.now(UTC)
            if measuring[0]:
                for m in batch:
                    obs = json.loads(m.value)
                    assigned[0] += "subject" in obs
                    eff = datetime.fromisoformat(obs["effectiveDateTime"])
                    latencies.append((now - eff).total_seconds())
                    to_bus.append(m.timestamp_ms / 1000 - eff.timestamp())
                stored[0] += len(batch)

        stop = threading.Event()
        threads = []
        drivers = []
        for i, path in enumerate(paths):
            d = make_driver("intellivue", path, f"bench-fleet-{i}", bus, poll_interval_s=1.0)
            drivers.append(d)
            threads.append(threading.Thread(target=d.run, args=(stop,), daemon=True))
        threads.append(
            threading.Thread(
                target=run_normalizer,
                args=(bus, stop),
                kwargs={"resolver": resolver},
                daemon=True,
            )
        )
        threads.append(
            threading.Thread(
                target=run_consumer,
                args=(bus, "store-writer", [obs_topic], handle),
                kwargs={"stop": stop, "poll_timeout_s": 0.1, "linger_s": WRITE_LINGER_S},
                daemon=True,
            )
        )
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(d.stats.published > 0 for d in drivers) < devices and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # let the first backlog drain
        measuring[0] = True
        cpu0, w0 = time.process_time(), time.monotonic()
        per0 = [thread_cpu(t) for t in threads]
        time.sleep(seconds)
        per1 = [thread_cpu(t) for t in threads]
        cpu1, w1 = time.process_time(), time.monotonic()
        measuring[0] = False
        stop.set()
        for t in threads:
            t.join(10)
        stop_sim.set()
        proc.join(10)
        bus.close()
    wall = w1 - w0
    latencies.sort()
    to_bus.sort()

    def p(q: float, xs: list[float] = latencies) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    connected = sum(d.stats.published > 0 for d in drivers)
    print(
        f"fleet: {devices} IntelliVue monitors on {devices} ptys, polled at 1 Hz, {wall:.0f} s "
        f"({connected} associated)"
    )
    print(f"  {stored[0] / wall:8.1f} Observations/s stored ({stored[0]} in the window)")
    print(
        f"  {assigned[0]} of {stored[0]} with their patient resolved at device time; "
        f"the attachment index was loaded {resolver.loads} times in all"
    )
    if latencies:
        print(
            f"  latency device time -> committed in the store: p50 {1000 * p(0.5):.0f} ms, "
            f"p99 {1000 * p(0.99):.0f} ms, max {1000 * latencies[-1]:.0f} ms "
            f"(mean {1000 * statistics.fmean(latencies):.0f} ms)"
        )
    per = [b - a for a, b in zip(per0, per1, strict=True)]
    if to_bus:
        print(
            f"  of which device time -> Observation on the bus (driver + normalizer): "
            f"p50 {1000 * p(0.5, to_bus):.0f} ms, p99 {1000 * p(0.99, to_bus):.0f} ms"
        )
    print(
        f"  CPU of drivers + normalizer + store writer: {(cpu1 - cpu0) / wall:.2f} cores "
        f"(driver threads {sum(per[:devices]) / wall:.2f}, normalizer {per[devices] / wall:.2f}, "
        f"store writer {per[devices + 1] / wall:.2f}, rest: bus internals)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=["decode", "line", "fleet", "all"], default="all")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--devices", type=int, default=64)
    args = ap.parse_args()
    if args.part in ("decode", "all"):
        bench_decode()
    if args.part in ("line", "all"):
        bench_line(args.seconds, 8)
        bench_line(args.seconds, 1)
    if args.part in ("fleet", "all"):
        bench_fleet(args.devices, args.seconds * 2)


if __name__ == "__main__":
    main()
