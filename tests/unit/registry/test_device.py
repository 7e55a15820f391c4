"""Registration <-> FHIR Device: valid R4B, round trip, what a client would POST, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.location import Location
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.registry.device import (
    CONNECTION_URL,
    PLACEMENT_URL,
    LineSpec,
    Placement,
    Registration,
    RegistryError,
    SerialConnection,
    device_resource,
    location_id,
    location_resource,
    registration_from_device,
    udi_carrier,
)
from adapters.serial.observation import DEVICE_ID_SYSTEM, device_resource_id

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
text = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=20,
)
opt_text = st.one_of(st.none(), text)


@st.composite
def registrations(draw: st.DrawFn) -> Registration:
    connection = draw(
        st.one_of(
            st.none(),
            st.builds(
                SerialConnection,
                protocol=st.sampled_from(["astm", "intellivue", "datex", "medibus"]),
                port=text,
                line=st.builds(
                    LineSpec,
                    baudrate=st.one_of(st.none(), st.sampled_from([9600, 19200, 115200])),
                    bytesize=st.one_of(st.none(), st.sampled_from([7, 8])),
                    parity=st.one_of(st.none(), st.sampled_from(["N", "E", "O"])),
                    stopbits=st.one_of(st.none(), st.sampled_from([1.0, 1.5, 2.0])),
                    rtscts=st.one_of(st.none(), st.booleans()),
                ),
                options=st.dictionaries(
                    st.sampled_from(["poll_interval_s", "silence_timeout_s", "interval_s"]),
                    st.floats(min_value=0.01, max_value=60, allow_nan=False),
                ).map(lambda d: tuple(sorted(d.items()))),
                patient_id_system=st.one_of(
                    st.none(), st.sampled_from(["urn:oid:1.2.3", "https://hospital.example/mrn"])
                ),
            ),
        )
    )
    reg = Registration(
        device_id=draw(text.filter(lambda t: not any(c.isspace() for c in t))),
        status=draw(st.sampled_from(["active", "inactive"])),
        name=draw(opt_text),
        manufacturer=draw(opt_text),
        model=draw(opt_text),
        serial_number=draw(opt_text),
        udi=draw(opt_text),
        type_text=draw(opt_text),
        connection=connection,
    )
    start = T0
    for hours in draw(st.lists(st.integers(1, 48), max_size=4)):
        start += timedelta(hours=hours)
        reg = reg.placed(f"Location/{location_id(str(hours))}", start, draw(opt_text))
    return reg


@settings(max_examples=150, deadline=None)
@given(registrations())
def test_device_is_valid_r4_and_reads_back(reg: Registration) -> None:
    now = T0 + timedelta(days=1)
    resource = device_resource(reg, now)
    Device.model_validate(resource)
    back = registration_from_device(resource)
    assert back == reg
    assert resource["id"] == device_resource_id(reg.device_id)
    here = reg.placement_at(now)
    assert resource.get("location", {}).get("reference") == (here.location if here else None)


def test_placements_keep_history_with_periods() -> None:
    reg = Registration("mon-1")
    reg = reg.placed("Location/a", T0, "ICU 1")
    reg = reg.placed("Location/b", T0 + timedelta(hours=2), "ICU 2")
    assert reg.placements == (
        Placement("Location/a", T0, T0 + timedelta(hours=2), "ICU 1"),
        Placement("Location/b", T0 + timedelta(hours=2), None, "ICU 2"),
    )
    assert reg.placement_at(T0 + timedelta(hours=1)).location == "Location/a"  # type: ignore[union-attr]
    # The end is exclusive: at the move the device is in the new bed.
    assert reg.placement_at(T0 + timedelta(hours=2)).location == "Location/b"  # type: ignore[union-attr]
    assert reg.placement_at(T0 - timedelta(seconds=1)) is None
    resource = device_resource(reg, T0 + timedelta(hours=1))
    assert resource["location"] == {"reference": "Location/a", "display": "ICU 1"}
    periods = [
        e["extension"][1]["valuePeriod"] for e in resource["extension"] if e["url"] == PLACEMENT_URL
    ]
    assert periods == [
        {"start": "2026-11-25T08:00:00.000Z", "end": "2026-11-25T10:00:00.000Z"},
        {"start": "2026-11-25T10:00:00.000Z"},
    ]
    with pytest.raises(RegistryError, match="must start after"):
        reg.placed("Location/c", T0 + timedelta(hours=1))


def test_a_placement_label_is_normalized_as_a_fhir_string() -> None:
    """A pasted no-break space is white space FHIR strings do not allow (hypothesis found a
    display of one alone, which made the Device invalid)."""
    reg = (
        Registration("mon-1")
        .placed("Location/a", T0, "ICU\u00a01 ")
        .placed("Location/b", T0 + timedelta(hours=1), "\u00a0")
    )
    assert [p.display for p in reg.placements] == ["ICU 1", None]
    Device.model_validate(device_resource(reg, T0))
    assert device_resource(reg, T0 + timedelta(hours=2))["location"] == {"reference": "Location/b"}


def test_a_device_posted_by_a_client_is_read() -> None:
    """What a FHIR client (or the console) sends: server id, minimal connection, coded type."""
    posted: dict[str, Any] = {
        "resourceType": "Device",
        "id": "server-assigned-1",
        "identifier": [
            {"system": "urn:other", "value": "asset-77"},
            {"system": DEVICE_ID_SYSTEM, "value": "vent-3"},
        ],
        "status": "active",
        "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "69650"}]},
        "udiCarrier": [{"deviceIdentifier": "00643169007222"}],
        "extension": [
            {
                "url": CONNECTION_URL,
                "extension": [
                    {"url": "port", "valueString": "/dev/ttyS1"},
                    {"url": "protocol", "valueCode": "medibus"},
                    {"url": "stopbits", "valueDecimal": 2},
                ],
            }
        ],
        "note": [{"text": "loaner"}],
        "location": {"reference": "Location/ward-3"},
    }
    Device.model_validate(posted)
    reg = registration_from_device(posted)
    assert reg.device_id == "vent-3"
    assert reg.resource_id == "server-assigned-1"
    assert reg.connection == SerialConnection("medibus", "/dev/ttyS1", LineSpec(stopbits=2.0))
    assert reg.type_text == "69650"
    assert reg.udi == "00643169007222"
    # Writing it back keeps what caregraph does not manage.
    out = device_resource(reg, T0, posted)
    assert out["note"] == [{"text": "loaner"}]
    assert out["location"] == {"reference": "Location/ward-3"}  # no placements: theirs
    assert {"system": "urn:other", "value": "asset-77"} in out["identifier"]
    assert out["id"] == "server-assigned-1"


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ([{"url": "port", "valueString": "/dev/x"}], "needs a protocol and a port"),
        (
            [
                {"url": "protocol", "valueCode": "datex"},
                {"url": "port", "valueString": "/dev/x"},
                {"url": "parity", "valueCode": "Q"},
            ],
            "parity",
        ),
        (
            [
                {"url": "protocol", "valueCode": "datex"},
                {"url": "port", "valueString": "/dev/x"},
                {"url": "port", "valueString": "/dev/y"},
            ],
            "2 times",
        ),
        (
            [
                {"url": "protocol", "valueCode": "datex"},
                {"url": "port", "valueString": "/dev/x"},
                {"url": "option", "extension": [{"url": "name", "valueString": "x"}]},
            ],
            "numeric value",
        ),
        (
            [
                {"url": "protocol", "valueCode": "datex"},
                {"url": "port", "valueString": "/dev/x"},
                {"url": "baudrate", "valueInteger": -5},
            ],
            "baudrate",
        ),
        (
            [
                {"url": "protocol", "valueCode": "astm"},
                {"url": "port", "valueString": "/dev/x"},
                {"url": "patient-id-system", "valueUri": "MRN"},
            ],
            "not an absolute URI",
        ),
    ],
)
def test_a_malformed_connection_is_refused_with_its_place(
    extension: list[dict[str, Any]], message: str
) -> None:
    resource = {
        "resourceType": "Device",
        "id": "d1",
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": "d"}],
        "extension": [
            {"url": "urn:x", "valueString": "other"},
            {"url": CONNECTION_URL, "extension": extension},
        ],
    }
    with pytest.raises(RegistryError, match=message) as info:
        registration_from_device(resource)
    assert info.value.location == "Device.extension[1]"


def test_the_patient_id_system_is_a_sub_extension_of_the_connection() -> None:
    mrn = SerialConnection("astm", "/dev/ttyS2", patient_id_system="urn:oid:1.2.3")
    resource = device_resource(Registration("lab-1", connection=mrn), T0)
    (conn,) = [e for e in resource["extension"] if e["url"] == CONNECTION_URL]
    assert {"url": "patient-id-system", "valueUri": "urn:oid:1.2.3"} in conn["extension"]
    assert registration_from_device(resource).connection == mrn
    plain = device_resource(Registration("lab-2", connection=SerialConnection("astm", "/x")), T0)
    assert "patient-id-system" not in json.dumps(plain)
    for bad in ("MRN", "urn:oid: 1.2", "", "1.2.3"):
        with pytest.raises(RegistryError, match="absolute URI"):
            SerialConnection("astm", "/dev/x", patient_id_system=bad)


def test_a_device_without_the_caregraph_identifier_is_no_registration() -> None:
    with pytest.raises(RegistryError) as info:
        registration_from_device({"resourceType": "Device", "id": "x", "identifier": []})
    assert info.value.location == "Device.identifier"


def test_status_must_be_a_device_status() -> None:
    with pytest.raises(RegistryError, match="status"):
        Registration("d", status="retired")


def test_labels_are_normalized_and_odd_device_ids_refused() -> None:
    reg = Registration("d", name="ICU\xa04\x85 monitor", model=" \u2003 ")
    assert (reg.name, reg.model) == ("ICU 4 monitor", None)
    Device.model_validate(device_resource(reg, T0))
    for bad in (" d", "d\n", "a\xa0b"):
        with pytest.raises(RegistryError, match="white space"):
            Registration(bad)


def test_udi_and_location() -> None:
    assert udi_carrier("(01)00643169007222(17)141120(10)7654321D(21)10987654d321") == {
        "deviceIdentifier": "00643169007222",
        "carrierHRF": "(01)00643169007222(17)141120(10)7654321D(21)10987654d321",
    }
    assert udi_carrier("+H123PARTNO1/$$420020216LOT123/SXYZ4567890/16D20130202C")[
        "deviceIdentifier"
    ].startswith("+H123")
    loc = location_resource("ICU-4 bed 2")
    Location.model_validate(loc)
    assert loc["id"] == location_id("ICU-4 bed 2") != location_id("ICU-4 bed 3")
