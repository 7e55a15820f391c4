"""The device registry against the store: what the CLI, the serial role and the device
normalizer share (composition root; the mapping itself is pure, in ``adapters.registry``).

- ``RegistryReader`` loads registered Devices and attachments (paged searches).
- ``AssociationCache`` is the patient lookup the device normalizer calls once per batch;
  it reloads the attachments at most every ``max_age_s``, so readings never cost a query.
- ``SerialRole`` is ``--role serial``: it applies the registered, active Devices with a
  serial connection to a ``SerialGateway`` every ``refresh_s`` (following edits without a
  restart), and raises/clears a ``DetectedIssue`` when a device stays silent.
- ``HealthBoard`` holds the gateway's latest health per device for ``/devices/health``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.registry.alerts import ALERT_SYSTEM, OPEN, SILENT, silence_issue
from adapters.registry.associations import (
    AssociationIndex,
    Attachment,
    attachment_from_statement,
)
from adapters.registry.device import Registration, RegistryError, registration_from_device
from adapters.registry.timing import parse_instant
from adapters.serial.normalize import SubjectAt
from adapters.serial.observation import DEVICE_ID_SYSTEM
from bus.memory import MemoryBus
from caregraph.errors import CaregraphError, MappingError
from caregraph.wiring import Context
from devices.serial import driver_class, make_driver
from devices.serial.gateway import DeviceConnection, DeviceHealth, SerialGateway
from devices.serial.port import LineSettings
from fhir_store.store import FhirStore

log = logging.getLogger(__name__)

PAGE = 1000
# Drivers built only to check a registration (never run) get a bus that goes nowhere.
_CHECK_BUS = MemoryBus()


def all_resources(
    store: FhirStore, type_name: str, *where: tuple[str, str]
) -> Iterator[dict[str, Any]]:
    """Every current resource of ``type_name`` (matching ``where``), page by page."""
    offset = 0
    while True:
        page = store.searching.search(
            type_name,
            [*where, ("_count", str(PAGE)), ("_offset", str(offset)), ("_sort", "_id")],
        )
        for stored in page.matches:
            yield stored.resource()
        if not page.has_next:
            return
        offset += PAGE


def is_registered(resource: Mapping[str, Any]) -> bool:
    """A Device caregraph manages: one with a ``urn:caregraph:device`` identifier (other
    Devices, e.g. from HL7 PCD-01 feeds, are not serial registrations)."""
    return any(i.get("system") == DEVICE_ID_SYSTEM for i in resource.get("identifier", []))


@dataclass(frozen=True)
class Problem:
    """A registration that cannot be served, and why (shown in ``/devices/health``)."""

    device_id: str
    resource: str
    reason: str


class RegistryReader:
    """Reads the registry out of the store."""

    def __init__(self, store: FhirStore) -> None:
        self.store = store

    def registrations(self) -> tuple[list[Registration], list[Problem]]:
        """Every registered Device that parses, and the ones that do not."""
        regs: list[Registration] = []
        problems: list[Problem] = []
        for resource in all_resources(self.store, "Device"):
            if not is_registered(resource):
                continue
            try:
                regs.append(registration_from_device(resource))
            except MappingError as exc:
                ident = next(
                    i.get("value", "")
                    for i in resource["identifier"]
                    if i.get("system") == DEVICE_ID_SYSTEM
                )
                problems.append(Problem(ident, f"Device/{resource.get('id')}", _why(exc)))
        return regs, problems

    def attachments(self, regs: list[Registration]) -> list[Attachment]:
        by_ref = {r.reference: r.device_id for r in regs}
        out: list[Attachment] = []
        for resource in all_resources(self.store, "DeviceUseStatement"):
            try:
                found = attachment_from_statement(resource, by_ref)
            except MappingError as exc:
                log.warning("registry: ignoring DeviceUseStatement: %s", _why(exc))
                continue
            if found is not None:
                out.append(found)
        return out

    def index(self) -> AssociationIndex:
        devices = [r for r in all_resources(self.store, "Device") if is_registered(r)]
        return build_index(devices, all_resources(self.store, "DeviceUseStatement"))


def _why(exc: MappingError) -> str:
    return f"{exc} (at {exc.location})" if exc.location else str(exc)


def build_index(
    devices: Iterable[Mapping[str, Any]], statements: Iterable[Mapping[str, Any]]
) -> AssociationIndex:
    """The attachment index from registered Devices and DeviceUseStatements (unusable
    ones are logged and left out: one bad statement must not unassign every reading)."""
    refs: dict[str, str] = {}
    for d in devices:
        try:
            reg = registration_from_device(d)
        except MappingError as exc:
            log.debug("registry: Device/%s not usable: %s", d.get("id"), exc)
            continue
        refs[reg.reference] = reg.device_id
    found: list[Attachment] = []
    for s in statements:
        try:
            a = attachment_from_statement(s, refs)
        except MappingError as exc:
            log.warning("registry: ignoring DeviceUseStatement: %s", _why(exc))
            continue
        if a is not None:
            found.append(a)
    return AssociationIndex(found)


def _updated(resource: Mapping[str, Any]) -> str:
    return str(resource.get("meta", {}).get("lastUpdated", ""))


class AssociationCache:
    """The device normalizer's patient lookup: an index refreshed at most every
    ``max_age_s``, whatever the reading rate.

    A refresh asks only for Devices and DeviceUseStatements updated since the last one
    (``_lastUpdated=ge``, with a margin for transactions that commit late), and rebuilds
    the index only when something changed; every ``full_every_s`` it reloads everything,
    which also drops deleted resources. A refresh that fails keeps the previous index
    (readings keep their patients while the database blips); without any index yet, the
    error propagates so the batch is retried.
    """

    MARGIN = timedelta(seconds=10)

    def __init__(
        self,
        store: FhirStore,
        max_age_s: float = 2.0,
        full_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.full_every_s = full_every_s
        self.loads = 0  # refreshes that asked the store
        self.builds = 0  # index rebuilds (something changed)
        self._clock = clock
        self._lock = threading.Lock()
        self._index: AssociationIndex | None = None
        self._devices: dict[str, dict[str, Any]] = {}
        self._statements: dict[str, dict[str, Any]] = {}
        self._mark = ""
        self._loaded_at = 0.0
        self._full_at = 0.0

    def __call__(self) -> SubjectAt:
        return self.index().subject_at

    def index(self) -> AssociationIndex:
        with self._lock:
            now = self._clock()
            if self._index is None or now - self._loaded_at >= self.max_age_s:
                try:
                    due = self._index is None or now - self._full_at >= self.full_every_s
                    self._refresh(full=due)
                except CaregraphError:
                    if self._index is None:
                        raise
                    log.warning("registry: attachments reload failed; keeping the last ones")
                self._loaded_at = now
            assert self._index is not None
            return self._index

    def _refresh(self, *, full: bool) -> None:
        where = [] if full or not self._mark else [("_lastUpdated", f"ge{self._mark}")]
        devices = {
            str(r["id"]): r for r in all_resources(self.store, "Device", *where) if is_registered(r)
        }
        statements = {
            str(r["id"]): r for r in all_resources(self.store, "DeviceUseStatement", *where)
        }
        self.loads += 1
        if full:
            changed = devices != self._devices or statements != self._statements
            self._devices, self._statements = devices, statements
            self._full_at = self._clock()
        else:
            changed = any(self._devices.get(k) != v for k, v in devices.items()) or any(
                self._statements.get(k) != v for k, v in statements.items()
            )
            self._devices.update(devices)
            self._statements.update(statements)
        latest = max(map(_updated, [*devices.values(), *statements.values()]), default="")
        if latest and latest > self._mark:
            when = datetime.fromisoformat(latest.replace("Z", "+00:00")) - self.MARGIN
            self._mark = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if changed or self._index is None:
            self._index = build_index(self._devices.values(), self._statements.values())
            self.builds += 1

    def invalidate(self) -> None:
        """Refresh on the next call (e.g. right after this process wrote an attachment)."""
        with self._lock:
            self._loaded_at = -self.max_age_s


def connection_of(reg: Registration) -> DeviceConnection:
    """The gateway's view of a registration with a serial connection.

    Raises:
        ValueError: no connection, or a protocol no driver speaks.
    """
    c = reg.connection
    if c is None:
        raise ValueError(f"device {reg.device_id} has no serial connection")
    default = driver_class(c.protocol).line
    spec = c.line
    line = LineSettings(
        baudrate=spec.baudrate if spec.baudrate is not None else default.baudrate,
        bytesize=spec.bytesize if spec.bytesize is not None else default.bytesize,
        parity=spec.parity if spec.parity is not None else default.parity,
        stopbits=spec.stopbits if spec.stopbits is not None else default.stopbits,
        rtscts=spec.rtscts if spec.rtscts is not None else default.rtscts,
    )
    return DeviceConnection(
        reg.device_id,
        c.protocol,
        c.port,
        dict(c.options),
        None if line == default else line,
        c.patient_id_system,
    )


def served_connections(
    regs: list[Registration],
) -> tuple[list[DeviceConnection], list[Problem]]:
    """The connections the gateway should run: active Devices with a serial connection,
    each one a driver can be built for; one device per id and per port."""
    out: list[DeviceConnection] = []
    problems: list[Problem] = []
    ids: set[str] = set()
    ports: dict[str, str] = {}
    for reg in sorted(regs, key=lambda r: (r.device_id, r.resource_id)):
        if reg.status != "active" or reg.connection is None:
            continue
        try:
            conn = connection_of(reg)
            # Building a driver opens nothing; it checks the protocol and the option names.
            make_driver(conn.protocol, conn.port, conn.device_id, _CHECK_BUS, **conn.options)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(reg.device_id, reg.reference, str(exc)))
            continue
        if reg.device_id in ids:
            problems.append(
                Problem(reg.device_id, reg.reference, "another Device has the same device id")
            )
            continue
        if conn.port in ports:
            problems.append(
                Problem(
                    reg.device_id, reg.reference, f"port {conn.port} is used by {ports[conn.port]}"
                )
            )
            continue
        ids.add(reg.device_id)
        ports[conn.port] = reg.device_id
        out.append(conn)
    return out, problems


@dataclass(frozen=True)
class HealthRow:
    """One device's health as ``/devices/health`` shows it."""

    health: DeviceHealth
    frames_per_s: float | None
    alert: str | None  # the open DetectedIssue id, if any

    def as_json(self) -> dict[str, Any]:
        h = self.health
        s = h.stats
        last = h.last_frame_at.isoformat() if h.last_frame_at else None
        return {
            "device_id": h.device_id,
            "protocol": h.protocol,
            "port": h.port,
            "line": _line_text(h.line) if h.line else None,
            "connected": h.connected,
            "last_frame_at": last,
            "silent_for_s": None if h.silent_for_s is None else round(h.silent_for_s, 3),
            "silent": h.silent,
            "frames": s.get("frames"),
            "frames_per_s": None if self.frames_per_s is None else round(self.frames_per_s, 3),
            "checksum_errors": s.get("checksum_errors"),
            "reconnects": s.get("reconnects"),
            "silences": s.get("silences"),
            "alert": f"DetectedIssue/{self.alert}" if self.alert else None,
            "stats": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in s.items()},
        }


