"""Bytes a serial driver refused, as a record on ``raw.device.rejected`` (pure).

A frame with a bad checksum, a frame out of sequence or that decodes to nothing the
protocol allows, and bytes outside any frame are counted by the driver (``DriverStats``)
and answered as the protocol says (NAK, or ignored); this record keeps *what* arrived, so a
biomedical engineer can tell line noise from a wrong baud rate from a device that breaks
the protocol (the device trail shows the newest of them in the console's device page).

A topic of its own, not ``raw.device``: raw.device holds the messages a device sent, made
durable before the device is acknowledged, that the device normalizer decodes and a replay
decodes again; rejected bytes are diagnostics, published best effort after the answer (a
burst, then a few per second at most), and no consumer that decodes should ever see them.

The value is the bytes as received, the first ``MAX_BYTES`` of them (a run of garbage can
be long); the headers say which device, why, and how many bytes there were.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from adapters.serial import headers as dh
from bus.base import Record
from bus.headers import make_headers
from bus.topics import RAW_DEVICE_REJECTED

TOPIC = RAW_DEVICE_REJECTED
CONTENT_TYPE = "application/octet-stream"
# The largest frame a driver accepts: a trail entry is no larger than a good frame's.
MAX_BYTES = 4096

# ``checksum``, ``framing`` (a frame the protocol does not allow here: length, trailer,
# sequence number, content) or ``garbage`` (bytes outside any frame).
REASON = "device-reject-reason"
DETAIL = "device-reject-detail"  # what exactly, when the driver can say more
SIZE = "device-reject-size"  # bytes received; the value holds at most MAX_BYTES of them
REASONS = ("checksum", "framing", "garbage")


def rejected_record(
    device_id: str,
    protocol: str,
    raw: bytes,
    reason: str,
    message_id: str,
    received_at: datetime,
    detail: str = "",
) -> Record:
    """The ``raw.device.rejected`` record for ``raw``, keyed by device like raw.device (so
    a device's rejects keep their order on one partition).

    Raises:
        ValueError: ``reason`` is not one of ``REASONS``.
    """
    if reason not in REASONS:
        raise ValueError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    headers = make_headers(f"serial/{protocol}", message_id, CONTENT_TYPE, received_at=received_at)
    headers[dh.DEVICE_ID] = device_id
    headers[dh.PROTOCOL] = protocol
    headers[REASON] = reason
    headers[SIZE] = str(len(raw))
    if detail:
        headers[DETAIL] = " ".join(detail.split())[:200]
    return Record(TOPIC, raw[:MAX_BYTES], device_id.encode(), headers)


def describe(headers: Mapping[str, str], kept: int) -> str:
    """One line for an engineer: ``checksum``, ``framing: frame number 3, expected 2``,
    ``garbage (first 4096 of 9000 bytes)``; ``kept`` is the length of the value."""
    text = headers.get(REASON) or "rejected"
    detail = headers.get(DETAIL)
    if detail:
        text = f"{text}: {detail}"
    size = headers.get(SIZE, "")
    if size.isascii() and size.isdigit() and len(size) < 20 and int(size) > kept:
        text = f"{text} (first {kept} of {size} bytes)"
    return text
