from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pydicom
import pytest

from adapters.dicom import DicomNormalizer, imaging_study_id, normalize_dicom
from bus.base import Message
from bus.headers import make_headers
from bus.topics import RAW_DICOM
from caregraph.errors import MappingError
from tests.unit.dicom.helpers import bundled_path, raw_instance, validate

STUDY = "1.2.826.0.1.3680043.2.9"


def raw_message(offset: int, ds: pydicom.Dataset, key: bytes = b"PID1") -> Message:
    raw = raw_instance(ds, f"{offset:064x}")
    headers = make_headers("dicom:MODALITY", raw.sha256, "x", trace_id=f"t{offset}")
    return Message(RAW_DICOM, 0, offset, key, raw.encode(), headers, 0)


def instance(number: int, series: int = 1) -> pydicom.Dataset:
    ds = pydicom.dcmread(bundled_path("CT_small.dcm"))
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = f"{STUDY}.{series}"
    ds.SOPInstanceUID = f"{STUDY}.{series}.{number}"
    ds.InstanceNumber = number
    return ds


def by_topic(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record.topic, []).append(json.loads(record.value))
    return out


def test_a_batch_gives_each_resource_once_and_one_full_study() -> None:
    batch = [raw_message(i, instance(i + 1)) for i in range(5)]
    records, studies = normalize_dicom(batch)
    topics = by_topic(records)
    assert sorted(topics) == [
        "fhir.Device",
        "fhir.ImagingStudy",
        "fhir.Organization",
        "fhir.Patient",
    ]
    assert all(len(v) == 1 for v in topics.values())
    (study,) = topics["fhir.ImagingStudy"]
    assert study["numberOfInstances"] == 5 and studies[study["id"]] == study
    assert records[-1].topic == "fhir.ImagingStudy"  # after what it references
    for resources in topics.values():
        validate(resources[0])


def test_keys_and_headers() -> None:
    records, _ = normalize_dicom([raw_message(7, instance(1))])
    for record in records:
        resource = json.loads(record.value)
        if record.topic in ("fhir.Patient", "fhir.ImagingStudy"):
            assert record.key == b"PID1"
        else:
            assert record.key == resource["id"].encode()
        assert record.headers["trace-id"] == "t7"
        assert record.headers["message-id"] == f"{7:064x}"
        assert record.headers["content-type"] == "application/fhir+json"


def test_normalizer_accumulates_across_batches_and_bounds_its_cache() -> None:
    normalizer = DicomNormalizer(cache_size=1)
    normalizer.normalize([raw_message(0, instance(1))])
    records = normalizer.normalize([raw_message(1, instance(2)), raw_message(2, instance(1))])
    (study,) = by_topic(records)["fhir.ImagingStudy"]
    assert study["numberOfInstances"] == 2
    other = pydicom.dcmread(bundled_path("MR_small.dcm"))
    normalizer.normalize([raw_message(3, other)])  # evicts STUDY
    records = normalizer.normalize([raw_message(4, instance(3))])
    (study,) = by_topic(records)["fhir.ImagingStudy"]
    assert study["numberOfInstances"] == 1  # nothing to seed from: lookup not wired


def test_cold_cache_is_seeded_by_the_lookup() -> None:
    earlier, _ = normalize_dicom([raw_message(0, instance(1)), raw_message(1, instance(2))])
    stored = json.loads(earlier[-1].value)
    asked: list[str] = []

    def lookup(study_id: str) -> dict[str, Any] | None:
        asked.append(study_id)
        return stored if study_id == stored["id"] else None

    normalizer = DicomNormalizer(lookup=lookup)
    (study,) = by_topic(normalizer.normalize([raw_message(2, instance(3))]))["fhir.ImagingStudy"]
    assert study["numberOfInstances"] == 3
    assert asked == [imaging_study_id(STUDY)]
    normalizer.normalize([raw_message(3, instance(4))])
    assert len(asked) == 1  # the cache answers now


def test_same_bytes_whatever_the_arrival_order() -> None:
    forward, _ = normalize_dicom([raw_message(i, instance(i + 1)) for i in range(4)])
    backward, _ = normalize_dicom([raw_message(i, instance(4 - i)) for i in range(4)])
    assert forward[-1].value == backward[-1].value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"\xff", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"sha256": "x"}', "wrong fields"),
        (b'{"header": "***"}', "wrong fields"),
    ],
)
def test_undecodable_messages(value: bytes, match: str) -> None:
    bad = Message(RAW_DICOM, 2, 9, None, value, {}, 0)
    with pytest.raises(MappingError, match=match) as info:
        normalize_dicom([bad])
    assert info.value.location == "raw.dicom[2]@9"


def test_unmappable_header_names_message_and_tag() -> None:
    bad = instance(1)
    bad.StudyInstanceUID = "9.9.9.9"
    raw = raw_instance(bad)
    # Put path characters in the encoded bytes: pydicom would not write them itself.
    header = raw.header.replace(b"9.9.9.9\0", b"../x/../")
    assert header != raw.header
    value = replace(raw, header=header).encode()
    message = Message(RAW_DICOM, 0, 5, b"PID1", value, {}, 0)
    with pytest.raises(MappingError) as info:
        normalize_dicom([raw_message(0, instance(1)), message])
    assert info.value.location == "raw.dicom[0]@5 (0020,000D)"


def test_unknown_header_syntax_is_refused() -> None:
    body = json.loads(raw_instance(instance(1)).encode())
    body["header_syntax"] = "1.2.840.10008.1.2.1.99"
    bad = Message(RAW_DICOM, 0, 1, None, json.dumps(body).encode(), {}, 0)
    with pytest.raises(MappingError, match="header syntax"):
        normalize_dicom([bad])


def test_an_abridged_header_still_maps() -> None:
    raw = raw_instance(instance(1))
    body = json.loads(raw.encode())
    assert body["omitted"] == []
    message = Message(RAW_DICOM, 0, 0, b"PID1", replace(raw, omitted=("7FE00010",)).encode(), {}, 0)
    records, _ = normalize_dicom([message])
    assert records[-1].topic == "fhir.ImagingStudy"
