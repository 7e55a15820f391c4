"""A device's raw frames, rejected bytes and dead letters (``DeviceTrail``) on SQLite and
PostgreSQL, and ``/devices/{id}/frames``, ``/rejected`` and ``/dead-letters`` behind the real
authorization middleware.

The frames come from a real Medibus ventilator simulator on a pseudo-terminal, read by the
serial gateway, one of them with items the decoder refuses (its checksum is right, so the
driver publishes it and the device normalizer dead-letters it); the tap is the worker loop
``run_consumer`` over ``raw.device`` and ``deadletter`` with ``DeviceTrail.record``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from adapters.serial import headers as dh
from adapters.serial import medibus as mb
from adapters.serial import rejected as rj
from bus import headers as bh
from bus.base import Message
from bus.deadletter import deadletter_record
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, RAW_DEVICE
from bus.worker import run_consumer
from caregraph import security_wiring
from caregraph.auth import authorize
from caregraph.device_api import (
    DEAD,
    FRAME,
    REJECTED,
    TRAIL_GROUP,
    TRAIL_TOPICS,
    DeviceTrail,
    ascii_text,
    build_device_router,
    trail_entry,
)
from caregraph.device_registry import HealthBoard
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from devices.serial import run_normalizer
from devices.serial.gateway import DeviceConnection, SerialGateway
from devices.simulators.medibus import MedibusVentilator
from devices.simulators.pty import PtyPort
from fhir_store.database import Database, open_database
from fhir_store.store import FhirStore
from security.middleware import DEFAULT_PUBLIC, AuthorizationMiddleware
from tests.integration.registry.conftest import serving_app, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.close()


def _frame(device: str, offset: int, raw: bytes, partition: int = 0) -> Message:
    headers = {
        dh.DEVICE_ID: device,
        dh.PROTOCOL: "medibus",
        bh.MESSAGE_ID: f"{device}/boot/{offset}",
        bh.RECEIVED_AT: f"2026-11-25T21:00:{offset % 60:02d}.000000+00:00",
    }
    return Message(RAW_DEVICE, partition, offset, device.encode(), raw, headers, 0)


def _dead(original: Message, offset: int, error: str) -> Message:
    record = deadletter_record(original, "normalizer-device", error, 1)
    return Message(
        DEADLETTER, 0, offset, record.key, record.value, dict(record.headers), 1_764_100_000_000
    )


def test_keeps_the_newest_frames_and_dead_letters_per_device_once_each(db: Database) -> None:
    trail = DeviceTrail.open(db, keep=3)
    DeviceTrail.open(db, keep=3)  # migrating twice is harmless
    vent = [_frame("vent-1", i, mb.encode_response(mb.MEASURED_CP1, b"7D  22")) for i in range(5)]
    other = _frame("vent-2", 0, b"\x01\x24\x00\xff\r", partition=1)
    bad = _frame("vent-1", 5, mb.encode_response(mb.MEASURED_CP1, b"7D  2"))
    dead = _dead(bad, 0, "WireError: measured data of 5 bytes is no run of 6-byte items")
    hl7 = Message("raw.hl7v2", 0, 9, b"MRN1", b"MSH|^~\\&|", {bh.MESSAGE_ID: "m"}, 0)
    no_device = _dead(hl7, 1, "ParseError: no PID")
    garbled = Message(DEADLETTER, 0, 2, None, b"not json", {}, 0)

    first = [*vent[:4], other, dead, no_device, garbled]
    # The dead letter without a device and the garbled one concern no device.
    assert [trail_entry(m) is not None for m in first] == [True] * 6 + [False] * 2
    trail.record(first)
    trail.record([*vent[2:], dead])  # redelivery and one more frame

    frames = trail.newest("vent-1", FRAME)
    assert [f.offset for f in frames] == [4, 3, 2]  # newest first, the oldest trimmed
    assert frames[0].raw == vent[4].value
    assert frames[0].message_id == "vent-1/boot/4"
    assert frames[0].at == "2026-11-25T21:00:04.000000+00:00"
    assert [f.raw for f in trail.newest("vent-2", FRAME)] == [other.value]
    (letter,) = trail.newest("vent-1", DEAD)
    assert letter.raw == bad.value  # the original bytes, not the envelope
    assert letter.error == "WireError: measured data of 5 bytes is no run of 6-byte items"
    assert (letter.group, letter.origin, letter.attempts) == (
        "normalizer-device",
        "raw.device/0@5",
        1,
    )
    shown = letter.as_json()
    assert shown["hex"].startswith("01 24 37 44")
    assert shown["ascii"] == "<SOH>$7D  2" + bad.value[-3:-1].decode() + "<CR>"
    assert trail.newest("vent-1", FRAME, limit=1)[0].offset == 4
    assert trail.newest("nobody", FRAME) == []


def _rejected(device: str, offset: int, raw: bytes, reason: str, detail: str = "") -> Message:
    when = datetime(2026, 11, 26, 1, 0, offset % 60, tzinfo=UTC)
    record = rj.rejected_record(device, "astm", raw, reason, f"{device}/b/{offset}", when, detail)
    return Message(rj.TOPIC, 0, offset, record.key, record.value, dict(record.headers), 0)


def test_rejected_bytes_are_a_kind_of_their_own_and_never_push_frames_out(db: Database) -> None:
    trail = DeviceTrail.open(db, keep=2)
    frame = _frame("lab-1", 0, b"\x021H|\\^&\r\x03A1\r\n")
    noise = [_rejected("lab-1", i, b"\xff" * (i + 1), "garbage") for i in range(4)]
    bad = _rejected("lab-1", 4, b"\x022R|1\r\x0300\r\n", "checksum")
    sequence = _rejected("lab-1", 5, b"\x025R|2\r\x03", "framing", "frame number 5, expected 3")
    trail.record([frame, *noise, bad])
    trail.record([sequence, bad])  # one new, one redelivered
    assert [f.raw for f in trail.newest("lab-1", FRAME)] == [frame.value]
    kept = trail.newest("lab-1", REJECTED)
    assert [e.offset for e in kept] == [5, 4]
    assert kept[0].error == "framing: frame number 5, expected 3"
    shown = kept[1].as_json()
    assert (shown["reason"], shown["ascii"]) == ("checksum", "<STX>2R|1<CR><ETX>00<CR><LF>")
    assert shown["bus"] == f"{rj.TOPIC}/0@4" and "error" not in shown
    big = _rejected("lab-2", 0, b"\xaa" * 5000, "garbage")
    trail.record([big])
    (entry,) = trail.newest("lab-2", REJECTED)
    assert len(entry.raw) == rj.MAX_BYTES
    assert entry.as_json()["reason"] == "garbage (first 4096 of 5000 bytes)"


def test_ascii_names_control_bytes_and_shows_the_rest_in_hex() -> None:
    assert ascii_text(b"\x02H|\\^&\r\x17\x7f\x9b") == "<STX>H|\\^&<CR><ETB><DEL><9B>"


class BadOnce(MedibusVentilator):
    """A ventilator whose next measured-data answer has a truncated item (a firmware fault
    the checksum does not catch)."""

    def __init__(self, port: PtyPort, *, seed: int = 1) -> None:
        super().__init__(port, seed=seed)
        self.bad_pending = threading.Event()

    def _reply(self, cmd: int, data: bytes = b"", values: object = None) -> None:
        if cmd == mb.MEASURED_CP1 and self.bad_pending.is_set():
            self.bad_pending.clear()
            data = data[:-1]
        super()._reply(cmd, data, values)  # type: ignore[arg-type]


def test_frames_of_a_simulated_ventilator_and_its_dead_letter_over_http(
    tmp_path: Path, db_url: str
) -> None:
    db = open_database(db_url)
    store = FhirStore(db)
    trail = DeviceTrail.open(db)
    bus = MemoryBus(partitions=2)
    bus.ensure_topics([RAW_DEVICE, DEADLETTER])
    port = PtyPort(tmp_path / "ttyVENT0")
    sim = BadOnce(port, seed=3)
    sim.start()
    gateway = SerialGateway(bus)
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_normalizer, args=(bus, stop), daemon=True),
        threading.Thread(
            target=run_consumer,
            args=(bus, TRAIL_GROUP, TRAIL_TOPICS, trail.record),
            kwargs={"stop": stop, "poll_timeout_s": 0.1},
            daemon=True,
        ),
    ]
    settings = Settings(data_dir=tmp_path)
    app = FastAPI()
    app.include_router(build_device_router(store, HealthBoard(), authorize, trail=trail))
    guard = security_wiring.build_guard(settings, store, None)
    app.add_middleware(AuthorizationMiddleware, guard=guard, public_paths=DEFAULT_PUBLIC)
    engineer = mint_development_token(settings, "user/Device.rs", subject="biomed")
    clerk = mint_development_token(settings, "user/Patient.rs", subject="clerk")
    patient = mint_development_token(settings, "patient/*.rs user/Device.rs", patient="p1")
    try:
        for t in threads:
            t.start()
        gateway.apply([DeviceConnection("vent-9", "medibus", str(port.path), {})])
        wait_for(lambda: len(trail.newest("vent-9", FRAME)) >= 2, 20, "two frames")
        sim.bad_pending.set()
        wait_for(lambda: bool(trail.newest("vent-9", DEAD)), 20, "the dead letter")
        sim.faults.add("corrupt_checksum", 1)  # the driver refuses it: not a frame, no letter
        wait_for(lambda: bool(trail.newest("vent-9", REJECTED)), 20, "the rejected frame")
        with serving_app(app) as base:

            def get(path: str, token: str) -> httpx.Response:
                auth = {"Authorization": f"Bearer {token}"}
                return httpx.get(f"{base}/devices/vent-9/{path}", headers=auth, timeout=10)

            frames = get("frames", engineer)
            assert frames.status_code == 200, frames.text
            shown = frames.json()["frames"]
            assert shown[0]["protocol"] == "medibus"
            assert all(
                f["ascii"].startswith("<SOH>") and f["ascii"].endswith("<CR>") for f in shown
            )
            assert bytes.fromhex(shown[0]["hex"].replace(" ", ""))[:1] == b"\x01"
            letters = get("dead-letters", engineer).json()["dead_letters"]
            assert len(letters) == 1
            assert "6-byte items" in letters[0]["error"]
            assert letters[0]["origin"].startswith("raw.device/")
            # The dead frame is among the frames too: it is what the device really sent.
            assert letters[0]["hex"] in [f["hex"] for f in get("frames", engineer).json()["frames"]]
            refused = get("rejected", engineer).json()["rejected"]
            assert [r["reason"] for r in refused] == ["checksum"]
            assert refused[0]["ascii"].startswith("<SOH>") and refused[0]["ascii"].endswith("<CR>")
            assert refused[0]["hex"] not in [
                f["hex"] for f in get("frames", engineer).json()["frames"]
            ]
            assert get("rejected", patient).status_code == 403
            assert get("frames", clerk).status_code == 403
            assert get("dead-letters", patient).status_code == 403
            assert httpx.get(f"{base}/devices/vent-9/frames", timeout=10).status_code == 401
            assert get("frames?limit=0", engineer).status_code == 422
    finally:
        gateway.apply([])
        stop.set()
        for t in threads:
            t.join(10)
        sim.stop()
        db.close()
