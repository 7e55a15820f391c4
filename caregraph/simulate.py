"""``caregraph simulate --beds N``: a hospital's traffic against caregraph, and what it sustains.

Sources, each at a realistic rate and over the real wire protocols:

- a bedside monitor per bed, 1 Hz, ten vital-sign parameters per reading, reaching caregraph
  as an IHE PCD-01 ORU^R01 through its ward's device gateway (one MLLP connection per
  ``beds_per_gateway`` beds, each sending one message at a time and waiting for its ACK, as
  MLLP senders do). Each monitor keeps its own phase within the second (bed k of n at k/n
  s), as free-running monitors do; a gateway does not hold its ward's readings back to send
  them in one burst. This is how a ward's monitors reach an integration engine in a
  hospital (a vendor gateway in front of the monitors); the byte-accurate serial simulators
  on pseudo-terminals (``devices/simulators``) cost a pty and a driver thread each, which is
  what ``bench/serial.py --part fleet`` measures for tens of devices, not thousands;
- an HIS: an ADT^A01 per bed before the run (the patients the monitors report on), then ADT
  traffic at ``adt_per_bed_day`` messages per bed per day;
- a modality (CT): one study per ``studies_per_bed_day`` per bed per day, sent by C-STORE.

Figures, from what a client sees:

- Observations/s sustained: the store's own count (``GET /fhir/Observation?_summary=count``)
  at the start and end of the measuring window, after a warm-up;
- latency from device frame to searchable resource, sampled: for a few messages per
  second the sender notes the monotonic time just before the frame goes on the wire and the
  ids of the Observations that message must become (computed with the same pure mapping
  the normalizer runs), and a probe searches ``Observation?_id=...`` every ``probe_s`` until
  all of them are found; the resolution is ``probe_s`` plus one search;
- resident memory and CPU of the caregraph processes, from ``/proc``: VmRSS, and beside it
  RssAnon (the heap: Python objects, SQLite page caches, allocator slack), which is what a
  leak grows, and RssFile (code, and the SQLite store's memory-mapped file), which follows
  the database file's size and what was read of it lately and which the kernel reclaims
  under pressure; flatness is the RssAnon slope over the second half of the window (the
  first minutes fill bounded caches: SQLite's page caches and prepared statements of the
  pooled connections, the memos of the mapping and the indexer, the in-memory part of
  the MLLP ACK cache); per process, memory is shown at the window's start, middle and end;
- consumer lag per group: from the embedded bus's log or from Kafka (``KafkaLag``).

caregraph runs in child processes (``caregraph up``), not in this one, by default: the
load generator must neither share caregraph's interpreter lock nor count in its memory and
CPU. ``split=True`` runs one process per role group (gateways, normalizer, store writer,
linkage) as a deployment on one machine would; ``attach`` drives a caregraph that is
already running on the configured settings (its pids given for memory figures).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from adapters.hl7v2 import normalize
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from devices.feeds.hl7 import HospitalFeed, SimPatient
from devices.mllp.client import MllpClient

log = logging.getLogger(__name__)

Echo = Callable[[str], None]

# (MDC code, reference id, MDC unit, unit reference id, mean, amplitude, decimals): the ten
# parameters of a multi-parameter ICU monitor, codes as in IEEE 11073-10101.
MONITOR_PARAMETERS: tuple[tuple[int, str, int, str, float, float, int], ...] = (
    (147842, "MDC_ECG_HEART_RATE", 264864, "MDC_DIM_BEAT_PER_MIN", 78, 12, 0),
    (150456, "MDC_PULS_OXIM_SAT_O2", 262688, "MDC_DIM_PERCENT", 96, 2, 0),
    (149530, "MDC_PULS_OXIM_PULS_RATE", 264864, "MDC_DIM_BEAT_PER_MIN", 78, 12, 0),
    (151562, "MDC_RESP_RATE", 264928, "MDC_DIM_RESP_PER_MIN", 16, 3, 0),
    (150021, "MDC_PRESS_BLD_NONINV_SYS", 266016, "MDC_DIM_MMHG", 122, 10, 0),
    (150022, "MDC_PRESS_BLD_NONINV_DIA", 266016, "MDC_DIM_MMHG", 78, 6, 0),
    (150023, "MDC_PRESS_BLD_NONINV_MEAN", 266016, "MDC_DIM_MMHG", 93, 7, 0),
    (150364, "MDC_TEMP_BODY", 268192, "MDC_DIM_DEGC", 37.0, 0.4, 1),
    (151708, "MDC_AWAY_CO2_ET", 266016, "MDC_DIM_MMHG", 38, 3, 0),
    (150488, "MDC_BLD_PERF_INDEX", 262688, "MDC_DIM_PERCENT", 2.1, 0.6, 1),
)


@dataclass(frozen=True)
class Plan:
    """What to simulate and for how long."""

    beds: int
    seconds: float = 60.0
    warmup_s: float = 10.0
    beds_per_gateway: int = 25
    samples_per_s: float = 5.0
    probe_s: float = 0.1
    adt_per_bed_day: float = 20.0
    studies_per_bed_day: float = 1.5
    progress_s: float = 5.0
    drain_s: float = 60.0
    seed: int = 1


class Hospital(HospitalFeed):
    """The simulated hospital's patients, ADT, and each bed's monitor results (PCD-01)."""

    def monitor_result(self, p: SimPatient, when: datetime, control_id: str) -> bytes:
        """ORU^R01 (IHE PCD-01): the monitor's hierarchy and its ten parameters at ``when``
        (millisecond precision), under the gateway's own ``control_id`` (MSH-10)."""
        ts = when.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"
        eui = f"{p.monitor_eui64}^EUI-64"
        t = when.timestamp() / 60.0 + p.phase
        segments = [
            f"MSH|^~\\&|MONITOR_GW^{p.monitor_eui64}^EUI-64|{self.facility}|CAREGRAPH|"
            f"{self.facility}|{ts}||ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|||"
            "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
            self._pid(p),
            self._pv1(p),
            f"OBR|1|{control_id}^MONITOR_GW|{control_id}^MONITOR_GW|"
            f"182777000^monitoring of patient^SCT|||{ts}",
            f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||{eui}",
            f"OBX|2||69798^MDC_DEV_METER_PHYSIO_MULTI_PARAM_VMD^MDC|1.1.0.0|||||||X|||||||{eui}",
        ]
        for n, (code, ref, unit, unit_ref, mean, amp, digits) in enumerate(
            MONITOR_PARAMETERS, start=3
        ):
            value = round(mean + amp * math.sin(t + n), digits)
            segments.append(
                f"OBX|{n}|NM|{code}^{ref}^MDC|1.1.1.{n - 2}|{value:.{digits}f}|"
                f"{unit}^{unit_ref}^MDC|||||R|||{ts}||||{eui}"
            )
        return ("\r".join(segments) + "\r").encode()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK (AA, AE, AR, CA, ...), or ``?`` when there is no MSA."""
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", "replace")
    return "?"


# -- the caregraph under test ---------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CAREGRAPH_*`` variables that make a child ``caregraph up`` use ``settings``."""
    env = {
        "CAREGRAPH_DATA_DIR": str(settings.data_dir),
        "CAREGRAPH_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "CAREGRAPH_HTTP_HOST": settings.http_host,
        "CAREGRAPH_HTTP_PORT": str(settings.http_port),
        "CAREGRAPH_MLLP_PORT": str(settings.mllp_port),
        "CAREGRAPH_DICOM_PORT": str(settings.dicom_port),
        "CAREGRAPH_DICOM_AE": settings.dicom_ae,
        "CAREGRAPH_MLLP_HOLD_BACKLOG": str(settings.mllp_hold_backlog),
    }
    if settings.database_url:
        env["CAREGRAPH_DATABASE_URL"] = settings.database_url
    if settings.kafka_bootstrap:
        env["CAREGRAPH_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    return env


# One process per group of roles when split; the gateways share one process with the api.
SPLIT_PROCESSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gateway", ("api", "mllp", "dicom")),
    ("normalizer", ("normalizer",)),
    ("store-writer", ("store-writer",)),
    ("linkage", ("linkage",)),
)


