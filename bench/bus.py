"""Bus throughput: publish then consume N messages of 1 KB, per bus, with a raw baseline.

    python bench/bus.py [--messages N] [--size BYTES] [--batch B] [--bootstrap HOST:PORT]

Prints messages/s for publishing (batches of B, each durable before the next: the
``publish_many`` contract), for consuming in a group (poll B, commit after each batch),
for both together (N / (publish time + consume time)), and this process's CPU time per
message (all threads, group join included; robust to busy neighbours), for:

- the embedded bus (SQLite WAL, fsync on every batch, in a temporary directory),
- ``KafkaBus``,
- raw kafka-python doing the same work with the same producer/consumer settings (send B
  with the headers encoded, flush, check every future; poll B, read each record, commit),
  the baseline for ``KafkaBus``.

Then the latency of one hop when nothing is queued, as a reading meets it: a consumer waits in
``poll`` and a message is published every 150 ms; publish to delivery, p50/p99, per bus.

Kafka consume timings start at the first record, so the group join (~3 s on Tansu) is not
counted. Each figure is the best of ``--rounds`` runs (raw and KafkaBus interleaved), since
on a shared machine the slower runs mostly measure the neighbours. Without ``--bootstrap``
a Tansu broker is started on a free port and stopped after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a clone

from bus.base import Bus, Record
from bus.embedded import EmbeddedBus
from bus.headers import make_headers
from bus.kafka import KafkaBus


@dataclass(frozen=True)
class Result:
    name: str
    messages: int
    publish_s: float
    consume_s: float
    cpu_s: float  # this process, all threads; a broker's own CPU is not in it

    @property
    def total_rate(self) -> float:
        return self.messages / (self.publish_s + self.consume_s)

    def line(self) -> str:
        return (
            f"{self.name:<22} publish {self.messages / self.publish_s:>9,.0f} msg/s   "
            f"consume {self.messages / self.consume_s:>9,.0f} msg/s   "
            f"publish+consume {self.total_rate:>9,.0f} msg/s   "
            f"cpu {self.cpu_s / self.messages * 1e6:>5.1f} us/msg"
        )


def records(topic: str, n: int, size: int) -> list[Record]:
    """n distinct 1 KB values, keyed by 100 patients, with the five standard headers."""
    pad = b"x" * size
    return [
        Record(
            topic,
            (b"%08d" % i + pad)[:size],
            key=b"patient-%d" % (i % 100),
            headers=make_headers("bench", f"m{i}", "application/octet-stream", trace_id="t"),
        )
        for i in range(n)
    ]


def bench_bus(name: str, bus: Bus, n: int, size: int, batch: int) -> Result:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    data = records(topic, n, size)
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(0, n, batch):
        bus.publish_many(data[i : i + batch])
    publish_s = time.perf_counter() - start
    with bus.subscribe(f"bench-{uuid.uuid4().hex[:8]}", [topic]) as consumer:
        got = 0
        first: float | None = None
        while got < n:
            messages = consumer.poll(timeout_s=1.0, max_records=batch)
            if messages:
                first = first or time.perf_counter()
                consumer.commit(messages)
                got += len(messages)
        consume_s = time.perf_counter() - (first or time.perf_counter())
        cpu_s = time.process_time() - cpu
    return Result(name, n, publish_s, consume_s, cpu_s)


def bench_raw_kafka(bootstrap: str, n: int, size: int, batch: int) -> Result:
    """kafka-python used directly, with KafkaBus's settings and the same semantics."""
    from kafka import KafkaConsumer, KafkaProducer

    probe = KafkaBus(bootstrap, partitions=6)
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    probe.ensure_topics([topic])
    data = records(topic, n, size)
    producer = KafkaProducer(**probe._producer_config)
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(0, n, batch):
        # Headers are text in caregraph; any producer has to encode them, raw or not.
        futures = [
            producer.send(
                topic,
                value=r.value,
                key=r.key,
                headers=[(k, v.encode()) for k, v in r.headers.items()],
            )
            for r in data[i : i + batch]
        ]
        producer.flush()
        for future in futures:
            future.get()
    publish_s = time.perf_counter() - start
    producer.close()

    consumer = KafkaConsumer(
        topic, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}", **probe._consumer_config
    )
    got = 0
    first: float | None = None
    seen_bytes = 0
    while got < n:
        fetched = consumer.poll(timeout_ms=1000, max_records=batch)
        if fetched:
            first = first or time.perf_counter()
            for batch_records in fetched.values():
                for r in batch_records:  # a consumer reads what it fetched, at the least
                    seen_bytes += len(r.value)
                    got += 1
            consumer.commit()
    consume_s = time.perf_counter() - (first or time.perf_counter())
    cpu_s = time.process_time() - cpu
    consumer.close()
    probe.close()
    return Result("raw kafka-python", n, publish_s, consume_s, cpu_s)


