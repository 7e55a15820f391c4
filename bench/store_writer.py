"""The store writer's own cost per HL7 monitor message, in one process, without the bus:
CPU and wall time per message, and what SQLite wrote.

    python bench/store_writer.py                    # 3,000 messages, 40 per transaction
    python bench/store_writer.py --messages 10000 --batch 160 --profile
    python bench/store_writer.py --monitors 1000   # a patient and a bed per monitor

The messages are ``bench/hl7.py``'s (IHE PCD-01, 10 OBX, eight monitors, one reading a
second each, received a millisecond apart; ``--monitors`` sets how many, each with a
patient and bed of its own, as ``bench/hospital.py``'s beds), normalized first; what the
normalizer would not publish again (an entity unchanged since the last message) is left
out, as the normalizer leaves it out. Then ``FhirStore.upsert_many`` per ``--batch``
messages into a new SQLite store, as the store writer's batches. ``bench/hl7.py`` times
the same work in its pipeline, where the machine's swings and the other roles blur a
change of 10%: this one alternates well (two checkouts, ``python
<checkout>/bench/store_writer.py`` in turn).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.hl7v2 import normalize
from bench.hl7 import monitor_message
from fhir_store.database import open_database
from fhir_store.records import dumps, loads
from fhir_store.store import FhirStore


def messages(n: int, monitors: int = 8) -> list[list[dict[str, Any]]]:
    """The resources the normalizer publishes for each of ``n`` monitor messages."""
    received = datetime.now(UTC)
    published: dict[tuple[str, str], bytes] = {}
    out = []
    for i in range(n):
        raw = monitor_message(i, monitors)
        fresh = []
        for resource in normalize(raw, received_at=received + timedelta(milliseconds=i)).resources:
            key = (resource["resourceType"], resource["id"])
            body = dumps(resource)
            if published.get(key) != body:
                published[key] = body
                fresh.append(loads(body))
        out.append(fresh)
    return out


def written_bytes() -> int:
    """Bytes this process handed to write() so far (WAL frames and checkpoints)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=40, help="messages per transaction")
    parser.add_argument("--monitors", type=int, default=8, help="monitors sending in turn")
    parser.add_argument("--profile", action="store_true", help="pyinstrument's tree too")
    args = parser.parse_args()
    batches = messages(args.messages, args.monitors)
    resources = sum(map(len, batches))
    with tempfile.TemporaryDirectory() as tmp:
        store = FhirStore(open_database(f"sqlite:///{tmp}/store.db"))
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        written = written_bytes()
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, args.messages, args.batch):
            store.upsert_many([r for m in batches[start : start + args.batch] for r in m])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        written = written_bytes() - written
        store.db.close()
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    n = args.messages
    print(
        f"{n} messages from {args.monitors} monitors ({resources / n:.2f} resources each),"
        f" {args.batch} per transaction:"
        f" {cpu / n * 1e3:.3f} ms CPU and {wall / n * 1e3:.3f} ms wall per message"
        f" ({n / wall:,.0f} msg/s); {written / n / 1024:,.0f} KiB written per message"
    )


if __name__ == "__main__":
    main()
