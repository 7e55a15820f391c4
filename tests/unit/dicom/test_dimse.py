from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_ECHO_RSP, C_FIND_RSP, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_STORE
from pynetdicom.pdu import P_DATA_TF

from devices.dicom.dimse import (
    CommandError,
    decode_command,
    p_data_pdus,
    response,
    split_p_data,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


def pynetdicom_bytes(message: object, primitive: object, max_pdu: int = 16382) -> bytes:
    """What pynetdicom puts on the wire for a response primitive."""
    message.primitive_to_message(primitive)  # type: ignore[attr-defined]
    out = b""
    for p_data in message.encode_msg(1, max_pdu):  # type: ignore[attr-defined]
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        out += pdu.encode()
    return out


@pytest.mark.parametrize(("status", "comment"), [(0x0000, None), (0xC000, "bad UID (0020,000D)")])
def test_c_store_response_matches_pynetdicom(status: int, comment: str | None) -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = "1.2.3.45"
    primitive.Status = status
    if comment:
        primitive.ErrorComment = comment  # type: ignore[assignment]
    ours = response(0x0001, 7, CT, status, sop_instance_uid="1.2.3.45", error_comment=comment)
    assert p_data_pdus(1, ours, None, 16382) == pynetdicom_bytes(C_STORE_RSP(), primitive)


def test_c_echo_response_matches_pynetdicom() -> None:
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 1
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    primitive.Status = 0
    ours = response(0x0030, 1, "1.2.840.10008.1.1", 0)
    assert p_data_pdus(1, ours, None, 0) == pynetdicom_bytes(C_ECHO_RSP(), primitive, 0)


def test_c_find_response_with_identifier_fragments_like_pynetdicom() -> None:
    identifier = b"\x10\x00\x20\x00\x04\x00\x00\x00ABCD" * 600  # 7200 bytes
    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo = 3
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    primitive.Status = 0xFF00
    primitive.Identifier = BytesIO(identifier)
    ours = response(0x0020, 3, "1.2.840.10008.5.1.4.1.2.2.1", 0xFF00, has_data_set=True)
    assert p_data_pdus(1, ours, identifier, 4096) == pynetdicom_bytes(C_FIND_RSP(), primitive, 4096)


def test_request_round_trip() -> None:
    command = response(0x0001, 9, CT, 0, sop_instance_uid="1.2.3")
    pdus = p_data_pdus(5, command, b"\x01\x02" * 10, 0)
    fragments = list(split_p_data(pdus[6 : 6 + int.from_bytes(pdus[2:6], "big")]))
    assert [(f.context_id, f.is_command, f.is_last) for f in fragments] == [(5, True, True)]
    decoded = decode_command(fragments[0].data)
    assert decoded.field == 0x8001
    assert decoded.uid(0x00001000) == "1.2.3"
    assert not decoded.has_data_set


@pytest.mark.parametrize(
    "body",
    [b"\x00\x00\x00\x10\x01\x03abc", b"\x00\x00\x00\x01\x01", b"\x00\x00"],
)
def test_broken_p_data_is_refused(body: bytes) -> None:
    with pytest.raises(CommandError):
        list(split_p_data(body))


def test_broken_command_set_is_refused() -> None:
    with pytest.raises(CommandError):
        decode_command(b"\x08\x00\x16\x00\x02\x00\x00\x001.")  # group 0008 in a command
    with pytest.raises(CommandError, match="missing"):
        decode_command(b"").us(0x0100)
