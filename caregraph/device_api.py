"""``GET /devices/health`` (what a biomedical engineer checks first),
``GET /devices/metrics`` (the same counters for Prometheus) and, per device,
``GET /devices/{device_id}/frames``, ``/devices/{device_id}/rejected`` and
``/devices/{device_id}/dead-letters`` (what the device really sent, what its driver refused
on the line, and what caregraph could not make of it): one router.

Live figures (connected, last frame, frames/s, checksum errors, reconnects, silence) come
from the ``HealthBoard`` the serial role of this process fills every few seconds; the open
silence alerts come from the store (``DetectedIssue``, see ``adapters.registry.alerts``), so
a process that runs ``api`` without ``serial`` still shows them. Mount it with
``app.include_router(build_device_router(ctx.store, health_board(ctx), authorize))``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from adapters.registry.alerts import ALERT_SYSTEM, OPEN, SILENT
from adapters.serial import headers as dh
from adapters.serial import rejected as rj
from bus import headers as bh
from bus.base import Message
from bus.deadletter import decode_deadletter
from bus.errors import DeadLetterFormatError
from bus.topics import DEADLETTER, RAW_DEVICE
from caregraph.device_registry import HealthBoard, HealthRow, all_resources
from caregraph.wiring import Context
from fhir_store.database import Database, Params
from fhir_store.store import FhirStore
from security.scopes import Context as ScopeContext
from security.tokens import Principal

log = logging.getLogger(__name__)


def open_alerts(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open silence issues among ``resources``, newest first."""
    out = []
    for r in resources:
        codes = r.get("code", {}).get("coding", [])
        if r.get("status") == OPEN and any(
            c.get("system") == ALERT_SYSTEM and c.get("code") == SILENT for c in codes
        ):
            ident = (r.get("implicated") or [{}])[0].get("identifier") or {}
            out.append(
                {
                    "issue": f"DetectedIssue/{r['id']}",
                    "device_id": ident.get("value"),
                    "since": r.get("identifiedPeriod", {}).get("start"),
                    "detail": r.get("detail"),
                }
            )
    return sorted(out, key=lambda a: str(a["since"]), reverse=True)


# (name, type, help, value of a row): the counters a monitoring system scrapes.
_METRICS: tuple[tuple[str, str, str, Callable[[HealthRow], float | None]], ...] = (
    (
        "caregraph_device_connected",
        "gauge",
        "1 while the port is open",
        lambda r: float(r.health.connected),
    ),
    (
        "caregraph_device_silent",
        "gauge",
        "1 while silent beyond the alert threshold",
        lambda r: float(r.health.silent),
    ),
    (
        "caregraph_device_frames_total",
        "counter",
        "valid frames received",
        lambda r: _stat(r, "frames"),
    ),
    (
        "caregraph_device_checksum_errors_total",
        "counter",
        "frames with a bad checksum",
        lambda r: _stat(r, "checksum_errors"),
    ),
    (
        "caregraph_device_reconnects_total",
        "counter",
        "sessions ended and the port opened again",
        lambda r: _stat(r, "reconnects"),
    ),
    (
        "caregraph_device_last_frame_timestamp_seconds",
        "gauge",
        "Unix time of the last valid frame",
        lambda r: r.health.last_frame_at.timestamp() if r.health.last_frame_at else None,
    ),
    (
        "caregraph_device_frames_per_second",
        "gauge",
        "valid frames per second over the last interval",
        lambda r: r.frames_per_s,
    ),
)


