"""OBX value types NA (numeric array) and ED (encapsulated data): never dropped."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.hl7v2 import Hl7MappingError, Normalized, normalize
from adapters.hl7v2.intake import judge
from adapters.hl7v2.oru import ARRAY_INDEX_EXTENSION, EXT_R5_OBSERVATION_VALUE
from tests.unit.hl7v2 import corpus
from tests.unit.hl7v2.fhir_valid import assert_valid

RECEIVED = datetime(2024, 3, 5, 7, 30, 5, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def oru(*obx: str) -> bytes:
    return corpus.msg(
        corpus.msh("ORU^R01^ORU_R01", "VT0001", app="LIS", facility="LAB"),
        "PID|1||MRN12345^^^NORTH&1.2.840.99999.1.2&ISO^MR||Smith^Anna||19800214|F",
        "OBR|1|ORD9|FIL9|11524-6^EKG study^LN|||20240305070000+0100",
        *obx,
    )


def run(raw: bytes) -> Normalized:
    result = normalize(raw, received_at=RECEIVED)
    for resource in result.resources:
        assert_valid(resource)
    return result


def observation(result: Normalized) -> dict[str, Any]:
    (found,) = [r for r in result.resources if r["resourceType"] == "Observation"]
    return found


def index(component: dict[str, Any]) -> str:
    (ext,) = component["extension"]
    assert ext["url"] == ARRAY_INDEX_EXTENSION
    return str(ext["valueString"])


# --- NA ------------------------------------------------------------------------------


def test_a_numeric_array_becomes_ordered_components_in_the_row_unit() -> None:
    obs = observation(run(oru("OBX|1|NA|11524-6^EKG study^LN||1.5^2^^-3.25|mV||||||F")))
    assert "valueQuantity" not in obs and "dataAbsentReason" not in obs
    parts = obs["component"]
    assert [index(c) for c in parts] == ["1", "2", "3", "4"]
    assert all(c["code"] == obs["code"] for c in parts)
    values = [c.get("valueQuantity", {}).get("value") for c in parts]
    assert values == [1.5, 2, None, -3.25]
    assert parts[0]["valueQuantity"]["unit"] == "mV"
    # an empty element is kept, marked absent, so the positions stay true
    assert parts[2]["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_a_numeric_array_with_repetitions_is_a_matrix_row_by_row() -> None:
    obs = observation(run(oru("OBX|1|NA|11524-6^EKG study^LN||1^2^3~4^5^6|mV||||||F")))
    parts = obs["component"]
    assert [index(c) for c in parts] == ["1,1", "1,2", "1,3", "2,1", "2,2", "2,3"]
    assert [c["valueQuantity"]["value"] for c in parts] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("value", ["1^two^3", "1^NaN", "1^Infinity"])
def test_a_numeric_array_with_a_non_number_is_an_error_at_its_element(value: str) -> None:
    raw = oru(f"OBX|1|NA|11524-6^EKG study^LN||{value}|mV||||||F")
    with pytest.raises(Hl7MappingError) as info:
        normalize(raw, received_at=RECEIVED)
    assert info.value.location == "OBX[1]-5.2"
    assert info.value.code == "102"
    verdict = judge(raw, received_at=RECEIVED)
    assert verdict.outcome == "AE"
    assert verdict.error is not None and verdict.error.code == "102"


# --- ED ------------------------------------------------------------------------------


def attachment(obs: dict[str, Any]) -> dict[str, Any]:
    (ext,) = obs["extension"]
    assert ext["url"] == EXT_R5_OBSERVATION_VALUE
    value: dict[str, Any] = ext["valueAttachment"]
    return value


def test_an_encapsulated_pdf_report_becomes_an_attachment() -> None:
    encoded = base64.b64encode(PDF).decode()
    # senders wrap long base64 lines; the wrapping is not data
    wrapped = encoded[:40] + "\\X0D0A\\" + encoded[40:]
    obs = observation(
        run(oru(f"OBX|1|ED|11526-1^Pathology study^LN||LIS^AP^PDF^Base64^{wrapped}||||||F"))
    )
    att = attachment(obs)
    assert att["contentType"] == "application/pdf"
    assert base64.b64decode(att["data"]) == PDF
    assert att["size"] == len(PDF)
    assert base64.b64decode(att["hash"]) == hashlib.sha1(PDF).digest()
    assert att["title"] == "Pathology study"
    assert obs["status"] == "final" and "dataAbsentReason" not in obs
    assert obs["subject"]["reference"].startswith("Patient/")


@pytest.mark.parametrize(
    ("ed", "content_type", "data"),
    [
        ("^AP^octet-stream^Hex^48656C6C6F00FF", "application/octet-stream", b"Hello\x00\xff"),
        ("^TEXT^^A^Report: A \\T\\ B", "text/plain", b"Report: A & B"),
        ("^IM^image/png^Base64^iVBORw0KGgo=", "image/png", b"\x89PNG\r\n\x1a\n"),
        ("^SD^^Hex^0001", "application/octet-stream", b"\x00\x01"),
    ],
)
def test_ed_encodings_and_content_types(ed: str, content_type: str, data: bytes) -> None:
    obs = observation(run(oru(f"OBX|1|ED|11526-1^Pathology study^LN||{ed}||||||F")))
    att = attachment(obs)
    assert att["contentType"] == content_type
    assert base64.b64decode(att["data"]) == data


def test_an_unknown_ed_subtype_passes_through_and_is_counted() -> None:
    result = run(oru("OBX|1|ED|11526-1^Pathology study^LN||^AP^X-WEIRD^Hex^00||||||F"))
    assert attachment(observation(result))["contentType"] == "application/octet-stream"
    assert "HL70291|X-WEIRD" in result.unknown_codes


@pytest.mark.parametrize(
    ("ed", "location", "code"),
    [
        ("^AP^PDF^Base64^not*base64!", "OBX[1]-5.5", "102"),
        ("^AP^PDF^Hex^XYZ", "OBX[1]-5.5", "102"),
        ("^AP^PDF^Rot13^abc", "OBX[1]-5.4", "103"),
        ("^AP^PDF^Base64^", "OBX[1]-5.5", "101"),
    ],
)
def test_a_broken_ed_is_an_error_where_it_breaks(ed: str, location: str, code: str) -> None:
    raw = oru(f"OBX|1|ED|11526-1^Pathology study^LN||{ed}||||||F")
    with pytest.raises(Hl7MappingError) as info:
        normalize(raw, received_at=RECEIVED)
    assert (info.value.location, info.value.code) == (location, code)


def test_other_unmapped_value_types_are_still_refused() -> None:
    with pytest.raises(Hl7MappingError) as info:
        normalize(oru("OBX|1|RP|11526-1^Report^LN||http://x/y^^AP||||||F"), received_at=RECEIVED)
    assert (info.value.location, info.value.code) == ("OBX[1]-2", "102")
