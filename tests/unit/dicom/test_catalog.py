"""ImagingStudy (and Patient) resources -> C-FIND rows, and matching over them."""

from __future__ import annotations

from typing import Any

from devices.dicom.catalog import StudyCatalog, rows_of

STUDY: dict[str, Any] = {
    "resourceType": "ImagingStudy",
    "id": "s1",
    "identifier": [
        {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"},
        {"type": {"coding": [{"code": "ACSN"}]}, "value": "ACC9"},
    ],
    "subject": {"reference": "Patient/p1"},
    "started": "2024-03-05T23:30:00+01:00",
    "referrer": {"reference": "Practitioner/x", "display": "Who^Doctor"},
    "description": "Head",
    "series": [
        {
            "uid": "1.2.3.1",
            "number": 2,
            "modality": {"code": "CT"},
            "instance": [
                {"uid": "1.2.3.1.1", "sopClass": {"code": "1.2.840.10008.5.1.4.1.1.2"}},
                {"uid": "1.2.3.1.2", "number": 7, "sopClass": {"code": "1.2"}},
            ],
        }
    ],
}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {"system": "urn:x", "value": "OTHER"},
        {"type": {"coding": [{"code": "MR"}]}, "value": "MRN1", "assigner": {"display": "H"}},
    ],
    "name": [{"family": "Doe", "given": ["Jane", "Q"], "prefix": ["Dr"]}],
    "birthDate": "1980-02-14",
    "gender": "female",
}


def test_rows_of_a_study_and_its_patient() -> None:
    first, second = rows_of([STUDY, PATIENT])
    assert first.study_instance_uid == "1.2.3" and first.accession_number == "ACC9"
    # the local wall time the modality wrote, not UTC (it would be another day)
    assert (first.study_date, first.study_time) == ("20240305", "233000")
    assert (first.patient_id, first.issuer_of_patient_id) == ("MRN1", "H")
    assert first.patient_name == "Doe^Jane^Q^Dr"
    assert (first.patient_birth_date, first.patient_sex) == ("19800214", "F")
    assert (first.series_number, first.modality, first.instance_number) == ("2", "CT", "")
    assert second.instance_number == "7" and second.referring_physician_name == "Who^Doctor"


def test_studies_not_from_dicom_and_missing_patients() -> None:
    other = {**STUDY, "identifier": [{"system": "urn:x", "value": "1"}]}
    assert rows_of([other]) == []
    (row, _) = rows_of([{**STUDY, "started": "2024-03-05"}])  # no Patient included
    assert (row.study_date, row.study_time, row.patient_id) == ("20240305", "", "")


def test_the_catalog_matches_like_the_index() -> None:
    asked: list[list[tuple[str, str]]] = []

    def search(params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        asked.append(params)
        return [STUDY, PATIENT]

    catalog = StudyCatalog(search)
    keys = {"StudyInstanceUID": "", "PatientName": "doe*", "NumberOfStudyRelatedInstances": ""}
    (match,) = catalog.find("STUDY", keys, returned=set(keys))
    assert match["StudyInstanceUID"] == "1.2.3" and match["NumberOfStudyRelatedInstances"] == 2
    assert catalog.find("STUDY", {"PatientName": "Smith*"}) == []
    assert catalog.find("SERIES", {"Modality": "MR"}) == []
    assert len(asked) == 3
