"""HL7 v2 parser and mapping, fed mutated real messages: only ``MappingError`` comes out of
``normalize``; the gateway's ``judge`` always returns a verdict and ``build_ack`` an ACK."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.intake import judge
from adapters.hl7v2.normalize import normalize
from caregraph.errors import MappingError
from tests.fuzz.support import budget, mutated, time_limit
from tests.unit.hl7v2 import corpus

RECEIVED = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
PCD = corpus.pcd01("FUZZ0001", 3)

# Fragments that have broken parsers before: escapes (good, unknown, unterminated, odd hex),
# delimiters in odd places, huge and odd numbers, charsets, invalid UTF-8, segment breaks.
INTERESTING = [
    b"\\X4\\",
    b"\\XZZ\\",
    b"\\E",
    b"\\F\\\\S\\",
    b"\\.br\\",
    b"\\Cxxyy\\",
    b"\\M2842\\",
    b"\\Z99\\",
    b"^~\\&",
    b"|||||||||",
    b"~" * 200,
    b"^" * 200,
    b"&" * 200,
    b"9" * 5000,
    b"1E999999",
    b"-0.0e-9999",
    b"NaN",
    b"\r\rOBX|",
    b"\rMSH|^~\\&|",
    b"\rPID|||",
    b"\xff\xfe\xc3\x28",
    b"\xed\xa0\x80",
    b"UNICODE UTF-8",
    b"8859/1",
    b"ISO IR87",
    b"20240230",
    b"99991231235960.9999+9999",
    b"\x00",
]


def _checked_normalize(raw: bytes) -> None:
    with time_limit(), contextlib.suppress(MappingError):
        normalize(raw, received_at=RECEIVED)


@budget(300)
@given(mutated(corpus.CORPUS, INTERESTING))
@example(PCD[: len(PCD) // 2])  # truncated mid-segment
@example(PCD.replace(b"MSH|^~\\&|", b"MSH|^~\\"))  # encoding characters cut short
@example(PCD.replace(b"MSH|^~\\&|", b"MSH|||||"))  # delimiters all the same
@example(PCD.replace(b"98", b"\\X4\\98\\E"))  # broken escapes in OBX-5
@example(PCD.replace(b"98", b"9" * 5000))  # a huge number
@example(PCD.replace(b"98", b"1e99999"))
@example(PCD.replace(b"|P|2.6", b"|P|2.6|||||8859/1") + b"\xe9\xff")  # charset, bad bytes
@example(PCD.replace(b"|P|2.6", b"|P|2.6|||||UNICODE UTF-8") + b"\xc3\x28")
@example(PCD.replace(b"\r", b"\n"))
@example(b"MSH|^~\\&|" + b"~" * 100_000)  # deep repetition in one field
@example(b"MSH")
@example(b"")
def test_normalize_raises_only_mapping_errors(raw: bytes) -> None:
    _checked_normalize(raw)


@budget(150)
@given(st.binary(max_size=2000))
@example(b"MSH|^~\\&|\xff\xfe")
def test_random_bytes_raise_only_mapping_errors(raw: bytes) -> None:
    _checked_normalize(raw)
    _checked_normalize(b"MSH|^~\\&|" + raw)


@budget(200)
@given(mutated(corpus.CORPUS, INTERESTING))
@example(PCD[:40])
def test_the_gateway_always_answers(raw: bytes) -> None:
    with time_limit():
        verdict = judge(raw, received_at=RECEIVED)
        assert verdict.outcome in ("AA", "AE", "AR")
        ack = build_ack(
            raw if verdict.header is None else verdict.header,
            verdict.outcome,
            verdict.error,
            at=RECEIVED,
        )
        assert ack.startswith(b"MSH")
        assert build_ack(raw, "AE", verdict.error, at=RECEIVED).startswith(b"MSH")
