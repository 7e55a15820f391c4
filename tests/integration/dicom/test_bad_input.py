"""Bad input from issue 4, each answered, the gateway still up, nothing half-written."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from pydicom.config import disable_value_validation
from pynetdicom import AE, _config

from bus.base import Bus, Consumer, Record
from bus.memory import MemoryBus
from bus.topics import RAW_DICOM
from caregraph.errors import BusUnavailable
from devices.dicom import DicomGateway
from tests.integration.dicom.conftest import AE_TITLE, Dcmtk, Running
from tests.unit.dicom.helpers import bundled_path

pytestmark = pytest.mark.integration

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"


def still_up(running: Running, dcmtk: Dcmtk) -> None:
    result = dcmtk.run("echoscu", "-aec", AE_TITLE, "127.0.0.1", running.port)
    assert result.returncode == 0, result.stderr


def nothing_stored(running: Running) -> None:
    assert running.files() == []  # no object, no temporary file left behind
    assert running.raw_messages() == []
    assert running.gateway.stats.stored == 0


def read_until_closed(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_truncated_file_is_not_understood(
    running: Running, dcmtk: Dcmtk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dcmtk's storescu refuses to read MR_truncated.dcm at all, so pynetdicom sends its
    # bytes as they are on disk (chunked sending skips decoding; without it pydicom would
    # read the short value and re-encode it as a shorter but whole element).
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = AE(ae_title="TRUNCATOR")
    ae.add_requested_context(MR_IMAGE_STORAGE, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", running.gateway.port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(Path(bundled_path("MR_truncated.dcm")))
    finally:
        assoc.release()
    assert status.Status == 0xC000
    assert "7FE0,0010" in str(status.ErrorComment)
    nothing_stored(running)
    still_up(running, dcmtk)


def test_http_request_on_the_dicom_port(running: Running, dcmtk: Dcmtk) -> None:
    with socket.create_connection(("127.0.0.1", running.gateway.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: caregraph\r\nAccept: */*\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer[:1] == b"\x07"  # A-ABORT, then the connection is closed
    nothing_stored(running)
    still_up(running, dcmtk)


@pytest.mark.parametrize("pdu_type", [0x01, 0x04])
def test_four_gigabyte_pdu_is_aborted_unread(running: Running, dcmtk: Dcmtk, pdu_type: int) -> None:
    with socket.create_connection(("127.0.0.1", running.gateway.port), timeout=5) as sock:
        sock.sendall(bytes([pdu_type, 0]) + b"\xff\xff\xff\xff")
        started = time.monotonic()
        sent = 0
        try:  # keep streaming: the gateway must not wait for (or buffer) 4 GiB
            for _ in range(64):
                sock.sendall(b"\0" * 65536)
                sent += 65536
        except OSError:
            pass
        answer = read_until_closed(sock)
    assert time.monotonic() - started < 10
    assert answer[:1] == b"\x07"
    assert running.gateway.stats.aborted_pdus == 1
    still_up(running, dcmtk)


def test_oversized_p_data_inside_an_association(running: Running, dcmtk: Dcmtk) -> None:
    ae = AE(ae_title="BIGPDU")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", running.gateway.port, ae_title=AE_TITLE)
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    assert raw is not None
    raw.sendall(b"\x04\x00\xff\xff\xff\xff" + b"\0" * 1024)
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established
    raw.close()  # pynetdicom leaves a requestor's socket open after a peer abort
    assert running.gateway.stats.aborted_pdus == 1
    still_up(running, dcmtk)


def test_data_set_larger_than_allowed_is_aborted(tmp_path: Path, dcmtk: Dcmtk) -> None:
    bus = MemoryBus()
    gateway = DicomGateway(
        tmp_path / "dicom",
        bus,
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        max_pdu=16384,
        max_message_bytes=20_000,
    )
    with gateway:
        port = str(gateway.port)
        big = dcmtk.run(
            "storescu", "-aec", AE_TITLE, "127.0.0.1", port, bundled_path("CT_small.dcm")
        )
        assert big.returncode != 0
        assert gateway.stats.aborted_pdus == 1 and gateway.stats.stored == 0
        small = dcmtk.run(
            "storescu", "-aec", AE_TITLE, "127.0.0.1", port, bundled_path("MR_small.dcm")
        )
        assert small.returncode == 0, small.stderr
    assert len(bus.snapshot(RAW_DICOM)) == 1


def write_copy(path: Path, **values: str) -> Path:
    ds = pydicom.dcmread(bundled_path("CT_small.dcm"))
    # The point is to send values that are not valid UIDs; pydicom would warn on them.
    with disable_value_validation():
        for keyword, value in values.items():
            setattr(ds, keyword, value)
            if keyword == "SOPInstanceUID":
                ds.file_meta.MediaStorageSOPInstanceUID = value
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_path_characters_in_uids_are_refused(
    running: Running, dcmtk: Dcmtk, tmp_path: Path, keyword: str
) -> None:
    evil = write_copy(tmp_path / "evil.dcm", **{keyword: "1.2.3/../../../../tmp/evil"})
    result = dcmtk.run("storescu", "-v", "-aec", AE_TITLE, "127.0.0.1", running.port, str(evil))
    assert "Received Store Response (Error: CannotUnderstand)" in result.stderr, result.stderr
    nothing_stored(running)
    assert not Path("/tmp/evil").exists()
    still_up(running, dcmtk)


def test_path_characters_in_patient_id_are_only_data(
    running: Running, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    evil = write_copy(tmp_path / "evil.dcm", PatientID="../../../../etc/passwd")
    result = dcmtk.run("storescu", "-v", "-aec", AE_TITLE, "127.0.0.1", running.port, str(evil))
    assert result.returncode == 0, result.stderr
    (message,) = running.raw_messages()
    assert message.key == b"../../../../etc/passwd"
    (stored,) = running.files()
    assert stored.parent.parent == running.data_dir / "objects"
    assert "passwd" not in str(stored)


def test_allowlist_of_calling_ae_titles_and_hosts(tmp_path: Path, dcmtk: Dcmtk) -> None:
    allowed = {"MODALITY": {"127.0.0.1"}, "ELSEWHERE": {"192.0.2.7"}, "ANYHOST": set()}
    gateway = DicomGateway(
        tmp_path / "dicom",
        MemoryBus(),
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        allowed_callers=allowed,
    )
    with gateway:
        port = str(gateway.port)

        def echo(calling: str) -> int:
            return dcmtk.run(
                "echoscu", "-aet", calling, "-aec", AE_TITLE, "127.0.0.1", port
            ).returncode

        assert echo("MODALITY") == 0
        assert echo("ANYHOST") == 0
        assert echo("INTRUDER") != 0
        assert echo("ELSEWHERE") != 0  # a known title from the wrong host
        assert gateway.stats.rejected_associations == 2


class FlakyBus(Bus):
    """A bus that is down until told otherwise."""

    def __init__(self) -> None:
        self.inner = MemoryBus()
        self.down = True

    def publish_many(self, records: Sequence[Record]) -> None:
        if self.down:
            raise BusUnavailable("broker unreachable (test)")
        self.inner.publish_many(records)

    def subscribe(self, group: str, topics: Iterator[str] | Sequence[str]) -> Consumer:
        return self.inner.subscribe(group, topics)

    def ensure_topics(self, topics: Iterator[str] | Sequence[str]) -> None:
        self.inner.ensure_topics(topics)

    def ping(self) -> None:
        if self.down:
            raise BusUnavailable("broker unreachable (test)")

    def close(self) -> None:
        self.inner.close()


def test_bus_down_is_out_of_resources_and_a_resend_succeeds(tmp_path: Path, dcmtk: Dcmtk) -> None:
    bus = FlakyBus()
    gateway = DicomGateway(tmp_path / "dicom", bus, ae_title=AE_TITLE, host="127.0.0.1", port=0)
    ct = bundled_path("CT_small.dcm")
    with gateway:
        port = str(gateway.port)
        refused = dcmtk.run("storescu", "-v", "-aec", AE_TITLE, "127.0.0.1", port, ct)
        assert "Store Response (Refused: OutOfResources)" in refused.stderr, refused.stderr
        assert bus.inner.snapshot(RAW_DICOM) == []
        bus.down = False
        again = dcmtk.run("storescu", "-aec", AE_TITLE, "127.0.0.1", port, ct)
        assert again.returncode == 0, again.stderr
        assert len(bus.inner.snapshot(RAW_DICOM)) == 1
        assert gateway.stats.failed == 1


def test_idle_connections_are_capped(tmp_path: Path, dcmtk: Dcmtk) -> None:
    gateway = DicomGateway(
        tmp_path / "dicom",
        MemoryBus(),
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        max_associations=1,
        timeout_s=5,
    )
    with gateway:
        idle = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(2)]
        try:
            time.sleep(0.3)  # let the accept loop register them
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as extra:
                assert read_until_closed(extra, 5) == b""  # closed without a word
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        port = str(gateway.port)
        assert dcmtk.run("echoscu", "-aec", AE_TITLE, "127.0.0.1", port).returncode == 0
