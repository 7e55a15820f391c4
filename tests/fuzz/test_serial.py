"""Each serial protocol's decoder behind ``raw.device`` (IntelliVue, Datex AS/3, Medibus,
ASTM): mutated content, re-framed with a valid checksum so it reaches the decoder and not
only the framer, and mutated wire bytes (bad checksums, truncated frames). The only error
out of ``observation_records`` is ``MappingError`` (``WireError``), and every Observation
it makes is JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from adapters.serial import astm, datex, medibus
from adapters.serial import headers as dh
from adapters.serial import intellivue as iv
from adapters.serial.normalize import observation_records
from bus import headers as bh
from bus.base import Message
from bus.topics import RAW_DEVICE
from caregraph.errors import MappingError
from tests.fuzz.support import apply_mutations, budget, mutated, time_limit

T0 = datetime(2026, 8, 1, 10, 0, tzinfo=UTC)
ON = datex.GROUP_EXISTS | datex.GROUP_ACTIVE
_CONTROL = bytes(range(0x20))


def _message(protocol: str, raw: bytes, extra: dict[str, str] | None = None) -> Message:
    headers = bh.make_headers(f"serial/{protocol}", f"{protocol}-dev/1/7", "x", received_at=T0)
    headers[dh.PROTOCOL] = protocol
    headers[dh.DEVICE_ID] = f"{protocol}-dev"
    headers.update(extra or {})
    return Message(RAW_DEVICE, 0, 7, f"{protocol}-dev".encode(), raw, headers, 0)


def _iv_reply(*values: tuple[int, int, Decimal]) -> bytes:
    obs = tuple(iv.NuObs(physio, 0, unit, iv.encode_float(v)) for physio, unit, v in values)
    return iv.poll_reply(1, 1, 8000, None, [iv.NumericObject(1, 0x24182, obs)])


ANCHOR = {dh.TIME_ANCHOR: iv.TimeAnchor(0, T0).header()}
IV_SEEDS = [
    _iv_reply((0x4182, 0x0AA0, Decimal(61))),
    _iv_reply((0x4182, 0x0AA0, Decimal("1e30")), (0xFFFF, 0xFFFF, Decimal(-5))),
]
DATEX_SEEDS = [
    datex.encode_phdb_record(1_780_000_000, {"ecg.hr": 61}, {0: ON}),
    datex.encode_phdb_record(0, {"ecg.hr": -32767, "ecg.st1": 32767}, {0: ON, 1: ON}),
]
MEDIBUS_SEEDS = [
    medibus.encode_measured([(0xD6, "12"), (0x05, "99999999"), (0xFF, "-1.5e9")]),
    medibus.encode_measured([(0x00, "")]),
]
ASTM_SEEDS = [
    b"H|\\^&|||X",
    b"R|1|^^^K|4.2|mmol/L",
    b"R|2|^^^GLU|99999999999999999999|mg/dL||H||F||||20260801100000",
    b"P|1||PID-1",
    b"O|1|S1||^^^K",
    b"L|1",
]

Build = Callable[[bytes], Message]
BUILDERS: dict[str, tuple[list[bytes], Build]] = {
    "intellivue": (IV_SEEDS, lambda ud: _message("intellivue", iv.encode_frame(ud), ANCHOR)),
    "datex": (DATEX_SEEDS, lambda rec: _message("datex", datex.encode_frame(rec))),
    "medibus": (
        MEDIBUS_SEEDS,
        lambda data: _message(
            "medibus",
            medibus.encode_response(
                medibus.MEASURED_CP1, bytes(b for b in data if b not in _CONTROL)
            ),
            {dh.DEVICE_TIME: T0.isoformat()},
        ),
    ),
}


def _observations(message: Message) -> None:
    with time_limit():
        try:
            records = observation_records(message)
        except MappingError as exc:
            event(f"{message.headers[dh.PROTOCOL]}: {type(exc).__name__}")
            return
        event(f"{message.headers[dh.PROTOCOL]}: {'some' if records else 'no'} observations")
        for record in records:
            assert json.loads(record.value)["resourceType"] == "Observation"


@budget(250)
@given(st.sampled_from(sorted(BUILDERS)), st.data())
def test_decoders_raise_only_wire_errors_on_reframed_content(
    name: str, data: st.DataObject
) -> None:
    seeds, build = BUILDERS[name]
    content = data.draw(mutated(seeds), label="content")
    _observations(build(content))


def _astm_message(records: list[bytes]) -> Message:
    clean = [bytes(b for b in r if b not in astm._FORBIDDEN and b != 0x0D) for r in records]
    return _message("astm", b"".join(astm.encode_message(clean)))


@budget(150)
@given(st.lists(mutated(ASTM_SEEDS, [b"|", b"^", b"\\", b"&", b"9" * 400]), max_size=8))
@example([b"H|\\^&", b"R|1|^^^K|" + b"9" * 400 + b"|mmol/L", b"L|1"])  # a record over a frame
@example([b"R|1|^^^K|NaN|", b"R|2|^^^K|-Infinity|x"])
@example([b"R"])
def test_astm_records_raise_only_wire_errors(records: list[bytes]) -> None:
    _observations(_astm_message(records))


def _wire_seeds() -> list[tuple[str, bytes, dict[str, str]]]:
    out = [
        (n, build(seeds[0]).value, dict(build(seeds[0]).headers))
        for n, (seeds, build) in BUILDERS.items()
    ]
    astm_seed = _astm_message(ASTM_SEEDS)
    out.append(("astm", astm_seed.value, dict(astm_seed.headers)))
    return out


WIRE = _wire_seeds()


@budget(250)
@given(
    st.sampled_from(range(len(WIRE))),
    st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 4096),
            st.integers(0, 64),
            st.binary(min_size=1, max_size=8),
        ),
        max_size=4,
    ),
)
@example(0, [(3, 10, 0, b"x")])  # truncated frames
@example(1, [(3, 10, 0, b"x")])
@example(2, [(0, 3, 0, b"\xff")])  # bad checksums
@example(3, [(0, 5, 0, b"\x00")])
def test_broken_wire_bytes_raise_only_wire_errors(
    which: int, ops: list[tuple[int, int, int, bytes]]
) -> None:
    protocol, wire, headers = WIRE[which]
    raw = apply_mutations(wire, ops)
    _observations(Message(RAW_DEVICE, 0, 7, f"{protocol}-dev".encode(), raw, headers, 0))


def test_a_poll_reply_cut_inside_an_observation_is_a_wire_error() -> None:
    """Found by the harness above: a 58-byte IntelliVue poll reply whose observation list
    claims one more observation than its bytes hold (struct.error escaped before)."""
    content = (
        b"\xe1\x00\x00\x02\x00\x02\x00J\x00\x01\x00\x07\x00D\x00!\x00\x00\x00\x00\x0c\x16"
        b"\x00:\x00\x01\x00\x00\x1f@\xff\xff\xff\xff\xff\xff\xff\xff\x00\x01\x00\x06\x08\x03"
        b'\x00\x01\x00"\x00\x00\x01\x01\x00\x1c\x00\x01\x00\x02\x00\x16\t$\x00\x04\x00\x02'
        b"A\x82\tP\x00\nA\x82\x00\x00\n\xa0\x00\x00\x00="
    )
    _, build = BUILDERS["intellivue"]
    with pytest.raises(MappingError, match="observation truncated"):
        observation_records(build(content))
