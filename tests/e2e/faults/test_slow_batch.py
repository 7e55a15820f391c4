"""A consumer whose batch takes longer than the Kafka poll interval still makes progress.

Found by the kill -9 test on a loaded machine: after a restart, the normalizer's first
batches (500 messages) took longer than 3 s, the group evicted it, the commit was refused,
the same batch came again and took as long again, and the acknowledged messages behind it
never reached the store. Here the batch is made slow on any machine (300 PCD-01 messages of
200 results each), so the test does not depend on the machine's load.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devices.mllp.client import MllpClient
from observability.lag import KafkaLag
from tests.e2e.faults.workload import ack_code
from tests.support.fleet import Fleet, clean_env
from tests.support.services import free_port, tansu_broker, wait_for_port
from tests.unit.hl7v2.corpus import pcd01

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BACKLOG = 300  # one batch of bus/worker.py run_consumer (up to 500), well over 3 s of work


def test_a_batch_slower_than_the_poll_interval_is_committed(
    tmp_path: Path, postgres_url: str
) -> None:
    with tansu_broker() as bootstrap:
        env = clean_env()
        env.update(
            CAREGRAPH_KAFKA_BOOTSTRAP=bootstrap,
            CAREGRAPH_DATABASE_URL=postgres_url,
            CAREGRAPH_KAFKA_PARTITIONS="1",
        )
        fleet = Fleet(env, tmp_path)
        lag = KafkaLag(bootstrap, {"normalizer-hl7v2": ["raw.hl7v2"]}, ttl_s=0)
        try:
            mllp = free_port()
            fleet.start("mllp", "mllp", mllp_port=str(mllp))
            wait_for_port("127.0.0.1", mllp, timeout_s=90)
            with MllpClient("127.0.0.1", mllp) as client:
                codes = {ack_code(client.send(pcd01(f"SLOW{i:06d}", 200))) for i in range(BACKLOG)}
            assert codes <= {"AA", "CA"}, codes
            fleet.start("normalizer", "normalizer")
            deadline = time.monotonic() + 75
            behind = BACKLOG
            while time.monotonic() < deadline and behind > 0:
                time.sleep(2)
                behind = sum(s.lag for s in lag())
            assert behind == 0, f"normalizer-hl7v2 still {behind} messages behind after 75 s"
        finally:
            lag.close()
            fleet.stop()
