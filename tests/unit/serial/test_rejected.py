"""Bytes a driver refuses: counted as before, and published (bounded, rate-limited, best
effort) on ``raw.device.rejected`` for the device trail."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from adapters.serial import astm
from adapters.serial import headers as dh
from adapters.serial import rejected as rj
from bus import headers as bh
from bus.base import Record
from bus.memory import MemoryBus
from caregraph.errors import BusUnavailable
from devices.serial import make_driver
from devices.serial.base import SerialDriver

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def test_the_record_keeps_the_first_bytes_and_says_why_and_how_many() -> None:
    record = rj.rejected_record("lab-1", "astm", b"\x02" * 5000, "garbage", "lab-1/b/1", T0)
    assert record.topic == rj.TOPIC and record.key == b"lab-1"
    assert record.value == b"\x02" * rj.MAX_BYTES
    h = record.headers
    assert (h[dh.DEVICE_ID], h[dh.PROTOCOL], h[rj.REASON], h[rj.SIZE]) == (
        "lab-1", "astm", "garbage", "5000",
    )  # fmt: skip
    assert h[bh.MESSAGE_ID] == "lab-1/b/1" and h[bh.RECEIVED_AT].startswith("2026-11-26T01:00")
    assert rj.describe(h, len(record.value)) == "garbage (first 4096 of 5000 bytes)"
    small = rj.rejected_record("d", "astm", b"\x02x", "framing", "m", T0, "frame number 3,\n x")
    assert rj.describe(small.headers, 2) == "framing: frame number 3, x"
    assert rj.describe({}, 0) == "rejected"
    for size in ("\u00b2", "9" * 5000):  # a size header int() refuses: shown without it
        assert rj.describe({rj.REASON: "garbage", rj.SIZE: size}, 2) == "garbage"
    with pytest.raises(ValueError, match="reason"):
        rj.rejected_record("d", "astm", b"x", "cosmic rays", "m", T0)


def _rejects(bus: MemoryBus) -> list[tuple[bytes, str]]:
    return [(m.value, m.headers[rj.REASON]) for m in bus.snapshot(rj.TOPIC)]


def test_the_driver_counts_and_publishes_each_kind() -> None:
    bus = MemoryBus(partitions=1)
    driver = make_driver("astm", "/dev/null", "lab-1", bus)
    bad = astm.encode_frame(1, b"R|1", final=True)[:-4] + b"00\r\n"
    driver.rejected("checksum", bad)
    driver.rejected("framing", b"\x021R|1\r\x03", "frame number 1, expected 2")
    driver.rejected("garbage", b"\xff\xfe\xfd")
    s = driver.stats
    assert (s.checksum_errors, s.framing_errors, s.garbage_bytes) == (1, 1, 3)
    assert (s.rejects_published, s.rejects_unpublished) == (3, 0)
    assert _rejects(bus) == [
        (bad, "checksum"),
        (b"\x021R|1\r\x03", "framing"),
        (b"\xff\xfe\xfd", "garbage"),
    ]
    (_, framing, _) = bus.snapshot(rj.TOPIC)
    assert framing.headers[rj.DETAIL] == "frame number 1, expected 2"
    # each has its own id, on the device's key, like its raw frames
    assert len({m.headers[bh.MESSAGE_ID] for m in bus.snapshot(rj.TOPIC)}) == 3
    assert {m.key for m in bus.snapshot(rj.TOPIC)} == {b"lab-1"}


def test_a_noisy_line_publishes_a_burst_then_a_few_per_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr("devices.serial.base.monotonic", lambda: now[0])
    bus = MemoryBus(partitions=1)
    driver = make_driver("astm", "/dev/null", "lab-1", bus)
    for _ in range(50):  # a wrong baud rate: garbage all the way
        driver.rejected("garbage", b"\xaa")
    burst = SerialDriver.reject_burst
    assert driver.stats.rejects_published == burst
    assert driver.stats.rejects_unpublished == 50 - burst
    assert driver.stats.garbage_bytes == 50  # every byte still counted
    now[0] += 1.0
    for _ in range(10):
        driver.rejected("garbage", b"\xaa")
    assert driver.stats.rejects_published == burst + int(SerialDriver.reject_per_s)


class DownBus(MemoryBus):
    def publish_many(self, records: Iterable[Record]) -> None:
        raise BusUnavailable("broker down")


def test_a_bus_failure_is_counted_and_never_reaches_the_session() -> None:
    driver = make_driver("astm", "/dev/null", "lab-1", DownBus())
    driver.rejected("checksum", b"\x02bad")
    driver.rejected("checksum", b"\x02bad")  # not asked again at once
    s = driver.stats
    assert (s.checksum_errors, s.rejects_published, s.rejects_unpublished) == (2, 0, 2)
    assert s.publish_errors == 0 and s.last_error == ""  # the readings' link is fine
