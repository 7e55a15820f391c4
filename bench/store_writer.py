"""The store writer's own cost per HL7 monitor message, in one process, without the bus:
CPU and wall time per message, and what SQLite wrote.

    python bench/store_writer.py                    # 3,000 messages, 40 per transaction
    python bench/store_writer.py --messages 10000 --batch 160 --profile
    python bench/store_writer.py --monitors 1000   # a patient and a bed per monitor
    python bench/store_writer.py --monitors 1000 --batch 1000 --messages 10000 --pages

The messages are ``bench/hl7.py``'s (IHE PCD-01, 10 OBX, eight monitors, one reading a
second each, received a millisecond apart; ``--monitors`` sets how many, each with a
patient and bed of its own, as ``bench/hospital.py``'s beds), normalized first; what the
normalizer would not publish again (an entity unchanged since the last message) is left
out, as the normalizer leaves it out. Then ``FhirStore.upsert_many`` per ``--batch``
messages into a new SQLite store, as the store writer's batches. ``bench/hl7.py`` times
the same work in its pipeline, where the machine's swings and the other roles blur a
change of 10%: this one alternates well (two checkouts, ``python
<checkout>/bench/store_writer.py`` in turn).

``--replay`` then runs every statement the store ran (recorded as it ran them, SELECTs
included) again, transaction by transaction, into a new file of the same schema, straight
from the recording: SQLite's own share of the cost, which no change to the Python side of
the store can take away.

``--pages`` then writes one more transaction of ``--batch`` messages and counts the pages
it changed in each B-tree (table or index), from SQLite's ``dbstat`` before and after (a
page whose cell count, payload or free space changed, or that is new): what the commit
writes to the WAL, and the checkpoint again, is those pages whole.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.hl7v2 import normalize
from bench.hl7 import monitor_message
from fhir_store.database import Transaction, open_database
from fhir_store.records import dumps, loads
from fhir_store.store import FhirStore


def messages(n: int, monitors: int = 8) -> list[list[dict[str, Any]]]:
    """The resources the normalizer publishes for each of ``n`` monitor messages."""
    received = datetime.now(UTC)
    published: dict[tuple[str, str], str] = {}
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


def page_states(path: str) -> dict[int, tuple[str, int, int, int]]:
    """Each page of the database file: (B-tree, cells, payload bytes, unused bytes)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT pageno, name, ncell, payload, unused FROM dbstat")
        return {page: (name, cells, payload, unused) for page, name, cells, payload, unused in rows}


def changed_pages(store: FhirStore, path: str, resources: list[dict[str, Any]]) -> None:
    """Write ``resources`` in one transaction; print the pages it changed, per B-tree."""
    before = page_states(path)
    store.upsert_many(resources)
    changed = Counter(
        state[0] for page, state in page_states(path).items() if before.get(page) != state
    )
    total = sum(changed.values())
    print(f"one more transaction changed {total:,} pages:")
    for name, count in changed.most_common(12):
        print(f"  {count:7,} {100 * count / total:5.1f}%  {name}")


class Recorder:
    """Every statement the store's transactions run, kept by transaction, to run again."""

    def __init__(self) -> None:
        self.transactions: list[list[tuple[bool, str, Any]]] = [[]]
        self._real = (Transaction.execute, Transaction.executemany)

    def __enter__(self) -> Recorder:
        execute, executemany = self._real

        def recorded_execute(tx: Transaction, sql: str, params: Any = ()) -> Any:
            self.transactions[-1].append((False, sql, params))
            return execute(tx, sql, params)

        def recorded_executemany(tx: Transaction, sql: str, rows: Any) -> None:
            self.transactions[-1].append((True, sql, rows))
            executemany(tx, sql, rows)

        setattr(Transaction, "execute", recorded_execute)  # noqa: B010 (patching a class)
        setattr(Transaction, "executemany", recorded_executemany)  # noqa: B010
        return self

    def committed(self) -> None:
        self.transactions.append([])

    def __exit__(self, *_: object) -> None:
        setattr(Transaction, "execute", self._real[0])  # noqa: B010
        setattr(Transaction, "executemany", self._real[1])  # noqa: B010


def replay(transactions: list[list[tuple[bool, str, Any]]], path: str) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and bytes written to run ``transactions`` into a new store."""
    db = FhirStore(open_database(f"sqlite:///{path}")).db
    written = written_bytes()
    cpu, wall = time.process_time(), time.perf_counter()
    for statements in transactions:
        if not statements:
            continue
        with db.transaction() as tx:
            for many, sql, params in statements:
                if many:
                    tx.executemany(sql, params)
                else:
                    tx.execute(sql, params).fetchall()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    written = written_bytes() - written
    db.close()
    return cpu, wall, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=40, help="messages per transaction")
    parser.add_argument("--monitors", type=int, default=8, help="monitors sending in turn")
    parser.add_argument("--profile", action="store_true", help="pyinstrument's tree too")
    parser.add_argument("--pages", action="store_true", help="pages one more batch changes")
    parser.add_argument("--replay", action="store_true", help="SQLite's share, run again")
    args = parser.parse_args()
    extra = args.batch if args.pages else 0
    batches = messages(args.messages + extra, args.monitors)
    resources = sum(map(len, batches[: args.messages]))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/store.db"
        store = FhirStore(open_database(f"sqlite:///{path}"))
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        recorder = Recorder()
        written = written_bytes()
        cpu, wall = time.process_time(), time.perf_counter()
        with recorder if args.replay else contextlib.nullcontext():
            for start in range(0, args.messages, args.batch):
                store.upsert_many([r for m in batches[start : start + args.batch] for r in m])
                recorder.committed()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        written = written_bytes() - written
        if profiler is not None:
            profiler.stop()
        if args.pages:
            changed_pages(store, path, [r for m in batches[args.messages :] for r in m])
        store.db.close()
        again = replay(recorder.transactions, f"{tmp}/replay.db") if args.replay else None
    if profiler is not None:
        print(profiler.output_text(unicode=False, color=False))
    n = args.messages
    print(
        f"{n} messages from {args.monitors} monitors ({resources / n:.2f} resources each),"
        f" {args.batch} per transaction:"
        f" {cpu / n * 1e3:.3f} ms CPU and {wall / n * 1e3:.3f} ms wall per message"
        f" ({n / wall:,.0f} msg/s); {written / n / 1024:,.0f} KiB written per message"
    )
    if again is not None:
        print(
            f"the same statements run again from the recording: {again[0] / n * 1e3:.3f} ms"
            f" CPU ({100 * again[0] / cpu:.0f}%) and {again[1] / n * 1e3:.3f} ms wall per"
            f" message; {again[2] / n / 1024:,.0f} KiB written per message"
        )


if __name__ == "__main__":
    main()
