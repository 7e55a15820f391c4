from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bus.base import Message
from bus.deadletter import deadletter_record, decode_deadletter, describe
from bus.errors import DeadLetterFormatError
from bus.topics import DEADLETTER

MESSAGE = Message("raw.hl7v2", 3, 17, None, b"\x0bMSH|^~\\&\xff\x1c\r", {"source": "lab"}, 5)


def test_round_trip_keeps_original_bytes_and_source() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = deadletter_record(MESSAGE, "normalizer", "ValueError: x", 5, failed_at=when)
    assert record.topic == DEADLETTER and record.key is None
    assert record.headers["source"] == "lab"
    letter = decode_deadletter(record.value)
    assert letter.value == MESSAGE.value and letter.key is None
    assert (letter.topic, letter.partition, letter.offset) == ("raw.hl7v2", 3, 17)
    assert (letter.group, letter.error, letter.attempts, letter.failed_at) == (
        "normalizer",
        "ValueError: x",
        5,
        when,
    )


def test_describe_is_one_line() -> None:
    assert describe(ValueError("a\n  b")) == "ValueError: a b"
    assert describe(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"version": 2}', "unknown deadletter version"),
        (b'{"version": 1}', "lacks field"),
    ],
)
def test_garbage_is_a_typed_error(value: bytes, complaint: str) -> None:
    with pytest.raises(DeadLetterFormatError, match=complaint):
        decode_deadletter(value)


def test_bad_field_types_are_refused() -> None:
    body = json.loads(deadletter_record(MESSAGE, "g", "e", 1).value)
    for field, bad in [("offset", "17"), ("partition", True), ("value", "***"), ("headers", [])]:
        broken = dict(body, **{field: bad})
        with pytest.raises(DeadLetterFormatError):
            decode_deadletter(json.dumps(broken).encode())
