from __future__ import annotations

import copy
from datetime import timedelta, timezone
from typing import Any

import pytest

from adapters.dicom import MappingOptions, imaging_study_id, map_instance
from adapters.dicom.header import DicomHeader
from adapters.dicom.mapping import LOCAL_ISSUER_PREFIX, patient_identifier_system
from adapters.dicom.modality import DCM
from caregraph.errors import MappingError
from tests.unit.dicom.helpers import BUNDLED, bundled_header, element, validate


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files_map_to_valid_linked_resources(name: str) -> None:
    mapped = map_instance(bundled_header(name))
    resources = mapped.all()
    for resource in resources:
        validate(resource)
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    study = mapped.study
    refs = [study["subject"]["reference"]]
    refs += [study["referrer"]["reference"]] if "referrer" in study else []
    for series in study["series"]:
        refs += [p["actor"]["reference"] for p in series.get("performer", [])]
    if mapped.device and "owner" in mapped.device:
        refs.append(mapped.device["owner"]["reference"])
    assert set(refs) <= known
    assert study["series"][0]["modality"]["system"] == DCM


def test_ct_small_in_detail() -> None:
    mapped = map_instance(bundled_header("CT_small.dcm"))
    study = mapped.study
    assert study["id"] == imaging_study_id("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
    assert study["identifier"][0] == {
        "system": "urn:dicom:uid",
        "value": "urn:oid:1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
    }
    # CT_small carries TimezoneOffsetFromUTC -0500, so the time is kept.
    assert study["started"] == "2004-01-19T07:27:30-05:00"
    (series,) = study["series"]
    assert series["modality"] == {"system": DCM, "code": "CT", "display": "Computed Tomography"}
    (instance,) = series["instance"]
    assert instance["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.2"
    assert mapped.patient["identifier"][0]["value"] == "1CT1"
    assert mapped.patient["name"][0]["family"] == "CompressedSamples"
    assert mapped.organization is not None and mapped.organization["name"] == "JFK IMAGING CENTER"
    device = mapped.device
    assert device is not None
    assert device["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert {"name": "RHAPSODE", "type": "model-name"} in device["deviceName"]
    assert {"name": "CT01_OC0", "type": "user-friendly-name"} in device["deviceName"]
    assert device["owner"]["reference"] == f"Organization/{mapped.organization['id']}"
    dev = [p for p in series["performer"] if p["function"]["coding"][0]["code"] == "DEV"]
    assert dev[0]["actor"]["reference"] == f"Device/{device['id']}"


def test_mapping_is_deterministic_and_independent_of_the_message() -> None:
    first = map_instance(bundled_header("MR_small.dcm", "a" * 64))
    again = map_instance(bundled_header("MR_small.dcm", "b" * 64))
    assert first == again


def _header(**overrides: Any) -> dict[str, Any]:
    data = bundled_header("rtplan.dcm")
    for tag, value in overrides.items():
        if value is None:
            data.pop(tag, None)
        else:
            data[tag] = value
    return data


def test_staff_become_practitioners_with_roles() -> None:
    mapped = map_instance(
        _header(
            **{
                "00080090": element("PN", {"Alphabetic": "Ref^Rita"}),
                "00081050": element("PN", {"Alphabetic": "Perf^Paul"}),
                "00081070": element("PN", {"Alphabetic": "Op^Olga"}, {"Alphabetic": "^^^^"}),
            }
        )
    )
    names = {p["name"][0]["family"]: p["id"] for p in mapped.practitioners}
    assert set(names) == {"Ref", "Perf", "Op"}
    assert mapped.study["referrer"]["reference"] == f"Practitioner/{names['Ref']}"
    roles = {
        p["actor"]["reference"]: p["function"]["coding"][0]["code"]
        for p in mapped.study["series"][0]["performer"]
    }
    assert roles[f"Practitioner/{names['Perf']}"] == "PRF"
    assert roles[f"Practitioner/{names['Op']}"] == "SPRF"
    for resource in mapped.all():
        validate(resource)


def test_issuer_of_patient_id_becomes_the_identifier_system() -> None:
    def system(data: dict[str, Any], options: MappingOptions | None = None) -> str | None:
        return patient_identifier_system(DicomHeader(data), options or MappingOptions())

    assert system({}) is None
    assert system({}, MappingOptions(default_patient_id_system="urn:x")) == "urn:x"
    assert system({"00100021": element("LO", "1.2.3.4")}) == "urn:oid:1.2.3.4"
    assert system({"00100021": element("LO", "St Elsewhere")}) == LOCAL_ISSUER_PREFIX + (
        "St%20Elsewhere"
    )
    mapped = MappingOptions(issuer_systems={"HOSP": "http://hosp.example/mrn"})
    assert system({"00100021": element("LO", "HOSP")}, mapped) == "http://hosp.example/mrn"
    qualified = {
        "00100021": element("LO", "HOSP"),
        "00100024": element(
            "SQ", {"00400032": element("UT", "2.16.840.1.1"), "00400033": element("CS", "ISO")}
        ),
    }
    assert system(qualified, mapped) == "urn:oid:2.16.840.1.1"


def test_patient_id_with_issuer_keys_the_patient() -> None:
    plain = map_instance(_header())
    issued = map_instance(_header(**{"00100021": element("LO", "1.2.3")}))
    assert plain.patient["id"] != issued.patient["id"]
    identifier = issued.patient["identifier"][0]
    assert identifier["system"] == "urn:oid:1.2.3"
    assert identifier["assigner"] == {"display": "1.2.3"}
    validate(issued.patient)


def test_path_characters_in_patient_id_are_just_data() -> None:
    mapped = map_instance(_header(**{"00100020": element("LO", "../../etc/passwd")}))
    assert mapped.patient["identifier"][0]["value"] == "../../etc/passwd"
    validate(mapped.patient)


@pytest.mark.parametrize("tag", ["0020000D", "0020000E", "00080018"])
def test_path_characters_in_uids_are_refused(tag: str) -> None:
    with pytest.raises(MappingError) as info:
        map_instance(_header(**{tag: element("UI", "1.2.3/../../x")}))
    assert info.value.location == f"({tag[:4]},{tag[4:]})"


@pytest.mark.parametrize("tag", ["0020000D", "00080016", "00080060"])
def test_required_elements_missing(tag: str) -> None:
    with pytest.raises(MappingError):
        map_instance(_header(**{tag: None}))


def test_no_patient_id_still_gives_a_subject() -> None:
    mapped = map_instance(_header(**{"00100020": element("LO")}))
    assert "identifier" not in mapped.patient
    assert mapped.study["subject"]["reference"] == f"Patient/{mapped.patient['id']}"


def test_default_timezone_applies_only_without_an_offset_in_the_header() -> None:
    plus_two = MappingOptions(default_timezone=timezone(timedelta(hours=2)))
    assert map_instance(_header()).study["started"] == "2003-07-16"
    assert map_instance(_header(), plus_two).study["started"] == "2003-07-16T15:35:57+02:00"
    ct = bundled_header("CT_small.dcm")
    assert map_instance(ct, plus_two).study["started"].endswith("-05:00")


def test_bad_integer_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="not an integer"):
        map_instance(_header(**{"00200011": element("IS", "x1")}))


def test_unknown_modality_passes_through() -> None:
    mapped = map_instance(_header(**{"00080060": element("CS", "ZZ")}))
    assert mapped.study["modality"] == [{"system": DCM, "code": "ZZ"}]


def test_input_is_not_mutated() -> None:
    data = bundled_header("CT_small.dcm")
    before = copy.deepcopy(data)
    map_instance(data)
    assert data == before