def _stat(row: HealthRow, key: str) -> float | None:
    value = row.health.stats.get(key)
    return float(value) if isinstance(value, int | float) else None


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(rows: list[HealthRow]) -> str:
    """The health rows in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for name, kind, text, value_of in _METRICS:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for row in rows:
            value = value_of(row)
            if value is not None:
                h = row.health
                labels = f'device="{_label(h.device_id)}",protocol="{_label(h.protocol)}"'
                lines.append(f"{name}{{{labels}}} {value:g}")
    return "\n".join(lines) + "\n"


# -- the trail: a device's last raw frames, rejected bytes and dead letters ---------------
#
# Kept in the database, not in the api process's memory: the tap that fills it is an
# ordinary consumer with a fixed group (``TRAIL_GROUP``), so it runs in whichever process
# runs it and every api process (several behind a balancer, or one restarted a minute ago)
# reads the same rows. An in-memory ring would need one consumer group per api process,
# each reading raw.device from its start at every restart, and would show an empty page
# after each deploy. Bounded per device (the newest ``keep`` of each kind), so the table
# stays small whatever the rates: 100 frames of at most 4 KB (the largest frame a driver
# accepts) is under a megabyte of hex per device, and usually a few kilobytes.
#
# Rejected bytes (bad checksum, bad framing, garbage between frames) come from the drivers
# on ``raw.device.rejected`` (``adapters.serial.rejected`` says why a topic of its own), a
# kind of their own here, so a noisy line never pushes the good frames out of the trail.

TRAIL_GROUP = "device-trail"
TRAIL_TOPICS = (RAW_DEVICE, rj.TOPIC, DEADLETTER)
KEEP = 100
FRAME, REJECTED, DEAD = "frame", "rejected", "dead"

_TRAIL_SCHEMA: list[tuple[int, list[str]]] = [
    (
        1,
        [
            # (topic, part, pos) is where the message sits on the bus: a redelivered batch
            # inserts nothing twice. A device's frames share its key, hence one partition,
            # so ``pos`` orders them (and its dead letters likewise).
            """CREATE TABLE device_trail (
                topic TEXT NOT NULL, part INTEGER NOT NULL, pos BIGINT NOT NULL,
                device_id TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
                protocol TEXT, message_id TEXT, raw_hex TEXT NOT NULL,
                error TEXT, grp TEXT, origin TEXT, attempts INTEGER,
                PRIMARY KEY (topic, part, pos))""",
            "CREATE INDEX device_trail_newest ON device_trail (device_id, kind, pos)",
        ],
    )
]
_COLUMNS = (
    "topic",
    "part",
    "pos",
    "device_id",
    "kind",
    "at",
    "protocol",
    "message_id",
    "raw_hex",
    "error",
    "grp",
    "origin",
    "attempts",
)

# Names of the control characters device protocols frame with (ASTM, Medibus, ...).
_CONTROL = tuple(
    "NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI "  # noqa: SIM905 - a table
    "DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US".split()
)


def ascii_text(raw: bytes) -> str:
    """``raw`` as an engineer reads a line trace: printable ASCII as is, control
    characters by name (``<STX>``), other bytes as ``<9B>``."""
    out = []
    for b in raw:
        if 0x20 <= b < 0x7F:
            out.append(chr(b))
        elif b < 0x20:
            out.append(f"<{_CONTROL[b]}>")
        elif b == 0x7F:
            out.append("<DEL>")
        else:
            out.append(f"<{b:02X}>")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One raw frame or dead letter of a device, as ``/devices/{id}/...`` shows it."""

    device_id: str
    kind: str
    at: str
    topic: str
    partition: int
    offset: int
    raw: bytes
    protocol: str | None = None
    message_id: str | None = None
    error: str | None = None
    group: str | None = None
    origin: str | None = None
    attempts: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": self.at,
            "size": len(self.raw),
            "hex": self.raw.hex(" "),
            "ascii": ascii_text(self.raw),
            "message_id": self.message_id,
            "protocol": self.protocol,
            "bus": f"{self.topic}/{self.partition}@{self.offset}",
        }
        if self.kind == REJECTED:
            out["reason"] = self.error
        if self.kind == DEAD:
            out.update(
                error=self.error, group=self.group, origin=self.origin, attempts=self.attempts
            )
        return out

    def row(self) -> Params:
        return (
            self.topic,
            self.partition,
            self.offset,
            self.device_id,
            self.kind,
            self.at,
            self.protocol,
            self.message_id,
            self.raw.hex(),
            self.error,
            self.group,
            self.origin,
            self.attempts,
        )


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def trail_entry(message: Message) -> TrailEntry | None:
    """The trail entry ``message`` makes, or ``None`` when it concerns no device.

    A ``raw.device`` message is a frame of the device its header (or key) names, a
    ``raw.device.rejected`` one bytes its driver refused (with the reason). A dead
    letter concerns a device when the message it holds carried the device id header: a
    frame the device normalizer could not decode, or one of that device's Observations the
    store writer gave up on. An unreadable dead letter is logged and left out.
    """
    if message.topic in (RAW_DEVICE, rj.TOPIC):
        device_id = message.headers.get(dh.DEVICE_ID) or (message.key or b"").decode(
            "utf-8", "replace"
        )
        if not device_id:
            return None
        refused = message.topic == rj.TOPIC
        return TrailEntry(
            device_id,
            REJECTED if refused else FRAME,
            message.headers.get(bh.RECEIVED_AT) or _instant(message.timestamp_ms),
            message.topic,
            message.partition,
            message.offset,
            message.value,
            protocol=message.headers.get(dh.PROTOCOL),
            message_id=message.headers.get(bh.MESSAGE_ID),
            error=rj.describe(message.headers, len(message.value)) if refused else None,
        )
    try:
        dead = decode_deadletter(message.value)
    except DeadLetterFormatError as exc:
        log.warning(
            "device trail: %s/%d@%d: %s", message.topic, message.partition, message.offset, exc
        )
        return None
    concerned = dead.headers.get(dh.DEVICE_ID)
    if not concerned:
        return None
    return TrailEntry(
        concerned,
        DEAD,
        dead.failed_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        message.topic,
        message.partition,
        message.offset,
        dead.value,
        protocol=dead.headers.get(dh.PROTOCOL),
        message_id=dead.headers.get(bh.MESSAGE_ID),
        error=dead.error,
        group=dead.group,
        origin=f"{dead.topic}/{dead.partition}@{dead.offset}",
        attempts=dead.attempts,
    )


