from __future__ import annotations

import struct

import pytest

from devices.dicom.pdu_guard import MAX_CONTROL_PDU, PduGuard, PduRefused


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def pdv(data: bytes, *, command: bool = False, last: bool = True) -> bytes:
    control = (0x01 if command else 0) | (0x02 if last else 0)
    return struct.pack(">IBB", len(data) + 2, 1, control) + data


def test_p_data_is_bound_by_the_announced_maximum() -> None:
    guard = PduGuard(max_pdu=16384, max_message=1 << 20)
    assert guard.body_limit(header(0x04, 16384)) == 16384
    with pytest.raises(PduRefused, match="0x04"):
        guard.body_limit(header(0x04, 16385))


@pytest.mark.parametrize("pdu_type", [0x01, 0x04, 0x05, 0x07])
def test_four_gigabytes_are_refused_before_reading(pdu_type: int) -> None:
    with pytest.raises(PduRefused):
        PduGuard(16384, 1 << 20).body_limit(header(pdu_type, 0xFFFFFFFF))


def test_control_pdus_get_a_fixed_allowance() -> None:
    guard = PduGuard(16384, 1 << 20)
    assert guard.body_limit(header(0x01, MAX_CONTROL_PDU)) == MAX_CONTROL_PDU
    with pytest.raises(PduRefused):
        guard.body_limit(header(0x01, MAX_CONTROL_PDU + 1))


def test_message_size_is_counted_across_pdus_and_reset_by_the_last_fragment() -> None:
    guard = PduGuard(max_pdu=4096, max_message=10_000)
    for _ in range(2):  # two whole messages of 8000 bytes each pass
        guard.on_p_data(pdv(b"c" * 50, command=True))
        guard.on_p_data(pdv(b"x" * 4000, last=False))
        guard.on_p_data(pdv(b"x" * 4000, last=True))
    guard.on_p_data(pdv(b"x" * 4000, last=False) + pdv(b"x" * 4000, last=False))
    with pytest.raises(PduRefused, match="10000"):
        guard.on_p_data(pdv(b"x" * 4000, last=False))
