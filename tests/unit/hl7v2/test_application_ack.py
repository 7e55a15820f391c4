"""Enhanced acknowledgement mode: the application ACK (MSH-16) as a message of its own,
added by the normalizer beside the FHIR records; its routes back to the sender."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from adapters.hl7v2.ack import (
    AckError,
    ack_control_id,
    application_ack_wanted,
    build_ack,
    build_application_ack,
)
from adapters.hl7v2.errors import Location
from adapters.hl7v2.header import peek_header
from adapters.hl7v2.normalizer import ACK_HL7V2, Hl7v2Normalizer, records_for
from bus.base import Message
from bus.memory import MemoryBus
from bus.topics import DEADLETTER
from caregraph.errors import ConfigError
from devices.mllp.returns import ReturnRoute, ReturnRoutes, parse_routes
from tests.unit.hl7v2 import corpus

AT = datetime(2024, 3, 5, 7, 30, 5, tzinfo=UTC)


def lab(msh15: str, msh16: str, control_id: str = "LAB0001", obx: str = "") -> bytes:
    raw = corpus.ORU_LAB.replace(b"|LAB0001|P|2.5.1", f"|{control_id}|P|2.5.1".encode())
    assert raw != corpus.ORU_LAB or control_id == "LAB0001"
    head, rest = raw.split(b"\r", 1)
    head += f"|||{msh15}|{msh16}".encode()
    return head + b"\r" + rest + obx.encode()


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


def message(raw: bytes, offset: int = 0) -> Message:
    return Message("raw.hl7v2", 0, offset, b"k", raw, {"message-id": "m"}, 0)


@pytest.mark.parametrize(
    ("msh15", "msh16", "outcome", "wanted"),
    [
        ("AL", "AL", "AA", True),
        ("AL", "AL", "AE", True),
        ("NE", "AL", "AA", True),
        ("AL", "ER", "AA", False),
        ("AL", "ER", "AE", True),
        ("AL", "SU", "AA", True),
        ("AL", "SU", "AR", False),
        ("AL", "NE", "AA", False),
        ("AL", "", "AE", False),
        ("", "AL", "AA", False),  # no accept ACK asked: the application ACK is the reply
        ("", "", "AE", False),
    ],
)
def test_when_an_application_ack_follows(
    msh15: str, msh16: str, outcome: str, wanted: bool
) -> None:
    header = peek_header(lab(msh15, msh16))
    assert application_ack_wanted(header, outcome) is wanted  # type: ignore[arg-type]


def test_the_application_ack_is_a_message_of_its_own() -> None:
    raw = lab("AL", "AL")
    header = peek_header(raw)
    assert header is not None
    error = AckError("OBX-5 is not a number", "102", Location("OBX", 2, 5))
    app = segments(build_application_ack(header, "AE", error, at=AT))
    accept = segments(build_ack(raw, "AA", at=AT))
    msh = app["MSH"]
    assert msh[8] == "ACK^R01^ACK"
    assert msh[9].startswith("CGA") and len(msh[9]) == 20
    assert msh[9] != accept["MSH"][9] == ack_control_id(header)
    assert (msh[14], msh[15]) == ("AL", "NE")  # the sender commit-accepts it
    assert (msh[4], msh[5]) == ("LIS", "LAB")  # routed back to the original sender
    assert app["MSA"][1:3] == ["AE", "LAB0001"]  # application codes, not CA/CE
    assert app["ERR"][2] == "OBX^2^5^1" and app["ERR"][3].startswith("102^")
    assert accept["MSA"][1] == "CA"
    # the same message gives the same ACK id: a replay is delivered once
    again = segments(build_application_ack(header, "AE", error))
    assert again["MSH"][9] == msh[9]


def test_the_normalizer_adds_the_ack_to_the_batch_only_when_asked() -> None:
    records, failures, _ = records_for([message(lab("AL", "AL"))], application_acks=True)
    assert not failures
    (ack,) = [r for r in records if r.topic == ACK_HL7V2]
    assert segments(ack.value)["MSA"][1:3] == ["AA", "LAB0001"]
    assert ack.key == b"LIS|LAB"
    assert records[-1] is ack  # after the resources it confirms, in one publish
    for msh15, msh16 in (("AL", "ER"), ("AL", "NE"), ("", ""), ("", "AL")):
        records, _, _ = records_for([message(lab(msh15, msh16))], application_acks=True)
        assert not [r for r in records if r.topic == ACK_HL7V2], (msh15, msh16)
    records, _, _ = records_for([message(lab("AL", "AL"))])  # off by default
    assert not [r for r in records if r.topic == ACK_HL7V2]


def test_a_message_that_does_not_map_gets_ae_beside_its_dead_letter() -> None:
    bus = MemoryBus()
    broken = lab("AL", "ER", "LAB0002").replace(b"|105|mg/dL", b"|1O5|mg/dL")
    good = lab("AL", "ER", "LAB0003")
    Hl7v2Normalizer(bus, application_acks=True)([message(broken, 0), message(good, 1)])
    (dead,) = bus.snapshot(DEADLETTER)
    (ack,) = bus.snapshot(ACK_HL7V2)  # ER: only the error is reported
    seg = segments(ack.value)
    assert seg["MSA"][1:3] == ["AE", "LAB0002"]
    assert seg["ERR"][2].startswith("OBX^1^5") and seg["ERR"][3].startswith("102^")
    body = json.loads(dead.value)
    assert base64.b64decode(body["value"]) == broken and "OBX[1]-5" in body["error"]
    bus.close()


def test_routes() -> None:
    routes = parse_routes(" LAB=10.0.0.5:2576, HIS^ADT=his.example:2577,PACS=[::1]:2578 ")
    assert routes == (
        ReturnRoute("LAB", None, "10.0.0.5", 2576),
        ReturnRoute("HIS", "ADT", "his.example", 2577),
        ReturnRoute("PACS", None, "::1", 2578),
    )
    table = ReturnRoutes([*routes, ReturnRoute("HIS", None, "10.0.0.7", 2579)])
    assert table.find("LIS", "LAB^1.2.3^ISO") == routes[0]
    assert table.find("ADT", "HIS") == routes[1]
    assert table.find("ORDERS", "HIS").port == 2579  # type: ignore[union-attr]
    assert table.find("ADT", "ELSEWHERE") is None
    assert parse_routes(None) == () == parse_routes("")
    for bad in ("LAB", "LAB=host", "LAB=host:0", "LAB=host:99999", "=h:1", "LAB=h:1:2"):
        with pytest.raises(ConfigError):
            parse_routes(bad)