def _line_text(line: LineSettings) -> str:
    """``115200 8N1`` (``+RTS/CTS``), as interface guides write line settings."""
    stop = f"{line.stopbits:g}"
    flow = " RTS/CTS" if line.rtscts else ""
    return f"{line.baudrate} {line.bytesize}{line.parity}{stop}{flow}"


class HealthBoard:
    """The latest health the serial role saw, for an API router in the same process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list[HealthRow] = []
        self.problems: list[Problem] = []
        self.updated_at: datetime | None = None
        self.running = False

    def publish(self, rows: list[HealthRow], problems: list[Problem], now: datetime) -> None:
        with self._lock:
            self.rows, self.problems, self.updated_at = list(rows), list(problems), now

    def snapshot(self) -> tuple[list[HealthRow], list[Problem], datetime | None, bool]:
        with self._lock:
            return list(self.rows), list(self.problems), self.updated_at, self.running


_BOARDS: weakref.WeakKeyDictionary[object, HealthBoard] = weakref.WeakKeyDictionary()


def health_board(owner: object) -> HealthBoard:
    """The one board of ``owner`` (the process's ``Context``): the serial role writes it,
    the ``/devices/health`` router of the same process reads it."""
    board = _BOARDS.get(owner)
    if board is None:
        board = _BOARDS[owner] = HealthBoard()
    return board


@dataclass
class _Silence:
    issue: dict[str, Any]
    since: datetime


class SilenceAlerts:
    """Raises a DetectedIssue when a device is silent beyond the gateway's threshold and
    clears it when frames return; writes only on a change."""

    def __init__(self, store: FhirStore, threshold_s: float) -> None:
        self.store = store
        self.threshold_s = threshold_s
        self.open: dict[str, _Silence] = {}
        self.loaded = False

    def load(self) -> None:
        """Carry over issues left open by a previous run (so they can be cleared)."""
        for resource in all_resources(self.store, "DetectedIssue"):
            codes = resource.get("code", {}).get("coding", [])
            if resource.get("status") != OPEN or not any(
                c.get("system") == ALERT_SYSTEM and c.get("code") == SILENT for c in codes
            ):
                continue
            ident = (resource.get("implicated") or [{}])[0].get("identifier") or {}
            start = resource.get("identifiedPeriod", {}).get("start")
            if ident.get("value") and start:
                since = parse_instant(start, "DetectedIssue.identifiedPeriod.start")
                self.open[str(ident["value"])] = _Silence(resource, since)
        self.loaded = True

    def update(self, health: list[DeviceHealth], refs: Mapping[str, str], now: datetime) -> None:
        """Raise or clear alerts for ``health``; the state changes only once written.

        Raises:
            StoreError: the write failed (the next update tries again).
        """
        if not self.loaded:
            self.load()
        state = dict(self.open)
        writes: list[dict[str, Any]] = []
        seen = set()
        for h in health:
            seen.add(h.device_id)
            current = state.get(h.device_id)
            if h.silent and current is None:
                since = now - timedelta(seconds=h.silent_for_s or 0)
                ref = refs.get(h.device_id, "")
                issue = silence_issue(h.device_id, ref, since, self.threshold_s, now)
                state[h.device_id] = _Silence(issue, since)
                writes.append(issue)
            elif not h.silent and current is not None:
                del state[h.device_id]
                writes.append(self._cleared(h.device_id, current, h.last_frame_at or now, now))
        # A device no longer served (retired, disconnected from the registry) is no alert.
        for device_id in [d for d in state if d not in seen]:
            writes.append(self._cleared(device_id, state.pop(device_id), now, now))
        if writes:
            self.store.upsert_many(writes)
        for issue in writes:
            device_id = issue["implicated"][0]["identifier"]["value"]
            if issue["status"] == OPEN:
                log.warning("serial: %s silent (%s)", device_id, issue["detail"])
            else:
                log.info("serial: %s sends again", device_id)
        self.open = state

    def _cleared(
        self, device_id: str, current: _Silence, end: datetime, now: datetime
    ) -> dict[str, Any]:
        ref = (current.issue.get("implicated") or [{}])[0].get("reference", "")
        issue = silence_issue(
            device_id, ref, current.since, self.threshold_s, now, cleared=max(end, current.since)
        )
        # Keep what was said when the silence was detected.
        issue["detail"] = current.issue.get("detail") or issue["detail"]
        return issue

    def issue_id(self, device_id: str) -> str | None:
        found = self.open.get(device_id)
        return str(found.issue["id"]) if found else None


class SerialRole:
    """``--role serial``: the registry's active serial devices, read by a ``SerialGateway``."""

    name = "serial"

    def __init__(
        self,
        store: FhirStore,
        gateway: SerialGateway,
        board: HealthBoard | None = None,
        *,
        refresh_s: float = 3.0,
    ) -> None:
        self.reader = RegistryReader(store)
        self.gateway = gateway
        self.board = board or HealthBoard()
        self.refresh_s = refresh_s
        self.alerts = SilenceAlerts(store, gateway.silence_alert_s)
        self.syncs = 0
        self._refs: dict[str, str] = {}
        self._problems: list[Problem] = []
        self._last: dict[str, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.sync()  # the first sync in the caller's thread: a broken store fails early
        self._thread = threading.Thread(target=self._run, name="serial", daemon=True)
        self._thread.start()
        self.board.running = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.gateway.apply([])
        self.board.running = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.sync()
            except CaregraphError as exc:  # the database blipped: keep the drivers running
                log.warning("serial: registry not read (%s); drivers unchanged", exc)
            except Exception:  # the loop is the role: a bug must not stop the drivers
                log.exception("serial: registry sync failed; drivers unchanged")
            try:
                self.check_health()
            except CaregraphError as exc:
                log.warning("serial: health alerts not written: %s", exc)
            except Exception:  # the loop is the role: a bug must not end it
                log.exception("serial: health check failed")

    def sync(self) -> None:
        """Read the registry and make the gateway match it."""
        regs, problems = self.reader.registrations()
        conns, more = served_connections(regs)
        for p in more:
            if p not in self._problems:
                log.warning("serial: not serving %s (%s): %s", p.device_id, p.resource, p.reason)
        self._problems = problems + more
        self._refs = {r.device_id: r.reference for r in regs}
        self.gateway.apply(conns)
        self.syncs += 1

    def check_health(self, now: datetime | None = None) -> list[HealthRow]:
        """Sample the gateway, write alert changes, publish rows to the board."""
        now = now or datetime.now(UTC)
        health = self.gateway.health(now)
        self.alerts.update(health, self._refs, now)
        t = time.monotonic()
        rows = []
        for h in health:
            counted = h.stats.get("frames")
            frames = counted if isinstance(counted, int) else 0
            prev = self._last.get(h.device_id)
            rate = None
            if prev is not None and t > prev[0] and frames >= prev[1]:
                rate = (frames - prev[1]) / (t - prev[0])
            self._last[h.device_id] = (t, frames)
            rows.append(HealthRow(h, rate, self.alerts.issue_id(h.device_id)))
        self.board.publish(rows, self._problems, now)
        return rows


def build_serial_role(ctx: Context) -> SerialRole:
    """``--role serial`` for ``caregraph.roles``: the gateway on the process's bus, its
    health on the process's board (read by ``/devices/health``)."""
    return SerialRole(ctx.store, SerialGateway(ctx.bus), health_board(ctx))


def build_resolver(ctx: Context) -> AssociationCache:
    """The device normalizer's patient lookup for ``caregraph.roles`` (one per process)."""
    return AssociationCache(ctx.store)


__all__ = [
    "AssociationCache",
    "HealthBoard",
    "HealthRow",
    "Problem",
    "RegistryError",
    "RegistryReader",
    "SerialRole",
    "SilenceAlerts",
    "build_resolver",
    "build_serial_role",
    "connection_of",
    "health_board",
    "served_connections",
]