class DeviceTrail:
    """The newest ``keep`` raw frames, rejected bytes and dead letters of every device, in
    the database.

    ``record`` is the tap's handler (``run_consumer`` over ``TRAIL_TOPICS`` in group
    ``TRAIL_GROUP``): idempotent, so at-least-once delivery stores each message once.
    """

    def __init__(self, db: Database, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, not {keep}")
        self.db = db
        self.keep = keep

    @classmethod
    def open(cls, db: Database, keep: int = KEEP) -> DeviceTrail:
        """The trail on ``db``, its table created or upgraded first."""
        db.apply_migrations("devices_schema_version", _TRAIL_SCHEMA)
        return cls(db, keep)

    def record(self, messages: Sequence[Message]) -> None:
        """Store what ``messages`` say about devices, then trim each device touched to its
        newest ``keep`` of each kind (a ``bus.worker`` handler).

        Raises:
            StoreError: the database failed (the worker retries the batch).
        """
        entries = [e for e in map(trail_entry, messages) if e is not None]
        if not entries:
            return
        touched = sorted({(e.device_id, e.kind) for e in entries})
        with self.db.transaction() as tx:
            tx.insert_rows(
                "device_trail",
                _COLUMNS,
                [e.row() for e in entries],
                " ON CONFLICT (topic, part, pos) DO NOTHING",
            )
            for device_id, kind in touched:
                tx.execute(
                    "DELETE FROM device_trail WHERE device_id = ? AND kind = ? AND pos <= ("
                    "SELECT pos FROM device_trail WHERE device_id = ? AND kind = ?"
                    " ORDER BY pos DESC LIMIT 1 OFFSET ?)",
                    (device_id, kind, device_id, kind, self.keep),
                )

    def newest(self, device_id: str, kind: str, limit: int = KEEP) -> list[TrailEntry]:
        """The device's newest entries of ``kind`` (``FRAME``, ``REJECTED`` or ``DEAD``),
        newest first."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM device_trail"
                " WHERE device_id = ? AND kind = ? ORDER BY pos DESC LIMIT ?",
                (device_id, kind, limit),
            ).fetchall()
        return [
            TrailEntry(
                device_id=r[3],
                kind=r[4],
                at=r[5],
                topic=r[0],
                partition=int(r[1]),
                offset=int(r[2]),
                raw=bytes.fromhex(r[8]),
                protocol=r[6],
                message_id=r[7],
                error=r[9],
                group=r[10],
                origin=r[11],
                attempts=None if r[12] is None else int(r[12]),
            )
            for r in rows
        ]


_TRAILS: weakref.WeakKeyDictionary[object, DeviceTrail] = weakref.WeakKeyDictionary()


def device_trail(ctx: Context) -> DeviceTrail:
    """The one trail of the process's ``Context``, migrated once: the tap's handler
    (``record``, run by ``run_consumer`` in group ``TRAIL_GROUP`` over ``TRAIL_TOPICS``)
    writes it, the ``/devices`` router reads it."""
    trail = _TRAILS.get(ctx)
    if trail is None:
        # raw.device.rejected is the drivers' (created on their first reject): make it now,
        # so the tap subscribes to a topic that exists (Kafka may not auto-create one).
        ctx.bus.ensure_topics(TRAIL_TOPICS)
        trail = _TRAILS[ctx] = DeviceTrail.open(ctx.db)
    return trail


def device_reader(principal: Principal) -> Principal:
    """Raw frames hold whatever the device measured, so reading them needs what reading the
    device's records needs: a ``user/`` or ``system/`` scope that reads Device, and no
    patient context (a patient-restricted token sees its own records, not a device's line).

    Raises:
        HTTPException: 403 saying which scope is missing.
    """
    wide = frozenset({ScopeContext.USER, ScopeContext.SYSTEM})
    if principal.patient is not None or not principal.scopes.allows("Device", "r", wide):
        raise HTTPException(
            status_code=403,
            detail="a device's frames and dead letters need user/Device.r (or system/) "
            "without a patient context",
        )
    return principal


def build_device_router(
    store: FhirStore,
    board: HealthBoard,
    authorize: Callable[..., Any],
    *,
    trail: DeviceTrail | None = None,
    prefix: str = "/devices",
) -> APIRouter:
    """The ``/devices`` router; every route depends on ``authorize``. With ``trail``, also
    ``/devices/{device_id}/frames``, ``/rejected`` and ``/dead-letters``."""
    router = APIRouter(prefix=prefix, tags=["devices"], dependencies=[Depends(authorize)])

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Per served device: connection, last frame, frames/s, errors, silence, alert."""
        rows, problems, updated, running = board.snapshot()
        return {
            "serial_role": running,
            "updated_at": updated.isoformat() if updated else None,
            "devices": [r.as_json() for r in rows],
            "not_served": [
                {"device_id": p.device_id, "resource": p.resource, "reason": p.reason}
                for p in problems
            ],
            "alerts": open_alerts(list(all_resources(store, "DetectedIssue"))),
        }

    @router.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The same figures for a Prometheus scraper (this process's serial role)."""
        rows, _, _, _ = board.snapshot()
        return PlainTextResponse(
            prometheus_text(rows), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    if trail is None:
        return router
    found = trail

    # A default, not an annotation: ``authorize`` is this call's, which FastAPI could not
    # resolve from a postponed (string) annotation.
    def reader(principal: Principal = Depends(authorize)) -> Principal:  # noqa: B008
        return device_reader(principal)

    guarded = [Depends(reader)]

    @router.get("/{device_id}/frames", dependencies=guarded)
    def frames(device_id: str, limit: Annotated[int, Query(ge=1, le=KEEP)] = 50) -> dict[str, Any]:
        """The device's newest raw frames as it sent them (``raw.device``), newest first."""
        entries = found.newest(device_id, FRAME, limit)
        return {
            "device_id": device_id,
            "kept": found.keep,
            "frames": [e.as_json() for e in entries],
        }

    @router.get("/{device_id}/rejected", dependencies=guarded)
    def rejected(
        device_id: str, limit: Annotated[int, Query(ge=1, le=KEEP)] = 50
    ) -> dict[str, Any]:
        """Bytes the device's driver refused (bad checksum, bad framing, garbage between
        frames) with the reason, newest first; best effort: a burst, then a few per second
        (the health counters count every one)."""
        entries = found.newest(device_id, REJECTED, limit)
        return {
            "device_id": device_id,
            "kept": found.keep,
            "rejected": [e.as_json() for e in entries],
        }

    @router.get("/{device_id}/dead-letters", dependencies=guarded)
    def dead_letters(
        device_id: str, limit: Annotated[int, Query(ge=1, le=KEEP)] = 50
    ) -> dict[str, Any]:
        """Messages of the device that a consumer gave up on, with the error, newest first."""
        entries = found.newest(device_id, DEAD, limit)
        return {
            "device_id": device_id,
            "kept": found.keep,
            "dead_letters": [e.as_json() for e in entries],
        }

    return router
