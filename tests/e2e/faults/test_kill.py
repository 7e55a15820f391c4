"""``kill -9`` of each role mid-stream, then a restart: nothing acknowledged is lost, nothing
is stored twice.

One stream, one fleet (five processes, one per role): the MLLP gateway is killed at 30 % of
the messages, the normalizer at 45 %, the store writer at 60 % and the linkage service at
75 %, each restarted two seconds later. One fleet instead of one per role keeps the test
within its time bound on two cores; the violations it reports name the messages, and the
logs name the role.
"""

from __future__ import annotations

import threading
import time

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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TIME_BOUND_S)]

KILLS = (("mllp", 0.30), ("normalizer", 0.45), ("store-writer", 0.60), ("linkage", 0.75))


def test_kill_9_each_role_mid_stream_and_restart(hospital: Hospital) -> None:
    stream = Hl7Stream()
    sender = threading.Thread(
        target=stream.send, args=("127.0.0.1", hospital.mllp_port), daemon=True
    )
    sender.start()
    for role, at in KILLS:
        stream.wait_for(int(len(stream.outcomes) * at))
        hospital.fleet.kill9(role)
        time.sleep(2)
        hospital.fleet.restart(role)
    sender.join(SEND_S)
    assert not sender.is_alive()
    assert not hospital.fleet.dead(), hospital.fleet.dead()
    with api_client(*hospital.front) as api:
        problems = check_exactly_once(api, stream)
        goldens = wait_for_count(api, "Patient", PATIENTS, _tag=GOLDEN_TAG)
        patients = describe_patients(api) if goldens != PATIENTS else ""
    print(f"kill -9 of each role: {summary(stream)}")
    assert problems == [], problems[:10]
    assert goldens == PATIENTS, patients  # one golden record per patient, none lost, none doubled
    assert stream.retransmissions > 0  # the sender saw the gateway die and sent again
