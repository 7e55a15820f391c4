"""The gateway against dcmtk's echoscu, storescu and findscu, with pydicom's bundled files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest

from adapters.dicom import DicomNormalizer, RawInstance
from adapters.dicom.raw import header_dataset
from bus.memory import MemoryBus
from bus.topics import RAW_DICOM
from bus.worker import run_consumer
from devices.dicom import DicomGateway
from tests.integration.dicom.conftest import AE_TITLE, Dcmtk, Running
from tests.unit.dicom.helpers import bundled_path, validate

pytestmark = pytest.mark.integration

# File -> the storescu option that proposes its transfer syntax (-R: only what is needed).
FILES = {
    "CT_small.dcm": [],
    "MR_small.dcm": [],
    "rtplan.dcm": [],
    "JPEG2000.dcm": ["-xw"],
    "SC_rgb_rle.dcm": ["-xr"],
    "image_dfl.dcm": ["-xd"],
}


def test_echo(running: Running, dcmtk: Dcmtk) -> None:
    result = dcmtk.run("echoscu", "-aec", AE_TITLE, "127.0.0.1", running.port)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", list(FILES))
def test_store_is_durable_published_and_maps(running: Running, dcmtk: Dcmtk, name: str) -> None:
    path = bundled_path(name)
    result = dcmtk.run(
        "storescu", "-R", *FILES[name], "-aec", AE_TITLE, "127.0.0.1", running.port, path
    )
    assert result.returncode == 0, result.stderr
    (message,) = running.raw_messages()
    raw = RawInstance.decode(message.value)
    original = pydicom.dcmread(path, stop_before_pixels=True)
    assert raw.transfer_syntax == original.file_meta.TransferSyntaxUID
    # The PatientID keys the partition; image_dfl.dcm has none, so its study does.
    assert message.key == str(original.PatientID or original.StudyInstanceUID).encode()
    assert message.headers["message-id"] == raw.sha256
    header = header_dataset(raw)
    assert "PixelData" not in header and header.SOPInstanceUID == original.SOPInstanceUID

    (stored,) = [p for p in running.files() if "objects" in p.parts]
    assert stored.name == raw.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    again = pydicom.dcmread(stored)
    assert again.SOPInstanceUID == original.SOPInstanceUID
    assert again.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID

    records = DicomNormalizer().normalize([message])
    for record in records:
        validate(json.loads(record.value))
    assert running.gateway.stats.stored == 1


def test_find_at_patient_study_and_series_level(
    running: Running, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
    stored = dcmtk.run(
        "storescu",
        "-R",
        "-aec",
        AE_TITLE,
        "127.0.0.1",
        running.port,
        *[bundled_path(n) for n in names],
    )
    assert stored.returncode == 0, stored.stderr

    def find(model: str, *keys: str) -> list[pydicom.Dataset]:
        out = tmp_path / f"find-{model}-{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        args = [model, "-X", "-od", str(out), "-aec", AE_TITLE]
        for key in keys:
            args += ["-k", key]
        result = dcmtk.run("findscu", *args, "127.0.0.1", running.port)
        assert result.returncode == 0, result.stderr
        return [pydicom.dcmread(p) for p in sorted(out.iterdir())]

    patients = find("-P", "QueryRetrieveLevel=PATIENT", "PatientID=4MR1", "PatientName")
    assert [(str(p.PatientID), str(p.PatientName)) for p in patients] == [
        ("4MR1", "CompressedSamples^MR1")
    ]
    studies = find(
        "-S",
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyDate=20030101-20041231",
    )
    assert sorted(str(s.ModalitiesInStudy) for s in studies) == ["CT", "MR", "RTPLAN"]
    assert all(int(s.NumberOfStudyRelatedInstances) == 1 for s in studies)
    ct = pydicom.dcmread(bundled_path("CT_small.dcm"), stop_before_pixels=True)
    series = find(
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={ct.StudyInstanceUID}",
        "SeriesInstanceUID",
        "Modality",
    )
    assert [(str(s.SeriesInstanceUID), str(s.Modality)) for s in series] == [
        (str(ct.SeriesInstanceUID), "CT")
    ]
    assert find("-S", "QueryRetrieveLevel=STUDY", "PatientName=Nobody*") == []


def test_concurrent_associations(running: Running, dcmtk: Dcmtk, tmp_path: Path) -> None:
    source = pydicom.dcmread(bundled_path("CT_small.dcm"))
    dirs = []
    for sender in range(3):
        folder = tmp_path / f"sender{sender}"
        folder.mkdir()
        for n in range(8):
            source.SOPInstanceUID = f"1.2.826.0.1.3680043.2.77.{sender}.{n}"
            source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
            source.save_as(folder / f"{n}.dcm", enforce_file_format=True)
        dirs.append(folder)
    target = ["-aec", AE_TITLE, "+sd", "127.0.0.1", running.port]
    procs = [
        subprocess.Popen(
            [str(dcmtk.bin_dir / "storescu"), "-aet", f"SENDER{i}", *target, str(folder)],
            env=dict(os.environ, TCP_NODELAY="1"),
            stderr=subprocess.PIPE,
        )
        for i, folder in enumerate(dirs)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    messages = running.raw_messages()
    assert len(messages) == 24
    assert {RawInstance.decode(m.value).calling_ae for m in messages} == {
        "SENDER0",
        "SENDER1",
        "SENDER2",
    }
    assert running.gateway.stats.stored == 24


def test_stored_series_becomes_one_imaging_study_through_the_worker(
    running: Running, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    source = pydicom.dcmread(bundled_path("CT_small.dcm"))
    folder = tmp_path / "series"
    folder.mkdir()
    for n in range(1, 13):
        source.SOPInstanceUID = f"1.2.826.0.1.3680043.2.78.{n}"
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        source.InstanceNumber = n
        source.save_as(folder / f"{n}.dcm", enforce_file_format=True)
    stored = dcmtk.run("storescu", "-aec", AE_TITLE, "+sd", "127.0.0.1", running.port, str(folder))
    assert stored.returncode == 0, stored.stderr

    # As the composition root wires it: the bus worker feeding the normalizer, in small
    # batches so the study is folded across several of them.
    normalizer = DicomNormalizer()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_consumer,
        args=(running.bus, "normalizer-dicom", [RAW_DICOM]),
        kwargs={
            "handler": lambda batch: running.bus.publish_many(normalizer.normalize(batch)),
            "stop": stop,
            "batch_size": 5,
            "poll_timeout_s": 0.1,
        },
    )
    worker.start()
    studies: list[dict[str, object]] = []
    try:
        with running.bus.subscribe("check", ["fhir.ImagingStudy"]) as check:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                studies += [json.loads(m.value) for m in check.poll(0.2, 500)]
                if studies and studies[-1]["numberOfInstances"] == 12:
                    break
    finally:
        stop.set()
        worker.join(10)
    assert studies, "no ImagingStudy was published"
    last = studies[-1]
    validate(last)
    assert last["numberOfInstances"] == 12 and last["numberOfSeries"] == 1
    assert [i["number"] for i in last["series"][0]["instance"]] == list(range(1, 13))
    assert len(studies) < 12  # one per batch, not one per instance


@pytest.mark.parametrize("name", ["CT_small.dcm", "rtplan.dcm"])
def test_get_sends_the_stored_instance_back(
    running: Running, dcmtk: Dcmtk, tmp_path: Path, name: str
) -> None:
    path = bundled_path(name)
    assert (
        dcmtk.run("storescu", "-R", "-aec", AE_TITLE, "127.0.0.1", running.port, path).returncode
        == 0
    )
    original = pydicom.dcmread(path)
    out = tmp_path / "retrieved"
    out.mkdir()
    result = dcmtk.run(
        "getscu", "-v", "-S", "-aec", AE_TITLE,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={original.StudyInstanceUID}",
        "-od", str(out), "127.0.0.1", running.port,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Received C-GET Response (Success)" in result.stderr
    (received,) = list(out.iterdir())
    again = pydicom.dcmread(received)
    assert again.SOPInstanceUID == original.SOPInstanceUID
    for keyword in ("PatientID", "StudyInstanceUID", "PixelData"):
        assert again.get(keyword) == original.get(keyword)


def test_get_of_a_compressed_instance_the_peer_cannot_take(
    running: Running, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    path = bundled_path("JPEG2000.dcm")
    stored = dcmtk.run("storescu", "-xw", "-aec", AE_TITLE, "127.0.0.1", running.port, path)
    assert stored.returncode == 0, stored.stderr
    study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    out = tmp_path / "retrieved"
    out.mkdir()
    # getscu proposes only uncompressed syntaxes by default, and the gateway never
    # transcodes pixel data: the sub-operation fails and the C-GET says so.
    result = dcmtk.run(
        "getscu", "-v", "-S", "-aec", AE_TITLE,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "-od", str(out), "127.0.0.1", running.port,
    )  # fmt: skip
    assert "Number of Failed Suboperations    : 1" in result.stderr, result.stderr
    assert list(out.iterdir()) == []
    echo = dcmtk.run("echoscu", "-aec", AE_TITLE, "127.0.0.1", running.port)
    assert echo.returncode == 0


def test_a_long_header_is_abridged_but_still_maps(tmp_path: Path, dcmtk: Dcmtk) -> None:
    bus = MemoryBus()
    gateway = DicomGateway(
        tmp_path / "dicom", bus, ae_title=AE_TITLE, host="127.0.0.1", port=0,
        max_header_bytes=3000,
    )  # fmt: skip
    path = bundled_path("CT_small.dcm")
    with gateway:
        result = dcmtk.run("storescu", "-aec", AE_TITLE, "127.0.0.1", str(gateway.port), path)
        assert result.returncode == 0, result.stderr
    (message,) = bus.snapshot(RAW_DICOM)
    raw = RawInstance.decode(message.value)
    assert raw.omitted and len(raw.header) <= 3000
    records = DicomNormalizer().normalize([message])
    study = json.loads(records[-1].value)
    validate(study)
    original = pydicom.dcmread(path, stop_before_pixels=True)
    assert study["identifier"][0]["value"] == f"urn:oid:{original.StudyInstanceUID}"
    (stored,) = [p for p in (tmp_path / "dicom" / "objects").rglob("*") if p.is_file()]
    assert pydicom.dcmread(stored).PixelData == pydicom.dcmread(path).PixelData  # file whole


def test_the_index_can_be_rebuilt_from_the_files(tmp_path: Path, dcmtk: Dcmtk) -> None:
    data_dir = tmp_path / "dicom"
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
    gateway = DicomGateway(data_dir, MemoryBus(), ae_title=AE_TITLE, host="127.0.0.1", port=0)
    with gateway:
        for name in names:
            extra = ["-xw"] if name == "JPEG2000.dcm" else []
            result = dcmtk.run(
                "storescu", *extra, "-aec", AE_TITLE, "127.0.0.1", str(gateway.port),
                bundled_path(name),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
    (data_dir / "index.sqlite3").unlink()  # as if lost
    for leftover in data_dir.glob("index.sqlite3-*"):
        leftover.unlink()
    (data_dir / "objects" / "00" / ("0" * 64)).write_bytes(b"not DICOM")  # skipped
    rebuilt = DicomGateway(data_dir, MemoryBus(), ae_title=AE_TITLE, host="127.0.0.1", port=0)
    assert rebuilt.reindex() == 3
    with rebuilt:
        out = tmp_path / "found"
        out.mkdir()
        result = dcmtk.run(
            "findscu", "-S", "-X", "-od", str(out), "-aec", AE_TITLE,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
            "127.0.0.1", str(rebuilt.port),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 3
