"""The hash-chained audit log: intact chains verify; edits, deletions and reordering show."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from caregraph.errors import StoreError
from fhir_store.database import open_database
from security.audit_log import ChainedAuditLog
from tests.integration.security.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


def test_chain_detects_tampering(db_url: str) -> None:
    db = open_database(db_url)
    written: list[dict[str, Any]] = []
    log = ChainedAuditLog(db, written.extend)
    try:
        for n in range(4):
            log({"resourceType": "AuditEvent", "id": f"e{n}", "outcomeDesc": f"event {n}"})
        assert log.verify(written) == []
        assert log.verify(reversed(written)) == []  # order of delivery does not matter

        edited = copy.deepcopy(written)
        edited[1]["outcomeDesc"] = "nothing to see"
        assert log.verify(edited) == ["event 2 (AuditEvent/e1) was altered"]

        assert log.verify(written[:2] + written[3:]) == ["event 3 is missing"]
        assert log.verify(written[:3]) == ["event 4 is missing"]  # the table knows the tail

        # re-chaining an edited event by hand does not match the recorded chain
        forged = copy.deepcopy(written)
        forged[3]["outcomeDesc"] = "forged"
        problems = log.verify(forged)
        assert "event 4 (AuditEvent/e3) was altered" in problems
        # the store's meta (version, lastUpdated) is not part of the hash
        with_meta = [{**e, "meta": {"versionId": "2"}} for e in written]
        assert log.verify(with_meta) == []
    finally:
        db.close()


def test_every_api_access_is_audited_in_one_chain(api: Api) -> None:
    token = api.token("user/*.rs", fhir_user="Practitioner/p1")
    with httpx.Client(base_url=api.base, headers=token) as c:
        assert c.get("/fhir/Observation/obs-b").status_code == 200
        assert c.get("/fhir/Observation/missing").status_code == 404
        assert c.post("/fhir/Observation", json={"resourceType": "Observation"}).status_code == 403
        assert c.get("/app/").status_code == 200  # the console shell: no patient data
    deadline = time.monotonic() + 5
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = api.audit_events()
        if len(events) >= 3:
            break
        time.sleep(0.05)
    outcomes = sorted((e["entity"][-1].get("description"), e["outcome"]) for e in events)
    assert outcomes == [
        ("/fhir/Observation/missing", "4"),
        ("/fhir/Observation/obs-b", "0"),
        ("POST /fhir/Observation", "4"),
    ]
    assert all(e["agent"][0]["who"] == {"reference": "Practitioner/p1"} for e in events)
    log = ChainedAuditLog(api.store.db, lambda events: None)
    assert log.verify(events) == []
    # an audit reader sees them through the API too
    audit_token = api.token("user/AuditEvent.rs")
    found = httpx.get(f"{api.base}/fhir/AuditEvent", headers=audit_token).json()
    assert len(found["entry"]) >= 3


def test_caregraph_audit_verify(api: Api) -> None:
    token = api.token("user/*.rs")
    for _ in range(2):
        assert httpx.get(f"{api.base}/fhir/Patient/a1", headers=token).status_code == 200
    deadline = time.monotonic() + 5
    while len(api.audit_events()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    command = [sys.executable, "-m", "caregraph.cli", "audit", "verify"]
    data = ["--data-dir", str(api.settings.data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    intact = subprocess.run(
        [*command, *data], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout
    event = api.audit_events()[0]
    api.store.update("AuditEvent", event["id"], {**event, "outcome": "8"})
    broken = subprocess.run(
        [*command, *data], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert broken.returncode == 1
    assert "was altered" in broken.stderr


def test_concurrent_callers_share_groups_and_the_chain_stays_whole(db_url: str) -> None:
    db = open_database(db_url)
    written: list[dict[str, Any]] = []
    groups: list[int] = []
    gate = threading.Event()

    def write(events: list[dict[str, Any]]) -> None:
        gate.wait(5)  # the first group is slow to write: the other callers queue meanwhile
        groups.append(len(events))
        written.extend(events)

    log = ChainedAuditLog(db, write)

    def caller(k: int) -> None:
        for n in range(5):
            log({"resourceType": "AuditEvent", "id": f"e{k}-{n}", "outcomeDesc": f"{k}/{n}"})

    try:
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        gate.set()
        for t in threads:
            t.join(30)
        assert sorted(e["id"] for e in written) == sorted(
            f"e{k}-{n}" for k in range(8) for n in range(5)
        )
        assert log.verify(written) == []
        assert sum(groups) == 40 and max(groups) > 1  # some callers were written together
    finally:
        db.close()


def test_a_failed_group_fails_each_of_its_callers_and_the_next_group_writes(db_url: str) -> None:
    db = open_database(db_url)
    written: list[dict[str, Any]] = []
    failing = [True]

    def write(events: list[dict[str, Any]]) -> None:
        if failing[0]:
            raise OSError("disk full")
        written.extend(events)

    log = ChainedAuditLog(db, write)
    try:
        with pytest.raises(StoreError, match="disk full"):
            log({"resourceType": "AuditEvent", "id": "lost", "outcomeDesc": "x"})
        failing[0] = False
        log({"resourceType": "AuditEvent", "id": "kept", "outcomeDesc": "y"})
        assert [e["id"] for e in written] == ["kept"]
        # the chain recorded the lost event, and says so
        assert log.verify(written) == ["event 1 is missing"]
    finally:
        db.close()


def test_an_interrupt_while_writing_is_not_taken_for_success(db_url: str) -> None:
    class Interrupted(BaseException):
        pass

    db = open_database(db_url)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def write(events: list[dict[str, Any]]) -> None:
        calls.append(len(events))
        if len(calls) == 1:  # the first group holds the turn while two more callers queue
            started.set()
            release.wait(5)
        else:
            raise Interrupted

    log = ChainedAuditLog(db, write)
    outcomes: dict[str, BaseException | None] = {}

    def caller(name: str) -> None:
        try:
            log({"resourceType": "AuditEvent", "id": name, "outcomeDesc": name})
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    try:
        threads = [threading.Thread(target=caller, args=(name,)) for name in ("a", "b", "c")]
        threads[0].start()
        assert started.wait(5)
        threads[1].start()
        threads[2].start()
        time.sleep(0.3)  # b and c queue behind the first group
        release.set()
        for t in threads:
            t.join(10)
        assert calls == [1, 2]
        assert outcomes["a"] is None
        # the second group's writer hears the interrupt itself, unwrapped; the other caller
        # of that group hears that its event was not written, never that it was
        kinds = sorted(type(outcomes[name]).__name__ for name in ("b", "c"))
        assert kinds == ["Interrupted", "StoreError"]
    finally:
        db.close()
