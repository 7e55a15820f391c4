from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_ECHO_RSP, C_FIND_RSP, C_GET_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_STORE
from pynetdicom.pdu import P_DATA_TF

from devices.dicom.dimse import (
    CommandError,
    decode_command,
    p_data_pdus,
    response,
    split_p_data,
    store_request,
)
from devices.dicom.part10 import data_set_offset, file_header

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


def test_c_get_response_and_c_store_request_match_pynetdicom() -> None:
    get = C_GET()
    get.MessageIDBeingRespondedTo = 4
    get.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    get.Status = 0xFF00
    get.NumberOfRemainingSuboperations = 2
    get.NumberOfCompletedSuboperations = 1
    get.NumberOfFailedSuboperations = 0
    get.NumberOfWarningSuboperations = 0
    ours = response(0x0010, 4, "1.2.840.10008.5.1.4.1.2.2.3", 0xFF00, sub_operations=(2, 1, 0, 0))
    assert p_data_pdus(1, ours, None, 0) == pynetdicom_bytes(C_GET_RSP(), get, 0)

    store = C_STORE()
    store.MessageID = 5
    store.AffectedSOPClassUID = CT
    store.AffectedSOPInstanceUID = "1.2.3.4"
    store.Priority = 0
    store.DataSet = BytesIO(b"\x08\x00\x18\x00\x08\x00\x00\x001.2.3.4\x00")
    theirs = pynetdicom_bytes(C_STORE_RQ(), store, 0)
    ours_rq = p_data_pdus(1, store_request(5, CT, "1.2.3.4"), store.DataSet.getvalue(), 0)
    assert ours_rq == theirs


def test_data_set_offset_of_a_written_file() -> None:
    header = file_header(CT, "1.2.3", "1.2.840.10008.1.2.1", "AE")
    assert data_set_offset(header + b"rest") == len(header)
    with pytest.raises(ValueError):
        data_set_offset(b"\0" * 200)
