"""The store-writer handler on both engines: batches land once, bad messages are typed errors."""

from __future__ import annotations

import json

import pytest

from bus.base import Message
from caregraph.errors import MappingError
from fhir_store.store import FhirStore
from fhir_store.writer import handle_fhir_batch

pytestmark = pytest.mark.integration


def message(topic: str, value: bytes, offset: int = 0) -> Message:
    return Message(topic, 0, offset, b"k", value, {}, 0)


def test_batch_upserts_and_redelivery_adds_no_version(store: FhirStore) -> None:
    handle = handle_fhir_batch(store)
    batch = [
        message(
            "fhir.Observation",
            json.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": {"text": "hr"},
                    "subject": {"reference": "Patient/p"},
                }
            ).encode(),
            i,
        )
        for i in range(3)
    ]
    handle(batch)
    handle(batch)
    _, total, _ = store.searching.history("Observation")
    assert total == 3
    assert [
        m.id for m in store.searching.search("Observation", [("subject", "Patient/p")]).matches
    ] == ["o0", "o1", "o2"]


@pytest.mark.parametrize(
    ("topic", "value", "needle"),
    [
        ("fhir.Observation", b"\xff", "UTF-8"),
        ("fhir.Observation", b"[1]", "JSON object"),
        ("fhir.Patient", b'{"resourceType":"Observation","id":"x"}', "on topic fhir.Patient"),
        ("fhir.Observation", b'{"resourceType":"Observation"}', "no id"),
    ],
)
def test_bad_messages_raise_mapping_error(
    store: FhirStore, topic: str, value: bytes, needle: str
) -> None:
    with pytest.raises(MappingError, match=needle) as info:
        handle_fhir_batch(store)([message(topic, value, 7)])
    assert info.value.location == f"{topic}[0]@7"