@dataclass(frozen=True)
class ProcessMemory:
    """One process's resident memory, from ``/proc/<pid>/status`` (bytes)."""

    name: str
    pid: int
    rss: int
    anon: int  # RssAnon: heap, what a leak grows
    file: int  # RssFile: code and mapped files (the SQLite store's mmap), reclaimable
    #: Of ``anon``, SQLite's page caches and statements (bounded by each connection's
    #: ``cache_size``), as the process's ``/metrics`` says; 0 when not read.
    sqlite: int = 0

    @classmethod
    def read(cls, name: str, pid: int, metrics_url: str | None = None) -> ProcessMemory:
        """Zeros for a process that is gone (its figures are then meaningless, not absent)."""
        fields = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] = int(value.split()[0]) * 1024
        sqlite = 0
        if metrics_url is not None:
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(metrics_url, timeout=5).text
                sqlite = int(metric_value(text, 'caregraph_memory_bytes{kind="sqlite"}') or 0)
        return cls(name, pid, fields["VmRSS"], fields["RssAnon"], fields["RssFile"], sqlite)


def metric_value(exposition: str, series: str) -> float | None:
    """The value of one series (name and labels as Prometheus writes them) in a text
    exposition, or None when it is absent."""
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def slope_per_min(series: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of ``(seconds, bytes)`` samples, in bytes per minute; NaN for
    fewer than two distinct times."""
    n = len(series)
    if n < 2:
        return math.nan
    mean_t = sum(t for t, _ in series) / n
    mean_v = sum(v for _, v in series) / n
    var = sum((t - mean_t) ** 2 for t, _ in series)
    if var == 0:
        return math.nan
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in series) / var


@dataclass
class Deployment:
    """The caregraph processes being measured (started here, or already running)."""

    pids: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # beside ``pids``; the pid when empty
    metrics_urls: list[str] = field(default_factory=list)  # beside ``pids``, if known

    @classmethod
    def spawn(cls, settings: Settings, *, split: bool, log_dir: Path) -> Deployment:
        """Start ``caregraph up`` (all roles but serial: no serial port is simulated) in one
        child process, or one per role group when ``split``; logs go to ``log_dir``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
        base.update(settings_env(settings))
        groups = (
            SPLIT_PROCESSES
            if split
            else (("caregraph", ("api", "mllp", "dicom", "normalizer", "store-writer", "linkage")),)
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        dep = cls(pids=[])
        for name, roles in groups:
            env = dict(base)
            if "api" not in roles:  # its probes and /metrics need a port of their own
                env["CAREGRAPH_HTTP_PORT"] = str(_free_port())
            dep.metrics_urls.append(
                f"http://{settings.http_host}:{env['CAREGRAPH_HTTP_PORT']}/metrics"
            )
            out = (log_dir / f"{name}.log").open("wb")
            dep.logs.append(out)
            args = [arg for role in roles for arg in ("--role", role)]
            proc = subprocess.Popen(
                [sys.executable, "-m", "caregraph.cli", "up", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            dep.procs.append(proc)
            dep.pids.append(proc.pid)
            dep.names.append(name)
        return dep

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"caregraph process {proc.pid} exited with {proc.returncode}")

    def memory(self) -> list[ProcessMemory]:
        """Resident memory of each process, in the order of ``pids``."""
        names = self.names if len(self.names) == len(self.pids) else [str(p) for p in self.pids]
        urls: list[str | None] = [None] * len(self.pids)
        if len(self.metrics_urls) == len(self.pids):
            urls = list(self.metrics_urls)
        return [
            ProcessMemory.read(name, pid, url)
            for name, pid, url in zip(names, self.pids, urls, strict=True)
        ]

    def rss_bytes(self) -> int:
        """Resident memory of all the processes (VmRSS), 0 for a process that is gone."""
        return sum(m.rss for m in self.memory())

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far by all the processes."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for out in self.logs:
            out.close()


def wait_ready(settings: Settings, deployment: Deployment | None, timeout_s: float = 120) -> None:
    """Wait until the api answers ``/readyz`` with 200 and the MLLP port accepts."""
    import socket

    base = f"http://{settings.http_host}:{settings.http_port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if deployment is not None:
            deployment.check_alive()
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                with socket.create_connection((settings.http_host, settings.mllp_port), 1):
                    return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"caregraph at {base} not ready after {timeout_s:.0f} s")


# -- consumer lag ---------------------------------------------------------------------


def embedded_lag(data_dir: Path) -> dict[str, int]:
    """Per consumer group, messages not yet committed, read from the embedded bus's log."""
    from bus.embedded import DB_NAME

    path = data_dir / "bus" / DB_NAME
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        out: dict[str, int] = {}
        rows = conn.execute("SELECT grp, topic_id, part, off FROM offsets").fetchall()
        for grp, topic_id, part, off in rows:
            (end,) = conn.execute(
                "SELECT COALESCE(MAX(off) + 1, 0) FROM messages WHERE topic_id = ? AND part = ?",
                (topic_id, part),
            ).fetchone()
            out[grp] = out.get(grp, 0) + max(0, int(end) - int(off))
        return out
    finally:
        conn.close()


def lag_reader(settings: Settings) -> Callable[[], dict[str, int]]:
    """A function that returns the lag per consumer group of the bus in ``settings``."""
    if not settings.kafka_bootstrap:
        data_dir = settings.data_dir
        return lambda: embedded_lag(data_dir)
    from bus.topics import RAW_DICOM, RAW_HL7V2, fhir_topic
    from fhir_store.searchparams import default_registry
    from observability.lag import KafkaLag

    groups = {
        "normalizer-hl7v2": [RAW_HL7V2],
        "normalizer-dicom": [RAW_DICOM],
        "store-writer": [fhir_topic(t) for t in default_registry().types],
    }
    source = KafkaLag(settings.kafka_bootstrap, groups, ttl_s=1.0)

    def read() -> dict[str, int]:
        out: dict[str, int] = {}
        for s in source():
            out[s.group] = out.get(s.group, 0) + s.lag
        return out

    return read


# -- the sources ----------------------------------------------------------------------


@dataclass
class Tally:
    """What the sources did; updated under ``lock`` by several threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    ack_latency_s: list[float] = field(default_factory=list)
    errors: int = 0
    adt: int = 0
    dicom_status: dict[int, int] = field(default_factory=dict)
    behind_s: float = 0.0  # how late the slowest gateway was on its 1 Hz schedule

    def acked(self, code: str, latency_s: float) -> None:
        with self.lock:
            self.sent += 1
            self.acks[code] = self.acks.get(code, 0) + 1
            if len(self.ack_latency_s) < 2_000_000:
                self.ack_latency_s.append(latency_s)


#: A pending sample is searched again after ``interval_s`` or this share of its age,
#: whichever is longer: the resolution stays ``interval_s`` for latencies up to ten times
#: that, and a pipeline seconds behind is not also searched for every pending sample ten
#: times a second (at 1,000 beds and 30 s behind that was ~150 searches a second, a tenth
#: of caregraph's interpreter time, spent on measuring).
RESOLUTION_SHARE = 0.1
#: A sample not searchable this long after its frame is given up on and counted at this.
LOST_AFTER_S = 120.0


class Probe:
    """Latency from frame to searchable: each pending sample searched every ``interval_s``
    or ``RESOLUTION_SHARE`` of its age, whichever is longer."""

    def __init__(self, client: httpx.Client, interval_s: float) -> None:
        self._client = client
        self._interval_s = interval_s
        self._lock = threading.Lock()
        # ids -> (emitted, when to search for them next)
        self._pending: dict[tuple[str, ...], tuple[float, float]] = {}
        self.latencies_s: list[float] = []
        self.lost = 0  # not searchable within LOST_AFTER_S
        self.recording = False
        self.censored = 0  # still not searchable when the window closed

    def close_window(self) -> None:
        """Stop recording; samples still pending count with their age so far, a lower
        bound of their latency (leaving them out would flatter a saturated pipeline)."""
        now = time.monotonic()
        with self._lock:
            self.recording = False
            for emitted, _ in self._pending.values():
                self.latencies_s.append(now - emitted)
                self.censored += 1
            self._pending.clear()

    def add(self, ids: tuple[str, ...], emitted: float) -> None:
        with self._lock:
            self._pending[ids] = (emitted, emitted)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval_s):
            self.poll_once()

    def poll_once(self) -> None:
        started = time.monotonic()
        with self._lock:
            pending = {
                ids: emitted for ids, (emitted, due) in self._pending.items() if due <= started
            }
        if not pending:
            return
        wanted = sorted({i for ids in pending for i in ids})
        found: set[str] = set()
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            try:
                r = self._client.get(
                    "/Observation",
                    params={"_id": ",".join(chunk), "_elements": "id", "_count": str(len(chunk))},
                )
                r.raise_for_status()
                entries = r.json().get("entry", [])
            except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body not JSON
                log.warning("probe: %s", exc)
                return
            found.update(e["resource"]["id"] for e in entries)
        now = time.monotonic()
        with self._lock:
            for ids, emitted in pending.items():
                if ids not in self._pending:  # counted by close_window during the search
                    continue
                if all(i in found for i in ids):
                    del self._pending[ids]
                    if self.recording:
                        self.latencies_s.append(now - emitted)
                elif now - emitted > LOST_AFTER_S:  # given up on (a lower bound)
                    del self._pending[ids]
                    self.lost += 1
                    if self.recording:
                        self.latencies_s.append(now - emitted)
                else:
                    wait = max(self._interval_s, RESOLUTION_SHARE * (now - emitted))
                    # searched once more just after LOST_AFTER_S, so it counts at that
                    self._pending[ids] = (emitted, min(started + wait, emitted + LOST_AFTER_S))


class WardGateway:
    """A ward's device gateway: each of its beds' monitors reports once a second.

    Its latency samples are taken by time, the first message sent once ``sample_period_s``
    has passed since the last sample (the first after ``first_sample_s``): counted in
    messages, a gateway that caregraph slows down (``caregraph.backpressure``) took
    fewer samples than planned, at 1,000 beds none in a minute.
    """

    def __init__(
        self,
        name: str,
        hospital: Hospital,
        beds: Sequence[SimPatient],
        settings: Settings,
        tally: Tally,
        probe: Probe,
        sample_period_s: float,
        first_sample_s: float = 0.0,
    ) -> None:
        self.name = name
        self._hospital = hospital
        self._beds = list(beds)
        self._settings = settings
        self._tally = tally
        self._probe = probe
        self._sample_period_s = sample_period_s
        self._first_sample_s = first_sample_s
        self._seq = 0

    def _observation_ids(self, raw: bytes) -> tuple[str, ...]:
        result = normalize(raw, received_at=datetime.now(UTC))
        return tuple(r["id"] for r in result.resources if r["resourceType"] == "Observation")

    def run(self, stop: threading.Event) -> None:
        client: MllpClient | None = None
        next_tick = time.monotonic()
        spread = 1.0 / max(1, len(self._beds))
        next_sample = next_tick + self._first_sample_s
        try:
            while not stop.is_set():
                for k, p in enumerate(self._beds):
                    # bed k reports at its own phase in the second (see the module docstring)
                    early = next_tick + k * spread - time.monotonic()
                    if early > 0:
                        stop.wait(early)
                    if stop.is_set():
                        return
                    self._seq += 1
                    control_id = f"{self.name}{self._seq:09d}"
                    raw = self._hospital.monitor_result(p, datetime.now(UTC), control_id)
                    sample = time.monotonic() >= next_sample
                    if sample:
                        next_sample = time.monotonic() + self._sample_period_s
                    ids = self._observation_ids(raw) if sample else ()
                    while client is None and not stop.is_set():
                        try:
                            client = MllpClient(
                                self._settings.http_host, self._settings.mllp_port, timeout_s=30
                            )
                        except OSError:
                            stop.wait(0.5)
                    if client is None:
                        return
                    emitted = time.monotonic()
                    try:
                        ack = client.send(raw)
                    except (OSError, ValueError) as exc:
                        log.warning("%s: %s; reconnecting", self.name, exc)
                        with self._tally.lock:
                            self._tally.errors += 1
                        client.close()
                        client = None
                        continue
                    self._tally.acked(ack_code(ack), time.monotonic() - emitted)
                    if sample:
                        self._probe.add(ids, emitted)
                next_tick += 1.0
                late = time.monotonic() - next_tick
                if late > 0:
                    with self._tally.lock:
                        self._tally.behind_s = max(self._tally.behind_s, late)
                    if late > 5:  # a monitor does not replay missed seconds
                        next_tick = time.monotonic()
                else:
                    stop.wait(-late)
        finally:
            if client is not None:
                client.close()


def send_admissions(hospital: Hospital, settings: Settings, tally: Tally) -> None:
    """ADT^A01 for every bed's patient, over one connection (before the monitors start)."""
    now = datetime.now(UTC)
    with MllpClient(settings.http_host, settings.mllp_port) as client:
        for p in hospital.patients:
            code = ack_code(client.send(hospital.admission(p, now)))
            with tally.lock:
                tally.adt += 1
                tally.acks[code] = tally.acks.get(code, 0) + 1


def his(
    hospital: Hospital, settings: Settings, tally: Tally, per_s: float, seed: int
) -> Callable[[threading.Event], None]:
    """The HIS's ongoing ADT traffic: updates of random patients, Poisson at ``per_s``."""
    rng = random.Random(seed)

    def run(stop: threading.Event) -> None:
        while not stop.wait(rng.expovariate(per_s) if per_s > 0 else 3600):
            p = rng.choice(hospital.patients)
            try:
                with MllpClient(settings.http_host, settings.mllp_port) as client:
                    code = ack_code(client.send(hospital.admission(p, datetime.now(UTC))))
            except (OSError, ValueError) as exc:
                log.warning("HIS: %s", exc)
                continue
            with tally.lock:
                tally.adt += 1
                tally.acks[code] = tally.acks.get(code, 0) + 1

    return run


def modality(
    hospital: Hospital, settings: Settings, tally: Tally, per_s: float, seed: int
) -> Callable[[threading.Event], None]:
    """A CT: a one-image study of a random patient, Poisson at ``per_s``; the first at once."""
    from devices.feeds.modality import PatientLabel, relabel, send

    rng = random.Random(seed)

    def run(stop: threading.Event) -> None:
        n = 0
        delay = 0.0
        while not stop.wait(delay):
            delay = rng.expovariate(per_s) if per_s > 0 else 3600
            p = rng.choice(hospital.patients)
            label = PatientLabel(
                p.mrn, hospital.authority_oid, p.family, p.given, p.birth_date, p.sex
            )
            n += 1
            ds = relabel("CT_small.dcm", label, f"sim-{seed}-{n}")
            try:
                statuses = send(settings.http_host, settings.dicom_port, settings.dicom_ae, [ds])
            except ConnectionError as exc:
                log.warning("modality: %s", exc)
                continue
            with tally.lock:
                for s in statuses:
                    tally.dicom_status[s] = tally.dicom_status.get(s, 0) + 1

    return run


# -- the run ----------------------------------------------------------------------------


@dataclass
class Report:
    """The figures of one run."""

    beds: int
    window_s: float
    offered_msgs_per_s: float
    stored_obs_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    latency_max_s: float
    latency_samples: int
    latency_lost: int
    latency_censored: int
    ack_p50_s: float
    ack_p99_s: float
    acks: dict[str, int]
    send_errors: int
    adt: int
    dicom_status: dict[int, int]
    rss_start_bytes: int
    rss_end_bytes: int
    rss_max_bytes: int
    rss_series: list[tuple[float, int]]
    cpu_cores: float
    lag_end: dict[str, int]
    lag_max: dict[str, int]
    behind_s: float
    drained_s: float | None
    expected_obs: int
    stored_obs: int
    anon_start_bytes: int = 0
    anon_end_bytes: int = 0
    # (seconds into the window, RssAnon of all the processes) at each progress line
    anon_series: list[tuple[float, int]] = field(default_factory=list)
    # the same, less SQLite's share (``ProcessMemory.sqlite``): what is left for a leak
    heap_series: list[tuple[float, int]] = field(default_factory=list)
    processes_start: list[ProcessMemory] = field(default_factory=list)
    processes_end: list[ProcessMemory] = field(default_factory=list)
    processes_mid: list[ProcessMemory] = field(default_factory=list)  # at half the window
    load_avg: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # at the window's end

    @property
    def anon_slope_bytes_per_min(self) -> float:
        """RssAnon growth over the second half of the window: ~0 when memory is flat (the
        first half is left out, where bounded caches are still filling)."""
        half = self.window_s / 2
        return slope_per_min([(t, v) for t, v in self.anon_series if t >= half])

    @property
    def heap_slope_bytes_per_min(self) -> float:
        """``anon_slope_bytes_per_min`` without SQLite's caches, which grow with the store
        up to their bound."""
        half = self.window_s / 2
        return slope_per_min([(t, v) for t, v in self.heap_series if t >= half])

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        file_start = sum(m.file for m in self.processes_start)
        file_end = sum(m.file for m in self.processes_end)
        sqlite_start = sum(m.sqlite for m in self.processes_start)
        sqlite_end = sum(m.sqlite for m in self.processes_end)
        points = [self.processes_start, self.processes_end]
        if self.processes_mid:  # read at half the window
            points.insert(1, self.processes_mid)
        per_process = "; ".join(
            f"{ms[-1].name} {' -> '.join(f'{m.rss / mib:.0f}' for m in ms)}"
            f" (anon {' -> '.join(f'{m.anon / mib:.0f}' for m in ms)})"
            for ms in zip(*points, strict=False)
        )
        target = self.beds * len(MONITOR_PARAMETERS)
        drained = (
            f"all {self.expected_obs:,} searchable {self.drained_s:.1f} s after the sources stopped"
            if self.drained_s is not None
            else f"NOT drained: {self.stored_obs:,} of {self.expected_obs:,} searchable"
        )
        return [
            f"beds {self.beds} (target {target:,} Observations/s), window {self.window_s:.0f} s",
            f"  offered      {self.offered_msgs_per_s:8.1f} ORU/s "
            f"= {self.offered_msgs_per_s * len(MONITOR_PARAMETERS):,.0f} Observations/s "
            f"(gateways up to {self.behind_s:.1f} s behind their 1 Hz schedule)",
            f"  stored       {self.stored_obs_per_s:8.0f} Observations/s searchable (sustained)",
            f"  frame -> searchable  p50 {self.latency_p50_s:.3f} s  p99 {self.latency_p99_s:.3f} s"
            f"  max {self.latency_max_s:.3f} s  ({self.latency_samples} samples, "
            f"{self.latency_censored} still pending at the end, counted at their age; "
            f"{self.latency_lost} not found in {LOST_AFTER_S:.0f} s, counted at that)",
            f"  ACK latency  p50 {self.ack_p50_s * 1e3:.1f} ms  p99 {self.ack_p99_s * 1e3:.1f} ms;"
            f" ACKs {self.acks}; send errors {self.send_errors}; ADT {self.adt};"
            f" DICOM statuses {self.dicom_status}",
            f"  memory (RSS of caregraph) start {self.rss_start_bytes / mib:.0f} MiB, end "
            f"{self.rss_end_bytes / mib:.0f} MiB, max {self.rss_max_bytes / mib:.0f} MiB; "
            f"CPU {self.cpu_cores:.2f} cores",
            f"    anon (heap) start {self.anon_start_bytes / mib:.0f} MiB, end "
            f"{self.anon_end_bytes / mib:.0f} MiB, second half of the window "
            f"{self.anon_slope_bytes_per_min / mib:+.1f} MiB/min; file-backed (code, SQLite"
            f" mmap; reclaimable) start {file_start / mib:.0f} MiB, end {file_end / mib:.0f} MiB",
            *(
                [
                    f"    of the heap, SQLite's caches and statements start"
                    f" {sqlite_start / mib:.0f} MiB, end {sqlite_end / mib:.0f} MiB; the heap"
                    f" without them {self.heap_slope_bytes_per_min / mib:+.1f} MiB/min over"
                    " the second half"
                ]
                if sqlite_end
                else []
            ),
            f"    per process, MiB: {per_process}",
            f"  consumer lag at end {self.lag_end}; max {self.lag_max}",
            f"  {drained}",
            "  load average at the window's end "
            + " ".join(f"{v:.2f}" for v in self.load_avg)
            + f" ({os.cpu_count()} cores; the sources in this process count in it)",
        ]


def run_simulation(
    settings: Settings,
    plan: Plan,
    *,
    deployment: Deployment | None = None,
    echo: Echo = print,
) -> Report:
    """Drive the sources against the caregraph at ``settings`` (already running and
    ready); measure over ``plan.seconds`` after ``plan.warmup_s``."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a line per C-STORE otherwise
    hospital = Hospital(
        plan.beds, seed=plan.seed, authority_oid=f"2.16.840.1.113883.3.999.{plan.seed}"
    )
    token = mint_development_token(settings, "system/*.rs", subject="caregraph-simulate")

    def client() -> httpx.Client:
        return httpx.Client(
            base_url=f"http://{settings.http_host}:{settings.http_port}/fhir",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    # one client per thread that uses one: the probe's and this loop's requests overlap
    api, probe_api = client(), client()
    lag = lag_reader(settings)
    tally = Tally()
    probe = Probe(probe_api, plan.probe_s)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def spawn(name: str, target: Callable[[threading.Event], None]) -> None:
        t = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
        t.start()
        threads.append(t)

    def stored() -> int:
        for attempt in range(5):  # a loaded server may drop a connection; not a result
            try:
                r = api.get("/Observation", params={"_summary": "count"})
                r.raise_for_status()
                return int(r.json()["total"])
            except httpx.HTTPError as exc:
                if attempt == 4:
                    raise
                log.warning("count of Observations: %s; asking again", exc)
                time.sleep(1)
        raise AssertionError("unreachable")

    def memory() -> list[ProcessMemory]:
        return deployment.memory() if deployment else []

    def cpu() -> float:
        return deployment.cpu_s() if deployment else 0.0

    try:
        baseline = stored()
        echo(f"admitting {plan.beds} patients (ADT^A01) ...")
        send_admissions(hospital, settings, tally)
        gateways = math.ceil(plan.beds / plan.beds_per_gateway)
        sample_period_s = gateways / plan.samples_per_s
        for g in range(gateways):
            beds = hospital.patients[g * plan.beds_per_gateway : (g + 1) * plan.beds_per_gateway]
            gw = WardGateway(
                f"SIMGW{plan.seed:02d}{g:03d}-",
                hospital,
                beds,
                settings,
                tally,
                probe,
                sample_period_s,
                first_sample_s=g / plan.samples_per_s,
            )
            spawn(gw.name, gw.run)
        spawn("probe", probe.run)
        spawn("his", his(hospital, settings, tally, plan.beds * plan.adt_per_bed_day / 86400, 7))
        spawn(
            "modality",
            modality(hospital, settings, tally, plan.beds * plan.studies_per_bed_day / 86400, 8),
        )
        echo(
            f"{plan.beds} monitors at 1 Hz x {len(MONITOR_PARAMETERS)} parameters through "
            f"{gateways} gateways; warming up {plan.warmup_s:.0f} s, then measuring "
            f"{plan.seconds:.0f} s"
        )
        t0 = time.monotonic()
        rss_series: list[tuple[float, int]] = []
        anon_series: list[tuple[float, int]] = []
        heap_series: list[tuple[float, int]] = []

        def sample(at: float, mem: list[ProcessMemory]) -> None:
            anon_series.append((at, sum(m.anon for m in mem)))
            heap_series.append((at, sum(m.anon - m.sqlite for m in mem)))

        mem_start: list[ProcessMemory] = []
        mem_mid: list[ProcessMemory] = []
        lag_max: dict[str, int] = {}
        started = False
        window_start = 0.0
        count_start = sent_start = 0
        cpu_start = 0.0
        last_count, last_t = baseline, t0
        next_progress = t0 + plan.progress_s
        while True:
            now = time.monotonic()
            if deployment is not None:
                deployment.check_alive()
            if not started and now - t0 >= plan.warmup_s:
                started, probe.recording = True, True
                count_start = stored()
                window_start = now
                with tally.lock:
                    sent_start = tally.sent
                cpu_start, mem_start = cpu(), memory()
                sample(0.0, mem_start)
            if started and now - window_start >= plan.seconds:
                break
            if now >= next_progress:
                next_progress += plan.progress_s
                count = stored()
                current = lag()
                for grp, v in current.items():
                    lag_max[grp] = max(lag_max.get(grp, 0), v)
                mem = memory()
                resident = sum(m.rss for m in mem)
                rss_series.append((now - t0, resident))
                if started:
                    sample(now - window_start, mem)
                    if not mem_mid and now - window_start >= plan.seconds / 2:
                        mem_mid = mem
                with tally.lock:
                    sent = tally.sent
                p99 = percentile(probe.latencies_s, 0.99)
                echo(
                    f"[{now - t0:5.0f} s] sent {sent:,} ORU; stored "
                    f"{(count - last_count) / (now - last_t):,.0f} Obs/s; p99 {p99:.2f} s; "
                    f"lag {sum(current.values()):,}; RSS {resident / 2**20:,.0f} MiB"
                    f" (anon {sum(m.anon for m in mem) / 2**20:,.0f})"
                )
                last_count, last_t = count, now
            time.sleep(0.2)
        window_s = time.monotonic() - window_start
        count_end = stored()
        cpu_end, mem_end = cpu(), memory()
        load_avg = os.getloadavg()
        sample(window_s, mem_end)
        rss_end = sum(m.rss for m in mem_end)
        with tally.lock:
            sent_window = tally.sent - sent_start
        probe.close_window()
        stop.set()
        for t in threads:
            t.join(35)
        # everything acknowledged must become searchable: wait for the pipeline to drain
        with tally.lock:
            expected = tally.acks.get("AA", 0) + tally.acks.get("CA", 0) - tally.adt
        expected_obs = baseline + expected * len(MONITOR_PARAMETERS)
        drain_start = time.monotonic()
        drained: float | None = None
        final = stored()
        while time.monotonic() - drain_start < plan.drain_s:
            if final >= expected_obs:
                drained = time.monotonic() - drain_start
                break
            time.sleep(0.5)
            final = stored()
        lag_end = lag()
        for grp, v in lag_end.items():
            lag_max[grp] = max(lag_max.get(grp, 0), v)
        return Report(
            beds=plan.beds,
            window_s=window_s,
            offered_msgs_per_s=sent_window / window_s,
            stored_obs_per_s=(count_end - count_start) / window_s,
            latency_p50_s=percentile(probe.latencies_s, 0.5),
            latency_p99_s=percentile(probe.latencies_s, 0.99),
            latency_max_s=max(probe.latencies_s, default=math.nan),
            latency_samples=len(probe.latencies_s),
            latency_lost=probe.lost,
            latency_censored=probe.censored,
            ack_p50_s=percentile(tally.ack_latency_s, 0.5),
            ack_p99_s=percentile(tally.ack_latency_s, 0.99),
            acks=dict(tally.acks),
            send_errors=tally.errors,
            adt=tally.adt,
            dicom_status=dict(tally.dicom_status),
            rss_start_bytes=sum(m.rss for m in mem_start),
            rss_end_bytes=rss_end,
            rss_max_bytes=max((r for _, r in rss_series), default=rss_end),
            rss_series=rss_series,
            cpu_cores=(cpu_end - cpu_start) / window_s,
            lag_end=lag_end,
            lag_max=lag_max,
            behind_s=tally.behind_s,
            drained_s=drained,
            expected_obs=expected_obs - baseline,
            stored_obs=final - baseline,
            anon_start_bytes=sum(m.anon for m in mem_start),
            anon_end_bytes=sum(m.anon for m in mem_end),
            anon_series=anon_series,
            heap_series=heap_series,
            processes_start=mem_start,
            processes_end=mem_end,
            processes_mid=mem_mid,
            load_avg=load_avg,
        )
    finally:
        stop.set()
        for t in threads:  # a request still in flight must not meet a closed client
            t.join(timeout=35)
        api.close()
        probe_api.close()


@contextlib.contextmanager
def caregraph_running(
    settings: Settings,
    *,
    attach: bool = False,
    split: bool = False,
    pids: Sequence[int] = (),
    log_dir: Path | None = None,
) -> Iterator[Deployment | None]:
    """The caregraph to drive: started here (one process, or one per role group when
    ``split``) and stopped afterwards, or, with ``attach``, the one already running."""
    if attach:
        wait_ready(settings, None)
        yield Deployment(pids=list(pids)) if pids else None
        return
    # SIGTERM ends this process through ``finally``, so the children are stopped too
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    dep = Deployment.spawn(settings, split=split, log_dir=log_dir or settings.data_dir / "logs")
    try:
        wait_ready(settings, dep)
        yield dep
    finally:
        dep.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def simulate(
    settings: Settings,
    plan: Plan,
    *,
    attach: bool = False,
    split: bool = False,
    pids: Sequence[int] = (),
    echo: Echo = print,
) -> Report:
    """``caregraph simulate``: start (or attach to) caregraph, drive it, report."""
    with caregraph_running(settings, attach=attach, split=split, pids=pids) as dep:
        report = run_simulation(settings, plan, deployment=dep, echo=echo)
    for line in report.lines():
        echo(line)
    return report
