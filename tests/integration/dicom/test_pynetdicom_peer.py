"""The gateway's upper layer with a second, independent peer: pynetdicom as SCU."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from bus.memory import MemoryBus
from devices.dicom import DicomGateway
from tests.integration.dicom.conftest import AE_TITLE, Running
from tests.unit.dicom.helpers import bundled_path

pytestmark = pytest.mark.integration

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def associate(running: Running, *contexts: str) -> Association:
    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = 8192  # small, so responses and data sets are fragmented
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", running.gateway.port, ae_title=AE_TITLE)
    assert assoc.is_established
    return assoc


def test_echo_store_find_and_release(running: Running) -> None:
    assoc = associate(running, VERIFICATION, CT_IMAGE_STORAGE, STUDY_ROOT_FIND)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        ct = pydicom.dcmread(bundled_path("CT_small.dcm"))
        assert assoc.send_c_store(ct).Status == 0x0000
        query = pydicom.Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.PatientID = "1CT1"
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    finally:
        assoc.release()
    statuses = [status.Status for status, _ in responses]
    assert statuses == [0xFF00, 0x0000]
    identifier = responses[0][1]
    assert identifier.StudyInstanceUID == ct.StudyInstanceUID
    assert running.gateway.stats.stored == 1


def test_a_context_the_gateway_does_not_offer_is_refused(running: Running) -> None:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.5.1.4.31")  # Modality Worklist FIND: not offered
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", running.gateway.port, ae_title=AE_TITLE)
    try:
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        assert accepted == {VERIFICATION}
    finally:
        assoc.release()


def test_associations_beyond_the_limit_are_rejected_transiently(tmp_path: Path) -> None:
    gateway = DicomGateway(
        tmp_path / "dicom",
        MemoryBus(),
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        max_associations=1,
    )
    with gateway:
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(VERIFICATION)
        first = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
        assert first.is_established
        try:
            second = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
            assert second.is_rejected
            rejection = second.acceptor.primitive
            assert rejection is not None
            assert (rejection.result, rejection.result_source, rejection.diagnostic) == (
                0x02,
                0x03,
                0x02,
            )
        finally:
            first.release()
        third = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
        assert third.is_established  # the slot is free again
        third.release()
