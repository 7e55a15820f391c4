"""PostgreSQL stopped and started under load, on a private cluster of the test's own (the
machine's shared server is never touched)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.faults.conftest import Hospital, launch
from tests.e2e.faults.workload import (
    GOLDEN_TAG,
    PATIENTS,
    SEND_S,
    TIME_BOUND_S,
    Hl7Stream,
    api_client,
    check_exactly_once,
    describe_patients,
    summary,
    wait_for_count,
)
from tests.support.fleet import PrivatePostgres, private_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TIME_BOUND_S)]


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as cluster:
        yield cluster


def test_postgres_stopped_and_started(
    tmp_path: Path, broker: tuple[str, None], pg: PrivatePostgres
) -> None:
    hospital: Hospital = launch(tmp_path, *broker, pg.create_database("caregraph"))
    try:
        hospital.wait_up()
        stream = Hl7Stream()
        sender = threading.Thread(
            target=stream.send, args=("127.0.0.1", hospital.mllp_port), daemon=True
        )
        sender.start()
        stream.wait_for(len(stream.outcomes) * 3 // 10)
        pg.stop("immediate")  # as a crash: every connection dies at once
        time.sleep(8)
        pg.start()
        sender.join(SEND_S)
        assert not sender.is_alive()
        assert not hospital.fleet.dead(), hospital.fleet.dead()
        with api_client(*hospital.front) as api:
            problems = check_exactly_once(api, stream)
            goldens = wait_for_count(api, "Patient", PATIENTS, _tag=GOLDEN_TAG)
            patients = describe_patients(api) if goldens != PATIENTS else ""
        print(f"PostgreSQL down 8 s: {summary(stream)}")
        assert problems == [], problems[:10]
        assert goldens == PATIENTS, patients
    finally:
        hospital.fleet.stop()
        tails = hospital.fleet.tails()
        if tails:
            print(tails)