def hop_latency(name: str, bus: Bus, messages: int = 60) -> str:
    """Publish-to-delivery latency with the consumer already waiting in ``poll``."""
    topic = f"bench-hop-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    consumer = bus.subscribe(f"bench-hop-{uuid.uuid4().hex[:8]}", [topic])
    bus.publish_many([Record(topic, b"-1")])
    while not consumer.poll(1.0):  # joined and positioned
        pass
    sent: dict[int, float] = {}

    def produce() -> None:
        for i in range(messages):
            time.sleep(0.15)
            sent[i] = time.perf_counter()
            bus.publish_many([Record(topic, str(i).encode())])

    producer = threading.Thread(target=produce)
    producer.start()
    latencies: list[float] = []
    while len(latencies) < messages:
        for m in consumer.poll(1.0):
            latencies.append(time.perf_counter() - sent[int(m.value)])
    producer.join()
    consumer.close()
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(0.99 * len(latencies))]
    return f"{name:<22} one hop, consumer waiting: p50 {p50 * 1e3:6.1f} ms  p99 {p99 * 1e3:6.1f} ms"


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from tests.support.services import tansu_broker

    with tansu_broker() as started:
        yield started


def best(results: list[Result]) -> Result:
    """The fastest round: on a shared machine, slower rounds measure the neighbours."""
    return min(results, key=lambda r: r.publish_s + r.consume_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many, per bus")
    parser.add_argument("--bootstrap", help="an existing Kafka; default: start a Tansu")
    parser.add_argument("--skip-kafka", action="store_true")
    args = parser.parse_args(argv)
    n, size, batch, rounds = args.messages, args.size, args.batch, args.rounds
    print(f"{n:,} messages of {size} B, batches of {batch}, best of {rounds} rounds")

    for fsync, name in ((True, "embedded (fsync)"), (False, "embedded (no fsync)")):
        runs = []
        for _ in range(rounds):
            with (
                tempfile.TemporaryDirectory(prefix="caregraph-bench-") as tmp,
                EmbeddedBus(Path(tmp), fsync=fsync) as embedded,
            ):
                runs.append(bench_bus(name, embedded, n, size, batch))
        print(best(runs).line(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="caregraph-bench-") as tmp,
        EmbeddedBus(Path(tmp)) as embedded,
    ):
        print(hop_latency("embedded (fsync)", embedded), flush=True)
    if args.skip_kafka:
        return
    with broker(args.bootstrap) as bootstrap, KafkaBus(bootstrap, partitions=6) as kafka_bus:
        raws, ours = [], []
        for _ in range(rounds):  # interleaved, so both see the same neighbours
            raws.append(bench_raw_kafka(bootstrap, n, size, batch))
            ours.append(bench_bus("KafkaBus", kafka_bus, n, size, batch))
        hop = hop_latency("KafkaBus", kafka_bus)
    raw, mine = best(raws), best(ours)
    print(raw.line())
    print(mine.line())
    print(hop)
    print(
        f"KafkaBus / raw kafka-python: publish {raw.publish_s / mine.publish_s:.2f}, "
        f"consume {raw.consume_s / mine.consume_s:.2f}, "
        f"publish+consume {mine.total_rate / raw.total_rate:.2f}, "
        f"CPU per message {raw.cpu_s / mine.cpu_s:.2f} (above 1: KafkaBus needs less)"
    )


if __name__ == "__main__":
    main()
