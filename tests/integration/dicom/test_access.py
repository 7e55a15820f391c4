"""Called AE title, the per-operation allowlist and C-MOVE, against dcmtk and pynetdicom."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from bus.memory import MemoryBus
from devices.dicom import DicomGateway
from tests.integration.dicom.conftest import AE_TITLE, Dcmtk
from tests.unit.dicom.helpers import bundled_path

pytestmark = pytest.mark.integration

VERIFICATION = "1.2.840.10008.1.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def move_port() -> int:
    return _free_port()


@pytest.fixture
def gateway(tmp_path: Path, move_port: int) -> Iterator[DicomGateway]:
    callers = {
        "MODALITY": {"hosts": ["127.0.0.1"], "operations": ["store"]},
        "VIEWER": {"hosts": ["127.0.0.1"], "operations": ["C-FIND", "C-MOVE"], "port": move_port},
        "GETTER": {"hosts": ["127.0.0.1"], "operations": ["get"]},
        "FAR": {"hosts": ["192.0.2.7"], "operations": ["find", "move"], "port": 104},
    }
    gw = DicomGateway(
        tmp_path / "dicom",
        MemoryBus(),
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        allowed_callers=callers,
    )
    with gw:
        yield gw


def test_an_association_to_another_called_ae_title_is_rejected(
    gateway: DicomGateway, dcmtk: Dcmtk
) -> None:
    port = str(gateway.port)
    wrong = dcmtk.run("echoscu", "-aet", "MODALITY", "-aec", "SOMEONE_ELSE", "127.0.0.1", port)
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stderr, wrong.stderr
    right = dcmtk.run("echoscu", "-aet", "MODALITY", "-aec", AE_TITLE, "127.0.0.1", port)
    assert right.returncode == 0, right.stderr

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="ANY-SCP")
    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert rejection is not None
    # rejected-permanent, service-user, called-AE-title-not-recognized (PS3.8 table 9-21)
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 7)
    assert gateway.stats.rejected_associations == 2


def test_called_ae_enforcement_can_be_turned_off(tmp_path: Path, dcmtk: Dcmtk) -> None:
    gw = DicomGateway(
        tmp_path / "dicom",
        MemoryBus(),
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        require_called_ae=False,
    )
    with gw:
        result = dcmtk.run("echoscu", "-aec", "ANY-SCP", "127.0.0.1", str(gw.port))
        assert result.returncode == 0, result.stderr


def test_an_unknown_caller_is_rejected_as_calling_ae_not_recognized(
    gateway: DicomGateway,
) -> None:
    ae = AE(ae_title="FAR")  # known, but not from this host
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert rejection is not None
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 3)


def test_a_store_only_caller_may_store_but_not_query(
    gateway: DicomGateway, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    port = str(gateway.port)
    ct = bundled_path("CT_small.dcm")
    stored = dcmtk.run("storescu", "-aet", "MODALITY", "-aec", AE_TITLE, "127.0.0.1", port, ct)
    assert stored.returncode == 0, stored.stderr
    assert gateway.stats.stored == 1
    query = dcmtk.run(
        "findscu", "-S", "-aet", "MODALITY", "-aec", AE_TITLE,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
        "127.0.0.1", port,
    )  # fmt: skip
    assert query.returncode != 0
    assert "No Acceptable Presentation Contexts" in query.stderr, query.stderr

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        results = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assert results == {StudyRootQueryRetrieveInformationModelFind: 0x01}  # user rejection
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()

    # The viewer may query what the modality stored.
    found = dcmtk.run(
        "findscu", "-S", "-aet", "VIEWER", "-aec", AE_TITLE,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
        "127.0.0.1", port,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert pydicom.dcmread(ct).StudyInstanceUID in found.stderr


def test_a_store_on_a_context_accepted_for_another_operation_is_refused(
    gateway: DicomGateway,
) -> None:
    """GETTER may C-GET, for which storage contexts are accepted (in the reverse role);
    a C-STORE it sends on one of them is answered 0x0124, and the association goes on."""
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(VERIFICATION)
    role = build_role(CTImageStorage, scu_role=True, scp_role=True)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE, ext_neg=[role])
    assert assoc.is_established
    try:
        status = assoc.send_c_store(pydicom.dcmread(bundled_path("CT_small.dcm")))
        assert status.Status == 0x0124
        assert "not permitted" in status.ErrorComment
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert gateway.stats.stored == 0


def _store_ct(gateway: DicomGateway, dcmtk: Dcmtk) -> str:
    ct = bundled_path("CT_small.dcm")
    stored = dcmtk.run(
        "storescu", "-aet", "MODALITY", "-aec", AE_TITLE, "127.0.0.1", str(gateway.port), ct
    )
    assert stored.returncode == 0, stored.stderr
    return str(pydicom.dcmread(ct).StudyInstanceUID)


def test_move_sends_the_study_to_the_destination(
    gateway: DicomGateway, dcmtk: Dcmtk, tmp_path: Path, move_port: int
) -> None:
    study = _store_ct(gateway, dcmtk)
    out = tmp_path / "moved"
    out.mkdir()
    # movescu is the destination itself: it listens on move_port, where the allowlist
    # says VIEWER is.
    result = dcmtk.run(
        "movescu", "-v", "-S", "-aet", "VIEWER", "-aem", "VIEWER", "-aec", AE_TITLE,
        "--port", str(move_port), "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", str(gateway.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Received Final Move Response (Success)" in result.stderr, result.stderr
    (received,) = list(out.iterdir())
    original = pydicom.dcmread(bundled_path("CT_small.dcm"))
    again = pydicom.dcmread(received)
    for keyword in ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "PixelData"):
        assert again.get(keyword) == original.get(keyword)


def test_move_to_an_unknown_destination_is_refused(
    gateway: DicomGateway, dcmtk: Dcmtk, tmp_path: Path, move_port: int
) -> None:
    study = _store_ct(gateway, dcmtk)
    result = dcmtk.run(
        "movescu", "-v", "-S", "-aet", "VIEWER", "-aem", "NOWHERE", "-aec", AE_TITLE,
        "--port", str(move_port),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", str(gateway.port),
    )  # fmt: skip
    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in result.stderr, (
        result.stderr
    )


def test_move_to_a_destination_that_is_down_fails_with_counts(
    gateway: DicomGateway, dcmtk: Dcmtk, move_port: int
) -> None:
    study = _store_ct(gateway, dcmtk)
    # movescu without --port: nothing listens where VIEWER should be
    result = dcmtk.run(
        "movescu", "-v", "-S", "-aet", "VIEWER", "-aem", "VIEWER", "-aec", AE_TITLE,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", str(gateway.port),
    )  # fmt: skip
    assert "Final Move Response (Refused: OutOfResourcesSubOperations)" in result.stderr, (
        result.stderr
    )
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        responses = list(
            assoc.send_c_move(query, "VIEWER", StudyRootQueryRetrieveInformationModelMove)
        )
    finally:
        assoc.release()
    ((status, _),) = responses
    assert status.Status == 0xA702
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (0, 1)
