from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from caregraph.errors import BusUnavailable, MappingError
from devices.dicom.index import IndexedInstance, InstanceIndex, UnsupportedQuery
from devices.dicom.status import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    SopClassMismatch,
    failure,
    status_for,
)
from devices.dicom.storage import ObjectStore, StorageFailed


def test_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    first = store.put(b"hello")
    assert first.sha256 == hashlib.sha256(b"hello").hexdigest() and not first.existed
    assert first.path == tmp_path / "objects" / first.sha256[:2] / first.sha256
    assert store.put(b"hello").existed
    assert store.read(first.sha256) == b"hello"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_paths_never_come_from_outside(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    for bad in ("../" * 10 + "etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(ValueError):
            store.path_for(bad)


def test_stray_temporary_files_are_swept(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "in-crashed").write_bytes(b"half")
    ObjectStore(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unwritable_store_fails_cleanly(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    (tmp_path / "tmp").rmdir()
    (tmp_path / "tmp").write_bytes(b"")  # a file where the temporary directory should be
    with pytest.raises(StorageFailed):
        store.put(b"x")
    assert not store.path_for(hashlib.sha256(b"x").hexdigest()).exists()


def row(sop: str, series: str, study: str, **kw: str) -> IndexedInstance:
    base = IndexedInstance(
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        instance_number="1",
        series_instance_uid=series,
        series_number="1",
        modality="CT",
        series_description="",
        study_instance_uid=study,
        study_date="20240110",
        study_time="101500",
        accession_number="A1",
        study_id="",
        study_description="Head",
        referring_physician_name="Doe^John",
        patient_id="P1",
        issuer_of_patient_id="",
        patient_name="Smith^Anna",
        patient_birth_date="19800101",
        patient_sex="F",
        sha256="0" * 64,
        size=1,
        transfer_syntax="1.2.840.10008.1.2.1",
    )
    return replace(base, **kw)


@pytest.fixture
def index(tmp_path: Path) -> InstanceIndex:
    idx = InstanceIndex(tmp_path / "index.sqlite3")
    idx.add(row("1.1.1.1", "1.1.1", "1.1"))
    idx.add(row("1.1.1.2", "1.1.1", "1.1"))
    idx.add(row("1.1.2.1", "1.1.2", "1.1", modality="MR", series_number="2"))
    idx.add(
        row(
            "2.1.1.1",
            "2.1.1",
            "2.1",
            patient_id="P2",
            patient_name="Jones^Bo",
            study_date="20230505",
            modality="US",
        )
    )
    idx.add(row("1.1.1.1", "1.1.1", "1.1"))  # re-sent: still one row
    return idx


def test_levels_group_and_count(index: InstanceIndex) -> None:
    assert index.count() == 4
    patients = index.find("PATIENT", {"PatientID": ""}, {"NumberOfPatientRelatedStudies"})
    assert [(p["PatientID"], p["NumberOfPatientRelatedStudies"]) for p in patients] == [
        ("P1", 1),
        ("P2", 1),
    ]
    (study,) = index.find(
        "STUDY",
        {"StudyInstanceUID": "1.1"},
        {"NumberOfStudyRelatedInstances", "ModalitiesInStudy"},
    )
    assert study["NumberOfStudyRelatedInstances"] == 3
    assert sorted(str(study["ModalitiesInStudy"]).split(",")) == ["CT", "MR"]
    assert "SeriesInstanceUID" not in study
    series = index.find("SERIES", {"StudyInstanceUID": "1.1"})
    assert [s["SeriesInstanceUID"] for s in series] == ["1.1.1", "1.1.2"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientName": "smith*"}, ["1.1"]),
        ({"PatientName": "J?NES^BO"}, ["2.1"]),
        ({"StudyDate": "20240101-"}, ["1.1"]),
        ({"StudyDate": "-20231231"}, ["2.1"]),
        ({"StudyDate": "20230101-20241231"}, ["1.1", "2.1"]),
        ({"StudyInstanceUID": "2.1\\1.1"}, ["1.1", "2.1"]),
        ({"ModalitiesInStudy": "MR"}, ["1.1"]),
        ({"PatientID": "P[12]"}, []),  # '[' is literal in DICOM, not a character class
        ({"Modality": "US"}, ["1.1", "2.1"]),  # a series-level key is ignored at STUDY
    ],
)
def test_matching(index: InstanceIndex, keys: dict[str, str], expected: list[str]) -> None:
    found = index.find("STUDY", keys)
    assert sorted(str(f["StudyInstanceUID"]) for f in found) == expected


def test_unknown_level_and_bad_range(index: InstanceIndex) -> None:
    with pytest.raises(UnsupportedQuery):
        index.find("FRAME", {})
    with pytest.raises(UnsupportedQuery):
        index.find("STUDY", {"StudyDate": "1-2-3"})


def test_status_table() -> None:
    assert status_for(SopClassMismatch("x")) == DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert status_for(MappingError("x")) == CANNOT_UNDERSTAND
    assert status_for(BusUnavailable("x")) == OUT_OF_RESOURCES
    assert status_for(StorageFailed("x")) == OUT_OF_RESOURCES
    assert status_for(OSError("disk")) == OUT_OF_RESOURCES
    assert status_for(RuntimeError("bug")) == CANNOT_UNDERSTAND
    ds = failure(MappingError("bad UID " + "x" * 100, "(0020,000D)"))
    assert ds.Status == CANNOT_UNDERSTAND and len(ds.ErrorComment) == 64
