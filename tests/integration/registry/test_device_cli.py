"""``caregraph device add|edit|list|show|retire|attach|place`` against a real store (SQLite
and PostgreSQL), and a Device registered by a FHIR client through the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement

from adapters.registry.associations import AssociationIndex
from adapters.registry.device import CONNECTION_URL, registration_from_device
from adapters.serial.observation import DEVICE_ID_SYSTEM, device_resource_id
from caregraph.device_registry import RegistryReader, served_connections
from fhir_store.store import FhirStore
from tests.integration.fhir_store.conftest import serving
from tests.integration.registry.conftest import Cli

pytestmark = pytest.mark.integration


def _device(store: FhirStore, device_id: str) -> dict[str, object]:
    return store.read("Device", device_resource_id(device_id)).resource()


def test_add_edit_list_show_retire(store: FhirStore, cli: Cli) -> None:
    cli(
        "add", "mon-1", "--protocol", "intellivue", "--port", "/dev/ttyUSB0",
        "--name", "ICU 4 monitor", "--manufacturer", "Philips", "--model", "MX800",
        "--serial-number", "DE1234", "--udi", "(01)00643169007222(17)141120",
        "--type", "Patient monitor", "--location", "ICU-4 bed 2",
        "--option", "poll_interval_s=0.5",
    )  # fmt: skip
    device = _device(store, "mon-1")
    Device.model_validate(device)
    reg = registration_from_device(device)
    assert (reg.manufacturer, reg.model, reg.serial_number, reg.status) == (
        "Philips", "MX800", "DE1234", "active",
    )  # fmt: skip
    assert reg.connection is not None and reg.connection.options == (("poll_interval_s", 0.5),)
    assert device["location"]["display"] == "ICU-4 bed 2"  # type: ignore[index]
    assert store.read("Location", device["location"]["reference"].split("/")[1])  # type: ignore[index]

    code, _, err = cli("add", "mon-1", "--protocol", "datex", "--port", "/dev/x", ok=False)
    assert code == 2 and err.startswith("caregraph: error: ") and "already registered" in err
    code, _, err = cli("add", "mon-2", "--protocol", "datex", ok=False)
    assert code == 2 and "--port" in err
    code, _, err = cli("add", "mon-3", "--protocol", "telepathy", "--port", "/dev/x", ok=False)
    assert code == 2 and "telepathy" in err

    cli("edit", "mon-1", "--port", "/dev/ttyUSB1", "--baudrate", "9600", "--model", "MX850")
    reg = registration_from_device(_device(store, "mon-1"))
    assert reg.connection is not None
    assert (reg.connection.port, reg.connection.protocol) == ("/dev/ttyUSB1", "intellivue")
    assert reg.connection.line.baudrate == 9600 and reg.model == "MX850"
    assert reg.manufacturer == "Philips"  # what was not given stays

    cli("add", "lab-1", "--protocol", "astm", "--port", "/dev/ttyS0")
    _, out, _ = cli("list", "--json")
    rows = {r["device_id"]: r for r in json.loads(out)}
    assert rows["mon-1"]["port"] == "/dev/ttyUSB1" and rows["mon-1"]["location"] == "ICU-4 bed 2"
    assert rows["lab-1"]["protocol"] == "astm"

    cli("retire", "lab-1")
    assert _device(store, "lab-1")["status"] == "inactive"
    _, out, _ = cli("list")
    assert "lab-1" not in out and "mon-1" in out
    _, out, _ = cli("list", "--all")
    assert "lab-1" in out and "inactive" in out
    _, out, _ = cli("show", "mon-1")
    shown = json.loads(out)
    assert shown["device"]["id"] == device_resource_id("mon-1")
    assert shown["placements"][0]["name"] == "ICU-4 bed 2"

    code, _, err = cli("show", "nobody", ok=False)
    assert code == 2 and "no device 'nobody'" in err


def test_attach_and_place_keep_history(store: FhirStore, cli: Cli) -> None:
    store.upsert_many(
        [
            {
                "resourceType": "Patient",
                "id": "p-ann",
                "identifier": [{"system": "urn:mrn", "value": "MRN1"}],
                "name": [{"family": "Lee", "given": ["Ann"]}],
            },
            {"resourceType": "Patient", "id": "p-bob"},
        ]
    )
    cli("add", "mon-1", "--protocol", "datex", "--port", "/dev/ttyS3")
    cli("attach", "mon-1", "--patient", "urn:mrn|MRN1", "--from", "2026-11-20T08:00Z")
    # A later open attachment ends the earlier open one where it starts.
    cli("attach", "mon-1", "--patient", "Patient/p-bob", "--from", "2026-11-21T08:00Z")
    # A bounded one takes precedence during its period only.
    cli(
        "attach", "mon-1", "--patient", "Patient/p-ann",
        "--from", "2026-11-22T08:00Z", "--to", "2026-11-22T09:00Z",
    )  # fmt: skip
    code, _, err = cli("attach", "mon-1", "--patient", "urn:mrn|NOPE", ok=False)
    assert code == 2 and "no Patient" in err

    page = store.searching.search(
        "DeviceUseStatement", [("device", f"Device/{device_resource_id('mon-1')}")]
    )
    assert len(page.matches) == 3
    for s in page.matches:
        DeviceUseStatement.model_validate(s.resource())
    reader = RegistryReader(store)
    regs, _ = reader.registrations()
    index = AssociationIndex(reader.attachments(regs))

    def at(text: str) -> str | None:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        found = index.subject_at("mon-1", when)
        return None if found is None else str(found["reference"])

    assert at("2026-11-20T07:59Z") is None
    assert at("2026-11-20T12:00Z") == "Patient/p-ann"
    assert at("2026-11-21T08:00Z") == "Patient/p-bob"
    assert at("2026-11-22T08:30Z") == "Patient/p-ann"
    assert at("2026-11-22T09:00Z") == "Patient/p-bob"
    device = _device(store, "mon-1")
    assert device["patient"] == {"reference": "Patient/p-bob"}
    # The console lists a patient's devices by Device.patient.
    assert store.searching.search("Device", [("patient", "Patient/p-bob")]).matches

    cli("detach", "mon-1", "--at", "2026-11-22T12:00Z")
    assert "patient" not in _device(store, "mon-1")
    code, _, err = cli("detach", "mon-1", ok=False)
    assert code == 2 and "no open attachment" in err
    reader = RegistryReader(store)
    regs, _ = reader.registrations()
    detached = AssociationIndex(reader.attachments(regs))
    assert detached.subject_at("mon-1", datetime(2026, 11, 22, 13, tzinfo=UTC)) is None
    assert detached.subject_at("mon-1", datetime(2026, 11, 22, 10, tzinfo=UTC)) == {
        "reference": "Patient/p-bob"
    }
    cli("attach", "mon-1", "--patient", "Patient/p-bob", "--from", "2026-11-22T18:00Z")
    cli("place", "mon-1", "--location", "ICU-1 bed 1", "--from", "2026-11-20T08:00Z")
    cli("place", "mon-1", "--location", "ICU-1 bed 2", "--from", "2026-11-21T08:00Z")
    code, _, err = cli("place", "mon-1", "--location", "X", "--from", "2026-11-19T08:00Z", ok=False)
    assert code == 2 and "must start after" in err
    _, out, _ = cli("show", "mon-1")
    shown = json.loads(out)
    assert [(p["name"], p["from"], p["to"]) for p in shown["placements"]] == [
        ("ICU-1 bed 1", "2026-11-20T08:00:00.000Z", "2026-11-21T08:00:00.000Z"),
        ("ICU-1 bed 2", "2026-11-21T08:00:00.000Z", None),
    ]
    assert len(shown["attachments"]) == 4
    loc_id = _device(store, "mon-1")["location"]["reference"]  # type: ignore[index]
    assert store.searching.search("Device", [("location", loc_id)]).matches

    cli("retire", "mon-1", "--at", "2026-11-23T08:00Z")
    code, _, err = cli("attach", "mon-1", "--patient", "Patient/p-bob", ok=False)
    assert code == 2 and "inactive" in err
    code, _, err = cli("edit", "mon-1", "--status", "retired", ok=False)
    assert code == 2 and "status" in err
    device = _device(store, "mon-1")
    assert device["status"] == "inactive" and "patient" not in device and "location" not in device
    regs, _ = reader.registrations()
    index = AssociationIndex(reader.attachments(regs))
    assert index.subject_at("mon-1", datetime(2026, 11, 23, 9, tzinfo=UTC)) is None
    assert index.subject_at("mon-1", datetime(2026, 11, 22, 10, tzinfo=UTC)) == {
        "reference": "Patient/p-bob"
    }


def test_a_device_posted_through_the_fhir_api_is_served(store: FhirStore, cli: Cli) -> None:
    """A FHIR client registers a device (POST: server-assigned id); the registry, the CLI
    and the serial gateway's view read it like one the CLI wrote."""
    body = {
        "resourceType": "Device",
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": "vent-9"}],
        "status": "active",
        "manufacturer": "Draeger",
        "extension": [
            {
                "url": CONNECTION_URL,
                "extension": [
                    {"url": "protocol", "valueCode": "medibus"},
                    {"url": "port", "valueString": "/dev/ttyS9"},
                    {"url": "baudrate", "valueInteger": 19200},
                ],
            }
        ],
    }
    with serving(store) as base:
        r = httpx.post(
            f"{base}/Device", json=body, headers={"Content-Type": "application/fhir+json"}
        )
        assert r.status_code == 201, r.text
        posted_id = r.json()["id"]
    assert posted_id != device_resource_id("vent-9")
    regs, problems = RegistryReader(store).registrations()
    assert problems == []
    conns, problems = served_connections(regs)
    assert [(c.device_id, c.protocol, c.port) for c in conns] == [
        ("vent-9", "medibus", "/dev/ttyS9")
    ]
    assert conns[0].line is not None and conns[0].line.baudrate == 19200
    # The CLI finds it by identifier and edits it in place (same resource id).
    cli("edit", "vent-9", "--name", "Vent 9")
    stored = store.read("Device", posted_id).resource()
    assert stored["deviceName"] == [{"name": "Vent 9", "type": "user-friendly-name"}]
    assert stored["manufacturer"] == "Draeger"
