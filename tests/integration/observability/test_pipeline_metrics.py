"""Real components, real scrape: HL7 over a TCP socket to the MLLP listener, a consumer
running the HL7 normalizer, everything counted at the bus seam and read from /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.hl7v2.normalizer import Hl7v2Normalizer
from bus.memory import MemoryBus
from bus.topics import RAW_HL7V2
from bus.worker import WorkerStats, run_consumer
from devices.mllp.client import MllpClient
from devices.mllp.listener import MllpListener
from observability.instrument import MeteredBus, instrument_handler
from observability.metrics import LagSample, Metrics
from observability.ops import OpsServer
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(ops: OpsServer) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{ops.port}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_hl7_through_gateway_and_normalizer_moves_every_figure() -> None:
    metrics = Metrics()
    memory = MemoryBus(partitions=2)
    bus = MeteredBus(memory, metrics)
    group = "normalizer-hl7v2"

    def lag() -> list[LagSample]:
        """What KafkaLag reads from a broker, read from the in-memory bus."""
        ends: dict[int, int] = {}
        for m in memory.snapshot(RAW_HL7V2):
            ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
        done = memory.committed(group)
        return [
            LagSample(group, RAW_HL7V2, p, end - done.get((RAW_HL7V2, p), 0))
            for p, end in ends.items()
        ]

    stats = WorkerStats()
    metrics.watch_worker(group, stats)
    metrics.watch_lag(lag)
    ops = OpsServer("127.0.0.1", 0, {"bus": bus.ping}, metrics)
    ops.start()
    try:
        with MllpListener("127.0.0.1", 0, bus, idle_timeout_s=20) as listener:
            metrics.watch_listener("mllp", listener.stats)
            host, port = listener.address
            with MllpClient(host, port, timeout_s=20) as client:
                for i in range(12):
                    client.send(corpus.pcd01(f"PCD{i:04d}", 3))

            before = scrape(ops)
            raw = (("source", "mllp"), ("topic", RAW_HL7V2))
            assert before[("caregraph_messages_out_total", raw)] == 12
            assert before[("caregraph_ack_latency_seconds_count", (("source", "mllp"),))] == 12
            assert before[("caregraph_mllp_accepted_total", (("listener", "mllp"),))] == 12
            assert sum(v for (n, _), v in before.items() if n == "caregraph_consumer_lag") == 12

            stop = threading.Event()
            normalizer = Hl7v2Normalizer(bus, group=group)
            worker = threading.Thread(
                target=run_consumer,
                args=(bus, group, [RAW_HL7V2], instrument_handler(normalizer, metrics)),
                kwargs={"stop": stop, "poll_timeout_s": 0.02, "stats": stats},
            )
            worker.start()
            try:
                wait_for(lambda: sum(memory.committed(group).values()) == 12)
            finally:
                stop.set()
                worker.join(10)

            after = scrape(ops)
            assert after[("caregraph_messages_in_total", raw)] == 12
            assert after[("caregraph_worker_handled_total", (("group", group),))] == 12
            assert sum(v for (n, _), v in after.items() if n == "caregraph_consumer_lag") == 0
            observations = (
                "caregraph_messages_out_total",
                (("source", "mllp"), ("topic", "fhir.Observation")),
            )
            assert after[observations] == 12 * 3  # three metric rows per PCD-01 message
    finally:
        ops.stop()
