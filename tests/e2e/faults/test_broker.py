"""The broker connection cut and restored through a TCP proxy in front of the broker (every
role reaches Kafka only through it): connections reset and refused for a while, then
silently stalled, then let through again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.e2e.faults.conftest import Hospital
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
from tests.support.fleet import Fleet, clean_env
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TIME_BOUND_S)]


def test_broker_connection_cut_and_restored(proxied_hospital: Hospital) -> None:
    """Exactly once across the cut. A role process that exits meanwhile is started again,
    as a container orchestrator's restart policy would (see the test below for why)."""
    hospital = proxied_hospital
    assert hospital.proxy is not None
    stream = Hl7Stream()
    sender = threading.Thread(
        target=stream.send, args=("127.0.0.1", hospital.mllp_port), daemon=True
    )
    sender.start()
    stream.wait_for(len(stream.outcomes) * 3 // 10)
    hospital.proxy.cut()  # connections reset, new ones refused
    time.sleep(8)
    hospital.proxy.restore()
    restarted = hospital.fleet.dead()
    for name in restarted:
        hospital.fleet.restart(name)
    stream.wait_for(len(stream.outcomes) * 6 // 10)
    hospital.proxy.hang()  # connections open, no bytes move: only timeouts notice
    time.sleep(8)
    hospital.proxy.restore()
    for name in hospital.fleet.dead():
        restarted.append(name)
        hospital.fleet.restart(name)
    sender.join(SEND_S)
    assert not sender.is_alive()
    with api_client(*hospital.front) as api:
        problems = check_exactly_once(api, stream)
        goldens = wait_for_count(api, "Patient", PATIENTS, _tag=GOLDEN_TAG)
        patients = describe_patients(api) if goldens != PATIENTS else ""
    print(
        f"broker cut 8 s, then stalled 8 s: {summary(stream)}; proxy refused "
        f"{hospital.proxy.refused} connections; restarted after exiting: {restarted}"
    )
    assert problems == [], problems[:10]
    assert goldens == PATIENTS, patients


def test_consumer_roles_outlive_a_broker_connection_reset(
    tmp_path: Path, proxied_broker: tuple[str, TcpProxy], postgres_url: str
) -> None:
    bootstrap, proxy = proxied_broker
    env = clean_env()
    env.update(
        CAREGRAPH_KAFKA_BOOTSTRAP=bootstrap,
        CAREGRAPH_DATABASE_URL=postgres_url,
        CAREGRAPH_KAFKA_PARTITIONS="2",
    )
    fleet = Fleet(env, tmp_path)
    try:
        for role in ("normalizer", "store-writer", "linkage"):
            fleet.start(role, role)
        for role in fleet.members:
            fleet.wait_http(role)
        time.sleep(3)  # members joined their groups and poll
        proxy.cut()
        time.sleep(5)
        proxy.restore()
        time.sleep(5)
        assert fleet.dead() == []
    finally:
        fleet.stop()
