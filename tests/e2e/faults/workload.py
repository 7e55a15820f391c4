"""The fault tests' workload and their pass criterion.

Workload: ``CAREGRAPH_FAULT_MESSAGES`` ORU^R01 vital-sign messages (IHE PCD-01, six
Observations each) from ``devices.feeds.hl7.HospitalFeed``, over MLLP, each with an
effective time of its own (one second apart), sent by a few connections as a real HL7
interface engine sends: one message at a time, waiting for its ACK, and retransmitting the
same bytes (same MSH-10) when the connection breaks, times out or the ACK is an error.

Pass criterion (issue 9): every acknowledged message is present exactly once afterwards (all
six of its Observations, none twice), and every unacknowledged one is either present once
or was refused to its sender; nothing else is stored. Counted through the FHIR API with a
development token.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from devices.feeds.hl7 import VITALS, HospitalFeed
from devices.mllp.client import MllpClient

MESSAGES = int(os.environ.get("CAREGRAPH_FAULT_MESSAGES", "1500"))
# bounds that grow with the workload, so a long run (100,000) is not cut short
SEND_S = 150 + MESSAGES * 0.05
SETTLE_S = 90 + MESSAGES * 0.05
TIME_BOUND_S = 120 + SEND_S + SETTLE_S
PATIENTS = 8
GOLDEN_TAG = "https://caregraph.dev/fhir/CodeSystem/linkage|golden"


def ack_code(ack: bytes) -> str:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", "replace")
    return "?"


@dataclass
class Outcome:
    """One message and what its sender saw."""

    raw: bytes
    effective: datetime
    final: str | None = None  # last ACK code, None if no ACK ever came
    again: bytes | None = None  # with ``twice``: the ACK of the second, identical delivery
    first: bytes | None = None  # the ACK that acknowledged it
    attempts: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.final in ("AA", "CA")


class Hl7Stream:
    """``count`` vitals messages (plus the admissions first), sent by ``connections`` senders
    in parallel; ``done`` counts messages finished (acknowledged or given up)."""

    def __init__(
        self,
        count: int = MESSAGES,
        *,
        connections: int = 2,
        retry_for_s: float = 60.0,
        twice: bool = False,
    ) -> None:
        # seed 1: eight patients whose names differ, so the MPI keeps eight golden records
        self.feed = HospitalFeed(PATIENTS, seed=1, authority_oid="2.16.840.1.113883.3.999.9")
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.admissions = [
            Outcome(self.feed.admission(p, self.start), self.start) for p in self.feed.patients
        ]
        self.outcomes = [
            Outcome(self.feed.vitals(self.feed.patients[i % PATIENTS], when), when)
            for i in range(count)
            for when in [self.start + timedelta(seconds=i + 1)]
        ]
        self.connections = connections
        self.retry_for_s = retry_for_s
        self.twice = twice
        self.done = 0
        self._lock = threading.Lock()
        self.elapsed_s = 0.0

    def send(self, host: str, port: int) -> None:
        """Send everything; returns when every message is acknowledged or given up."""
        t0 = time.monotonic()
        _Sender(host, port, self.retry_for_s).send_all(self.admissions, None)
        shares = [self.outcomes[i :: self.connections] for i in range(self.connections)]
        threads = [
            threading.Thread(
                target=_Sender(host, port, self.retry_for_s, self.twice).send_all,
                args=(share, self),
            )
            for share in shares
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.elapsed_s = time.monotonic() - t0

    def finished_one(self) -> None:
        with self._lock:
            self.done += 1

    def wait_for(self, n: int, timeout_s: float = SEND_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.done < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.done} of {n} messages sent in {timeout_s} s")
            time.sleep(0.05)

    @property
    def acknowledged(self) -> int:
        return sum(o.acknowledged for o in self.outcomes)

    @property
    def retransmissions(self) -> int:
        return sum(o.attempts - 1 for o in self.outcomes if o.attempts > 1)


class _Sender:
    def __init__(self, host: str, port: int, retry_for_s: float, twice: bool = False) -> None:
        self.host, self.port, self.retry_for_s = host, port, retry_for_s
        self.twice = twice  # send every acknowledged message once more, as a sender that
        # did not see the ACK would: same bytes, same MSH-10
        self.client: MllpClient | None = None

    def send_all(self, outcomes: list[Outcome], stream: Hl7Stream | None) -> None:
        try:
            for o in outcomes:
                self._deliver(o)
                if stream is not None:
                    stream.finished_one()
        finally:
            if self.client is not None:
                self.client.close()

    def _deliver(self, o: Outcome) -> None:
        deadline = time.monotonic() + self.retry_for_s
        while True:
            o.attempts += 1
            try:
                if self.client is None:
                    self.client = MllpClient(self.host, self.port, timeout_s=15)
                ack = self.client.send(o.raw)
                o.final = ack_code(ack)
                if o.acknowledged:
                    o.first = ack
                    if self.twice:
                        o.again = self.client.send(o.raw)
                    return
                o.failures.append(o.final)
            except (OSError, ValueError) as exc:
                o.failures.append(type(exc).__name__)
                if self.client is not None:
                    self.client.close()
                self.client = None
            if time.monotonic() > deadline:
                return  # given up: refused to its sender (an error ACK or no ACK at all)
            time.sleep(0.2)


def api_client(data_dir: Path, http_port: int) -> httpx.Client:
    """The FHIR API of the member whose data dir holds the development key."""
    token = mint_development_token(Settings(data_dir=data_dir), "system/*.rs")
    return httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}/fhir",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def count(api: httpx.Client, resource_type: str, **params: str) -> int:
    r = api.get(f"/{resource_type}", params={"_summary": "count", **params})
    r.raise_for_status()
    return int(r.json()["total"])


def describe_patients(api: httpx.Client) -> str:
    """Every Patient in the store, one line each (id, version, identifiers, name, tags, links),
    then the MPI's link history of each golden record: what a failed golden-record count
    needs to be told apart (a second golden record of one person, a source record that
    never joined its golden, a retired golden still tagged). One string, which pytest shows
    whole (a list it cuts after the first item)."""
    r = api.get("/Patient", params={"_count": "200"})
    r.raise_for_status()
    lines = ["", "Patients in the store:"]
    goldens = []
    for entry in r.json().get("entry", []):
        p = entry["resource"]
        meta = p.get("meta", {})
        tags = {f"{t.get('system')}|{t.get('code')}" for t in meta.get("tag", [])}
        if GOLDEN_TAG in tags:
            goldens.append(p["id"])
        lines.append(
            f"{p['id']} v{meta.get('versionId')} {meta.get('lastUpdated')}"
            f" identifier={p.get('identifier')} name={p.get('name')}"
            f" tag={meta.get('tag')} link={p.get('link')} active={p.get('active')}"
        )
    history = str(api.base_url).rstrip("/").removesuffix("/fhir") + "/linkage/history"
    for golden_id in goldens:
        r = api.get(history, params={"golden_id": golden_id})
        lines.append(f"link history of golden {golden_id} ({r.status_code}): {r.text[:2000]}")
    return "\n".join(lines)


def wait_for_count(
    api: httpx.Client, resource_type: str, expected: int, timeout_s: float = 30, **params: str
) -> int:
    """Poll a count until it equals ``expected`` (or the time is up); returns the last."""
    deadline = time.monotonic() + timeout_s
    n = count(api, resource_type, **params)
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        n = count(api, resource_type, **params)
    return n


def wait_until_settled(api: httpx.Client, at_least: int, timeout_s: float = SETTLE_S) -> int:
    """Wait until the Observation count reaches ``at_least`` and then stays put for 3 s
    (anything still in flight would show up as an extra); returns the count."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            n = count(api, "Observation")
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if n != last:
            last, since = n, time.monotonic()
        elif n >= at_least and time.monotonic() - since >= 3:
            return n
        time.sleep(0.5)
    return last


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def stored_per_effective_time(api: httpx.Client) -> Counter[datetime]:
    """Every stored Observation, counted per effective time (one message each)."""
    per: Counter[datetime] = Counter()
    url: str | None = "/Observation"
    params: dict[str, str] | None = {"_count": "1000", "_sort": "_id"}
    while url is not None:
        r = api.get(url, params=params)
        r.raise_for_status()
        bundle = r.json()
        for entry in bundle.get("entry", []):
            per[_instant(entry["resource"]["effectiveDateTime"])] += 1
        url = next((li["url"] for li in bundle.get("link", []) if li["relation"] == "next"), None)
        params = None
    return per


def check_exactly_once(api: httpx.Client, stream: Hl7Stream) -> list[str]:
    """The pass criterion; returns the violations (empty: passed)."""
    per_message = len(VITALS)
    wait_until_settled(api, stream.acknowledged * per_message)
    stored = stored_per_effective_time(api)
    problems = []
    sent = {o.effective for o in stream.outcomes}
    for o in stream.outcomes:
        n = stored.get(o.effective, 0)
        if o.acknowledged and n != per_message:
            problems.append(f"acknowledged message at {o.effective}: {n} Observations stored")
        elif not o.acknowledged and n not in (0, per_message):
            problems.append(f"refused message at {o.effective}: {n} Observations stored")
    for when, n in stored.items():
        if when not in sent:
            problems.append(f"{n} Observations at {when}, which no message carried")
    return problems


def summary(stream: Hl7Stream) -> str:
    refused = [o for o in stream.outcomes if not o.acknowledged]
    return (
        f"{len(stream.outcomes)} messages in {stream.elapsed_s:.1f} s "
        f"({len(stream.outcomes) / max(stream.elapsed_s, 1e-9):.0f} msg/s); "
        f"acknowledged {stream.acknowledged}, refused {len(refused)}, "
        f"retransmissions {stream.retransmissions}"
    )
