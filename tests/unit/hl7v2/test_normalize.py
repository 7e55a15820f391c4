"""HL7 v2 -> FHIR: ADT, lab and PCD-01 results, merges, errors with locations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.codes.mdc import MDC_SYSTEM
from adapters.hl7v2 import (
    Hl7MappingError,
    Hl7ParseError,
    Normalized,
    Options,
    UnsupportedMessage,
    normalize,
)
from adapters.hl7v2.oru import EUI64_SYSTEM, MDC_UNIT_EXTENSION
from tests.unit.hl7v2 import corpus
from tests.unit.hl7v2.fhir_valid import assert_valid

RECEIVED = datetime(2024, 3, 5, 7, 30, 5, tzinfo=UTC)


def run(raw: bytes, **kwargs: Any) -> Normalized:
    return normalize(raw, received_at=RECEIVED, **kwargs)


def of_type(result: Normalized, *resource_types: str) -> list[dict[str, Any]]:
    return [r for r in result.resources if r["resourceType"] in resource_types]


def one(result: Normalized, resource_type: str) -> dict[str, Any]:
    found = of_type(result, resource_type)
    assert len(found) == 1, [r["resourceType"] for r in result.resources]
    return found[0]


@pytest.mark.parametrize("raw", corpus.CORPUS, ids=lambda r: r.split(b"|")[9].decode())
def test_every_resource_validates_against_fhir_r4b(raw: bytes) -> None:
    result = run(raw)
    assert result.resources
    for resource in result.resources:
        assert_valid(resource)
    for merge in result.merges:
        assert_valid(merge.as_parameters())


def test_ids_are_deterministic_and_unique() -> None:
    first, again = run(corpus.ORU_LAB), run(corpus.ORU_LAB)
    assert [r["id"] for r in first.resources] == [r["id"] for r in again.resources]
    keys = [(r["resourceType"], r["id"]) for r in first.resources]
    assert len(keys) == len(set(keys))
    other = run(corpus.ORU_LAB.replace(b"LAB0001", b"LAB0002"))
    # lab results are keyed by order and test (a resend updates them), not by MSH-10
    assert {o["id"] for o in of_type(first, "Observation")} == {
        o["id"] for o in of_type(other, "Observation")
    }
    assert one(first, "Provenance")["id"] != one(other, "Provenance")["id"]
    # the patient is the same entity in both messages
    assert one(first, "Patient")["id"] == one(other, "Patient")["id"]


def test_adt_a01_patient_encounter_bed_and_staff() -> None:
    result = run(corpus.ADT_A01)
    patient = one(result, "Patient")
    mrn = patient["identifier"][0]
    assert mrn["system"] == "urn:oid:1.2.840.99999.1.2" and mrn["value"] == "MRN12345"
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert patient["identifier"][1]["system"] == "urn:caregraph:hl7v2:authority:SSA"
    assert patient["name"][0] == {
        "use": "official",
        "family": "Smith",
        "given": ["Anna", "Maria"],
        "prefix": ["Dr"],
        "suffix": ["Jr"],
    }
    assert patient["birthDate"] == "1980-02-14" and patient["gender"] == "female"
    assert patient["address"][0]["city"] == "Springfield"
    assert patient["address"][0]["use"] == "home"
    telecom = {(t["system"], t["value"], t.get("use")) for t in patient["telecom"]}
    assert ("phone", "(217)555-0101", "home") in telecom
    assert ("email", "anna@example.org", "home") in telecom
    assert ("phone", "(217)555-0199", "work") in telecom

    encounter = one(result, "Encounter")
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["identifier"][0]["value"] == "V0001"
    assert encounter["period"] == {"start": "2024-03-05T08:00:00+01:00"}
    assert encounter["subject"] == {"reference": f"Patient/{patient['id']}"}
    roles = {p["type"][0]["coding"][0]["code"] for p in encounter["participant"]}
    assert roles == {"ATND", "ADM", "REF"}

    locations = {
        loc["physicalType"]["coding"][0]["code"]: loc for loc in of_type(result, "Location")
    }
    assert set(locations) == {"wa", "ro", "bd"}
    bed, room, ward = locations["bd"], locations["ro"], locations["wa"]
    assert bed["partOf"] == {"reference": f"Location/{room['id']}"}
    assert room["partOf"] == {"reference": f"Location/{ward['id']}"}
    assert encounter["location"][0]["location"] == {"reference": f"Location/{bed['id']}"}

    house = next(p for p in of_type(result, "Practitioner") if p["name"][0]["family"] == "House")
    assert house["identifier"][0] == {"system": "urn:oid:1.2.840.99999.1.3", "value": "1234"}
    org = one(result, "Organization")
    assert org["name"] == "NORTH"
    assert patient["managingOrganization"] == {"reference": f"Organization/{org['id']}"}


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("A01", "in-progress"),
        ("A02", "in-progress"),
        ("A03", "finished"),
        ("A04", "in-progress"),
        ("A05", "planned"),
        ("A08", "in-progress"),
        ("A11", "cancelled"),
        ("A13", "in-progress"),
    ],
)
def test_adt_events_set_encounter_status(event: str, status: str) -> None:
    result = run(corpus.ADT_ALL[event])
    assert one(result, "Encounter")["status"] == status


def test_a02_keeps_the_prior_bed_as_completed() -> None:
    encounter = one(run(corpus.ADT_A02), "Encounter")
    assert [loc["status"] for loc in encounter["location"]] == ["active", "completed"]


@pytest.mark.parametrize("event", ["A28", "A31"])
def test_person_updates_create_no_encounter(event: str) -> None:
    result = run(corpus.ADT_ALL[event])
    assert of_type(result, "Encounter") == []
    assert one(result, "Patient")["identifier"][0]["value"] == "MRN12345"


def test_a40_is_a_merge_instruction_not_an_overwrite() -> None:
    result = run(corpus.ADT_A40)
    assert len(result.merges) == 1
    merge = result.merges[0]
    patients = of_type(result, "Patient")
    assert [p["id"] for p in patients] == [merge.surviving["reference"].split("/")[1]]
    assert merge.merged_identifiers[0]["value"] == "MRN99999"
    assert merge.merged != merge.surviving
    params = {p["name"]: p for p in merge.as_parameters()["parameter"]}
    assert params["source-patient"]["valueReference"] == merge.merged


def test_lab_results() -> None:
    result = run(corpus.ORU_LAB)
    obs = {o["code"]["coding"][0]["code"]: o for o in of_type(result, "Observation")}
    glucose = obs["2345-7"]
    assert glucose["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "2345-7",
        "display": "Glucose [Mass/volume] in Serum or Plasma",
    }
    assert glucose["valueQuantity"] == {
        "value": 105,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert glucose["referenceRange"][0]["low"]["value"] == 70
    assert glucose["referenceRange"][0]["high"]["value"] == 99
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    assert glucose["effectiveDateTime"] == "2024-03-05T07:15:00+01:00"  # OBX-14
    assert obs["2951-2"]["effectiveDateTime"] == "2024-03-05T07:00:00+01:00"  # OBR-7
    assert glucose["issued"] == "2024-03-05T07:30:05+00:00"  # receipt
    assert glucose["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["2160-0"]["valueQuantity"]["comparator"] == "<"
    assert obs["8251-1"]["valueString"] == "Sample slightly haemolysed & re-run"
    assert obs["5778-6"]["valueCodeableConcept"]["coding"][0]["code"] == "YEL"
    assert obs["5130-0"]["valueRatio"]["denominator"]["value"] == 128
    assert obs["5130-0"]["status"] == "preliminary"
    assert obs["18769-0"]["valueDateTime"] == "2024-03-05T06:55:00+00:00"
    local = obs["99999-9"]
    assert local["status"] == "corrected"
    assert local["code"]["coding"][0]["system"] == "urn:caregraph:hl7v2:coding-system:99LOC"
    assert local["valueQuantity"] == {"value": 7.5, "unit": "zz/hh"}
    # LOINC codes outside caregraph's table are counted too (and pass through unchanged)
    assert sorted(result.unknown_codes) == ["99LOC|99999-9", "LN|18769-0", "LN|5130-0", "|zz/hh"]
    assert result.counters == {"unknown_code": 3, "unknown_unit": 1}


def test_default_timezone_applies_to_times_without_offset() -> None:
    from zoneinfo import ZoneInfo

    result = run(corpus.ORU_LAB, options=Options(default_tz=ZoneInfo("Europe/Paris")))
    obs = {o["code"]["coding"][0]["code"]: o for o in of_type(result, "Observation")}
    assert obs["18769-0"]["valueDateTime"] == "2024-03-05T06:55:00+01:00"


def test_authority_systems_option() -> None:
    options = Options(authority_systems={"SSA": "http://hl7.org/fhir/sid/us-ssn"})
    patient = one(run(corpus.ADT_A01, options=options), "Patient")
    assert patient["identifier"][1]["system"] == "http://hl7.org/fhir/sid/us-ssn"


def test_pcd01_devices_metrics_and_observations() -> None:
    result = run(corpus.pcd01("PCD9", 10))
    devices = of_type(result, "Device")
    assert len(devices) == 3  # MDS, VMD, channel
    mds = next(d for d in devices if "parent" not in d)
    assert mds["identifier"] == [{"system": EUI64_SYSTEM, "value": "01-23-45-67-89-AB-CD-EF"}]
    assert mds["type"]["coding"][0]["code"] == "69965"
    vmd = next(d for d in devices if d.get("parent") == {"reference": f"Device/{mds['id']}"})
    chan = next(d for d in devices if d.get("parent") == {"reference": f"Device/{vmd['id']}"})
    assert chan["type"]["coding"][0]["code"] == "69643"
    assert mds["patient"]["reference"].startswith("Patient/")
    assert mds["location"]["reference"].startswith("Location/")

    metrics = of_type(result, "DeviceMetric")
    observations = of_type(result, "Observation")
    assert len(metrics) == 10 and len(observations) == 10
    spo2 = next(o for o in observations if o["code"]["coding"][0]["code"] == "150456")
    assert spo2["code"]["coding"][0]["system"] == MDC_SYSTEM
    assert spo2["valueQuantity"]["code"] == "%"
    assert spo2["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert spo2["valueQuantity"]["extension"] == [
        {
            "url": MDC_UNIT_EXTENSION,
            "valueCoding": {"system": MDC_SYSTEM, "code": "262688", "display": "MDC_DIM_PERCENT"},
        }
    ]
    assert spo2["effectiveDateTime"] == "2024-03-05T08:30:00.123+01:00"  # device time
    assert spo2["issued"] == "2024-03-05T07:30:05+00:00"  # receipt time
    assert spo2["category"][0]["coding"][0]["code"] == "vital-signs"
    metric = next(m for m in metrics if spo2["device"] == {"reference": f"DeviceMetric/{m['id']}"})
    assert metric["source"] == {"reference": f"Device/{mds['id']}"}
    assert metric["parent"] == {"reference": f"Device/{chan['id']}"}
    temp = next(o for o in observations if o["code"]["coding"][0]["code"] == "150364")
    assert temp["valueQuantity"]["code"] == "Cel" and temp["valueQuantity"]["value"] == 36.8
    assert result.counters == {}


def test_pcd01_unknown_codes_pass_through_and_are_counted() -> None:
    raw = (
        corpus.pcd01("PCD10", 1)
        .replace(b"150456^MDC_PULS_OXIM_SAT_O2^MDC", b"199999^MDC_VENDOR_THING^MDC")
        .replace(b"262688^MDC_DIM_PERCENT", b"262999^MDC_DIM_ODD")
    )
    result = run(raw)
    observation = one(result, "Observation")
    assert observation["code"]["coding"][0] == {
        "system": MDC_SYSTEM,
        "code": "199999",
        "display": "MDC_VENDOR_THING",
    }
    assert observation["valueQuantity"]["unit"] == "MDC_DIM_ODD"
    assert result.counters == {"unknown_code": 1, "unknown_unit": 1}


def test_provenance_points_at_the_source_message() -> None:
    result = run(corpus.ORU_PCD)
    provenance = one(result, "Provenance")
    assert provenance["recorded"] == "2024-03-05T07:30:05+00:00"
    assert provenance["occurredDateTime"] == "2024-03-05T08:30:00+01:00"
    entity = provenance["entity"][0]["what"]["identifier"]
    assert entity == {"system": "urn:caregraph:hl7v2:message", "value": "ICU-NORTH|PCD0001"}
    # a results message's targets: its results and their patient, not the monitor, its
    # channels, the bed and the facility every reading of the device repeats
    reported = {
        f"{r['resourceType']}/{r['id']}"
        for r in result.resources
        if r["resourceType"] in ("Observation", "Patient", "Encounter")
    }
    assert {t["reference"] for t in provenance["target"]} == reported
    assert {"Observation", "Patient"} <= {ref.split("/")[0] for ref in reported}
    assert {"Device", "DeviceMetric", "Location"} <= {r["resourceType"] for r in result.resources}


def test_an_adt_provenance_targets_everything_the_message_says() -> None:
    result = run(corpus.ADT_A01)
    provenance = one(result, "Provenance")
    others = {f"{r['resourceType']}/{r['id']}" for r in result.resources} - {
        f"Provenance/{provenance['id']}"
    }
    assert {"Patient", "Encounter", "Location", "Practitioner", "Organization"} <= {
        ref.split("/")[0] for ref in others
    }
    assert {t["reference"] for t in provenance["target"]} == others


def test_an_oru_of_device_description_rows_alone_targets_the_devices() -> None:
    # Found by test_generated_oru: no patient and no reading (an MDS row without a value)
    # left the Provenance with no target, and building it raised a ValueError.
    raw = (
        b"MSH|^~\\&|ADTSYS|NORTH^1.2.840.99999.1^ISO|CAREGRAPH|HOSP|20240305083000+0100||"
        b"ORU^R01|G2|P|2.5.1\rPID|1||^^^^MR~||^^^^^^L|||M\rPV1||I\rOBR|1||F1|X^Y^L|||\r"
        b"OBX|1|ST|150456^MDC_PULS_OXIM_SAT_O2^MDC|1||mg/dL|||||F|||||||\r"
    )
    result = run(raw)
    assert not of_type(result, "Observation") and not of_type(result, "Patient")
    targets = {t["reference"] for t in one(result, "Provenance")["target"]}
    devices = {f"Device/{d['id']}" for d in of_type(result, "Device")}
    assert devices and targets == devices
    assert_valid(one(result, "Provenance"))


def test_patient_key_is_the_authority_and_mrn() -> None:
    assert run(corpus.ADT_A01).patient_key == "NORTH&1.2.840.99999.1.2&ISO|MRN12345"
    assert run(corpus.ORU_PCD).patient_key == run(corpus.ADT_A01).patient_key


@pytest.mark.parametrize(
    ("raw", "error", "location", "code"),
    [
        (corpus.adt("A01", "E1", version="2.2"), UnsupportedMessage, "MSH[1]-12", "203"),
        (
            corpus.ADT_A01.replace(b"ADT^A01^ADT_A01", b"ADT^A99"),
            UnsupportedMessage,
            "MSH[1]-9.2",
            "201",
        ),
        (
            corpus.ADT_A01.replace(b"ADT^A01^ADT_A01", b"SIU^S12"),
            UnsupportedMessage,
            "MSH[1]-9.1",
            "200",
        ),
        (corpus.ORU_LAB.replace(b"|105|", b"|1O5|"), Hl7MappingError, "OBX[1]-5", "102"),
        (corpus.ORU_LAB.replace(b"NM|2951-2", b"RP|2951-2"), Hl7MappingError, "OBX[2]-2", "102"),
        (corpus.ORU_LAB.replace(b"H|||F|||", b"H|||Q|||"), Hl7MappingError, "OBX[1]-11", "103"),
        (corpus.ADT_A01.replace(b"19800214|F", b"19801314|F"), Hl7MappingError, "PID[1]-7", "102"),
        (corpus.ADT_A01.replace(b"19800214|F", b"19800214|Q"), Hl7MappingError, "PID[1]-8", "103"),
        (corpus.ADT_A01.replace(b"PV1|1|I|", b"PV1|1|Z|"), Hl7MappingError, "PV1[1]-2", "103"),
        (corpus.ADT_A01.replace(b"ADT0001", b""), Hl7MappingError, "MSH[1]-10", "101"),
        (corpus.ADT_A01.replace(b"\rPV1", b"\rpv1"), Hl7ParseError, "pv1[4]", "100"),
        (b"\x00\x01garbage", Hl7ParseError, "MSH[1]", "100"),
    ],
)
def test_errors_name_segment_field_and_code(
    raw: bytes, error: type[Exception], location: str, code: str
) -> None:
    with pytest.raises(error) as info:
        run(raw)
    assert isinstance(info.value, Hl7MappingError)
    assert info.value.location == location
    assert info.value.code == code


def test_received_at_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        normalize(corpus.ADT_A01, received_at=datetime(2024, 1, 1))


def test_results_do_not_overwrite_adt_demographics_or_encounter_status() -> None:
    adt = run(corpus.ADT_A03)  # discharged
    oru_raw = corpus.msg(
        corpus.msh("ORU^R01^ORU_R01", "LAB9", app="LIS", facility="LAB"),
        "PID|1||MRN12345^^^NORTH&1.2.840.99999.1.2&ISO^MR||Smith^Anna",
        corpus.PV1,  # with the visit number
        "OBR|1|||2345-7^Glucose^LN|||20240305070000+0100",
        "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F",
    )
    result = run(oru_raw)
    assert of_type(result, "Encounter") == []  # the ADT feed owns status and period
    encounter = one(adt, "Encounter")
    assert encounter["status"] == "finished"
    observation = one(result, "Observation")
    assert observation["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    # a separate source Patient, same identifier: the ADT one keeps its address
    assert one(result, "Patient")["id"] != one(adt, "Patient")["id"]
    assert one(result, "Patient")["identifier"][0] == one(adt, "Patient")["identifier"][0]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("1.0.0.0", "1"),
        ("1.5.0.0", "1.5"),
        ("1.5.1.0", "1.5.1"),
        ("1.5.1.1", "1.5.1.1"),
        ("2", "2"),
    ],
)
def test_containment_paths_drop_unused_levels(raw: str, path: str) -> None:
    from adapters.hl7v2.oru import containment_path

    assert containment_path(raw) == path


def test_simulated_his_feed_maps_without_stray_metrics() -> None:
    from devices.feeds.hl7 import HospitalFeed

    feed = HospitalFeed(patients=1)
    vitals = feed.vitals(feed.patients[0], RECEIVED)
    result = run(vitals)
    observations = of_type(result, "Observation")
    assert len(of_type(result, "DeviceMetric")) == len(observations)
    assert result.counters == {}


def test_rows_without_obx18_join_the_device_their_mds_row_named() -> None:
    raw = corpus.pcd01("PCD11", 3)
    lines = raw.split(b"\r")
    # keep OBX-18 on the MDS row only
    lines = [
        line.replace(b"|0123456789ABCDEF^EUI-64", b"|")
        if line.startswith(b"OBX") and not line.startswith(b"OBX|1|")
        else line
        for line in lines
    ]
    result = run(b"\r".join(lines))
    devices = of_type(result, "Device")
    assert len(devices) == 3
    mds = next(d for d in devices if "parent" not in d)
    assert mds["identifier"][0]["value"] == "01-23-45-67-89-AB-CD-EF"
    for metric in of_type(result, "DeviceMetric"):
        assert metric["source"] == {"reference": f"Device/{mds['id']}"}


def test_a_lab_correction_updates_the_result_it_corrects() -> None:
    final = run(corpus.ORU_LAB)
    corrected_raw = corpus.ORU_LAB.replace(b"LAB0001", b"LAB0002").replace(
        b"||105|mg/dL|70-99|H|||F", b"||110|mg/dL|70-99|H|||C"
    )
    corrected = run(corrected_raw)

    def glucose(result: Normalized) -> dict[str, Any]:
        return next(
            o for o in of_type(result, "Observation") if o["code"]["coding"][0]["code"] == "2345-7"
        )

    assert glucose(corrected)["id"] == glucose(final)["id"]
    assert glucose(corrected)["status"] == "corrected"
    assert glucose(corrected)["valueQuantity"]["value"] == 110


def test_repeated_rows_of_one_order_are_all_kept() -> None:
    raw = corpus.ORU_LAB.replace(b"OBX|2|NM|2951-2^Sodium^LN", b"OBX|2|NM|2345-7^Glucose^LN")
    observations = of_type(run(raw), "Observation")
    assert len(observations) == 8
    assert len({o["id"] for o in observations}) == 8


def test_device_readings_are_new_facts_in_every_message() -> None:
    one_ids = {o["id"] for o in of_type(run(corpus.pcd01("M1", 3)), "Observation")}
    two_ids = {o["id"] for o in of_type(run(corpus.pcd01("M2", 3)), "Observation")}
    assert one_ids.isdisjoint(two_ids)


def test_device_reading_ids_start_with_the_reading_time_and_survive_a_restamped_resend() -> None:
    """The readings' ids and their message's Provenance id."""
    raw = corpus.pcd01("M1", 3)
    ids = sorted(o["id"] for o in of_type(run(raw), "Observation", "Provenance"))
    # OBX-14 20240305083000.123+0100, in UTC
    assert len(ids) == 4 and all(i.startswith("20240305T073000123-") for i in ids)
    # a sender that stamps its retransmission anew (MSH-7), received later: the same ids
    resent = raw.replace(b"|20240305083000+0100||ORU", b"|20240305090000+0100||ORU", 1)
    assert resent != raw
    again = normalize(resent, received_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert sorted(o["id"] for o in of_type(again, "Observation", "Provenance")) == ids
    later = raw.replace(b"20240305083000.123+0100", b"20240305083001.123+0100")
    later_run = run(later.replace(b"|M1|", b"|M3|"))
    assert max(ids) < min(o["id"] for o in of_type(later_run, "Observation", "Provenance"))


def test_device_readings_without_a_reading_time_still_get_deterministic_ids() -> None:
    raw = corpus.pcd01("M1", 3).replace(b"20240305083000.123+0100", b"")
    raw = raw.replace(
        b"monitoring of patient^SCT|||20240305083000+0100", b"monitoring of patient^SCT|||"
    )
    ids = sorted(o["id"] for o in of_type(run(raw), "Observation"))
    assert len(set(ids)) == len(ids) == 3
    assert ids == sorted(o["id"] for o in of_type(run(raw), "Observation"))
    provenance = [p["id"] for p in of_type(run(raw), "Provenance")]
    assert provenance == [p["id"] for p in of_type(run(raw), "Provenance")]
    assert not any(i.startswith("2024") for i in [*ids, *provenance])


def test_an_mdc_code_that_is_no_number_for_int_passes_through_as_unknown() -> None:
    """5,000 digits (the fuzzer's; ``int`` refuses text that long) in OBX-3 and OBX-6: an
    unknown code and unit, kept as sent, not a crash."""
    digits = "9" * 5000
    raw = corpus.pcd01("M1", 1)
    raw = raw.replace(b"150456^MDC_PULS_OXIM_SAT_O2^MDC", f"{digits}^X^MDC".encode())
    raw = raw.replace(b"262688^MDC_DIM_PERCENT^MDC", f"{digits}^Y^MDC".encode())
    reading = [o for o in of_type(run(raw), "Observation") if "valueQuantity" in o]
    assert [c["code"] for c in reading[0]["code"]["coding"]] == [digits]
    assert reading[0]["valueQuantity"]["unit"] == "Y"
    assert f"MDC|{digits}" in run(raw).unknown_codes


def test_mdc_numbers_are_what_int_reads_within_32_bits() -> None:
    from adapters.hl7v2.oru import _mdc_number

    assert _mdc_number("150456") == 150456
    assert _mdc_number("4294967295") == 4294967295
    for not_one in ("", "\u00b2", "\u0663", "12345678901", "9" * 5000, "1.5", "-1"):
        assert _mdc_number(not_one) is None


def test_the_memoized_parties_see_every_option() -> None:
    """The Patient, Location and Organization memos key on ``parties.options_key``: an
    option it leaves out would let one site's resources answer for another's."""
    import dataclasses

    from adapters.hl7v2 import parties
    from adapters.hl7v2.datatypes import Options

    options = Options(authority_systems={"HOSP": "urn:oid:1.2.3"})
    key = parties.options_key(options)
    assert [f.name for f in dataclasses.fields(Options)] == ["default_tz", "authority_systems"]
    assert Options(key[0], dict(key[1])) == options


def test_a_caller_changing_its_resources_does_not_change_the_next_message() -> None:
    """Patients, Locations and Organizations are memoized across messages: each result
    holds its own top-level dicts."""
    first = run(corpus.pcd01("MEMO1", 3))
    for resource in first.resources:
        resource["changed"] = True
    second = run(corpus.pcd01("MEMO2", 3))
    assert not any("changed" in r for r in second.resources)


def test_memoized_rows_still_count_and_refuse_per_message() -> None:
    """An OBX row's unchanging fields are worked out once per distinct text
    (``oru._row_plan``): every message still counts its own unknown codes and units, a
    refused row is refused each time at its own position, and each Observation gets its
    own valueQuantity."""
    odd = (
        corpus.pcd01("ROWS1", 2)
        .replace(b"150456^MDC_PULS_OXIM_SAT_O2^MDC", b"199999^MDC_VENDOR_THING^MDC")
        .replace(b"262688^MDC_DIM_PERCENT", b"262999^MDC_DIM_ODD")
    )
    for control_id in (b"ROWS1", b"ROWS2"):
        result = run(odd.replace(b"ROWS1", control_id))
        assert result.counters == {"unknown_code": 1, "unknown_unit": 1}
        assert result.unknown_codes == ("MDC|199999", "MDC|262999")
    first, second = (of_type(run(corpus.pcd01(c, 1)), "Observation")[0] for c in ("Q1", "Q2"))
    assert first["valueQuantity"] == second["valueQuantity"]
    assert first["valueQuantity"] is not second["valueQuantity"]
    first["valueQuantity"]["value"] = 0
    assert of_type(run(corpus.pcd01("Q3", 1)), "Observation")[0]["valueQuantity"]["value"] == 98
    bad = corpus.pcd01("BAD1", 2).replace(b"|1.1.1.2|72|", b"|1.1.1.2|7x2|")
    for where in ("OBX[5]-5", "OBX[5]-5"):
        with pytest.raises(Hl7MappingError) as info:
            run(bad)
        assert info.value.location == where and info.value.code == "102"
    moved = corpus.pcd01("BAD2", 3).replace(b"|1.1.1.3|71|", b"|1.1.1.3|x|")
    with pytest.raises(Hl7MappingError) as info:
        run(moved)
    assert info.value.location == "OBX[6]-5"
    status = corpus.pcd01("BAD3", 3).replace(b"|||||R|||", b"|||||Q|||")
    for _ in range(2):
        with pytest.raises(Hl7MappingError) as info:
            run(status)
        assert info.value.location == "OBX[4]-11" and info.value.code == "103"


def test_a_fleet_shares_row_plans_and_keeps_its_own_devices() -> None:
    """Monitors of one model send the same rows but for OBX-18: the row plans are shared
    (a memo per monitor missed on every row at 1,000 beds), the devices are each one's."""
    from adapters.hl7v2 import oru

    run(corpus.pcd01("FLEET0", 10, eui64="00000000000000A0"))
    plans = oru._row_plan.cache_info().currsize
    eui64s = set()
    for k in range(1, 20):
        result = run(corpus.pcd01(f"FLEET{k}", 10, eui64=f"00000000000000{0xA0 + k:02X}"))
        mds = [d for d in of_type(result, "Device") if d.get("identifier")]
        eui64s.update(
            i["value"] for d in mds for i in d["identifier"] if i["system"] == EUI64_SYSTEM
        )
    assert oru._row_plan.cache_info().currsize == plans
    assert len(eui64s) == 19
