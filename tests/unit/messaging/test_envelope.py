from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from fhir_store.outcome import outcome
from fhir_store.searchparams import default_registry
from messaging.envelope import parse, response, validate
from messaging.errors import InvalidContent, NotAMessage

from .messages import PARTNER, transfer

SERVED = default_registry().types


def test_a_transfer_is_parsed_with_its_key_event_partner_and_entries() -> None:
    message = parse(transfer("m1"))
    assert message.identifier == "urn:hospital-b:messages|m1"
    assert message.event == ("http://terminology.hl7.org/CodeSystem/v2-0003", "A02")
    assert message.source == PARTNER
    assert message.header_id == "hdr-m1"
    assert [e.resource["resourceType"] for e in message.entries] == [
        "Patient",
        "Encounter",
        "Observation",
        "Observation",
    ]
    validate(transfer("m1"), SERVED)  # valid content: no error


def _broken(change: str) -> Any:
    data: dict[str, Any] = transfer("m1")
    header = data["entry"][0]["resource"]
    if change == "not-a-bundle":
        return {"resourceType": "Patient"}
    if change == "a-list":
        return [data]
    if change == "transaction":
        data["type"] = "transaction"
    elif change == "no-identifier":
        del data["identifier"]
    elif change == "header-not-first":
        data["entry"].reverse()
    elif change == "no-entries":
        data["entry"] = []
    elif change == "header-without-id":
        del header["id"]
    elif change == "no-source-endpoint":
        header["source"] = {"name": "hospital b"}
    elif change == "no-event":
        del header["eventCoding"]
    return data


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("not-a-bundle", "Bundle"),
        ("a-list", "Bundle"),
        ("transaction", "Bundle.type"),
        ("no-identifier", "Bundle.identifier"),
        ("header-not-first", "Bundle.entry[0].resource"),
        ("no-entries", "Bundle.entry[0].resource"),
        ("header-without-id", "Bundle.entry[0].resource.id"),
        ("no-source-endpoint", "MessageHeader.source.endpoint"),
        ("no-event", "MessageHeader.event[x]"),
    ],
)
def test_an_envelope_that_cannot_be_answered_is_not_a_message(change: str, where: str) -> None:
    with pytest.raises(NotAMessage) as caught:
        parse(_broken(change))
    assert caught.value.location == where


def test_invalid_content_names_each_element_at_fault() -> None:
    data = transfer("m1")
    data["entry"][3]["resource"]["valueQuantity"]["value"] = "fast"
    del data["entry"][2]["resource"]["status"]
    data["timestamp"] = "yesterday"
    parse(data)  # the envelope is still answerable
    with pytest.raises(InvalidContent) as caught:
        validate(data, SERVED)
    where = [e for e, _ in caught.value.issues]
    assert "Bundle.timestamp" in where
    assert "Bundle.entry[2].resource Encounter.status" in where
    assert "Bundle.entry[3].resource Observation.valueQuantity.value" in where
    assert len(where) == 3  # each problem once


def test_a_type_the_store_does_not_keep_is_invalid_content() -> None:
    data = transfer("m1")
    data["entry"].append({"resource": {"resourceType": "Basic", "code": {"text": "x"}}})
    with pytest.raises(InvalidContent, match="Basic"):
        validate(data, SERVED)


def test_the_response_is_a_valid_message_answering_the_request() -> None:
    request = parse(transfer("m1"))
    body = response(
        request,
        "ok",
        outcome([(None, "stored")], "informational", "information"),
        endpoint="http://caregraph.test/fhir/$process-message",
        focus=["Encounter/x"],
    )
    Bundle.model_validate(copy.deepcopy(body))
    header = body["entry"][0]["resource"]
    assert body["type"] == "message"
    assert header["response"]["identifier"] == "hdr-m1"
    assert header["response"]["code"] == "ok"
    assert header["destination"] == [{"endpoint": PARTNER}]
    assert header["eventCoding"]["code"] == "A02"
    assert header["response"]["details"]["reference"] == body["entry"][1]["fullUrl"]
    assert body["entry"][1]["resource"]["resourceType"] == "OperationOutcome"
    again = response(request, "ok", outcome([], "informational"), endpoint="x")
    assert again["identifier"] != body["identifier"]  # every response is a new message
