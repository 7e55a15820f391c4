"""The identity handler's transactions on SQLite and PostgreSQL: a failure rolls back the
resources resolved before it in the same transaction, for the loop to deliver again."""

from __future__ import annotations

import pytest

from bus.base import Message
from bus.topics import fhir_topic
from linkage.errors import InvalidPatient, LinkageNotFound
from linkage.handler import IdentityHandler
from linkage.identity import IdentityIndex
from tests.unit.linkage.test_handler import message

pytestmark = pytest.mark.integration


def _device(resource: dict[str, str], offset: int) -> Message:
    return message(resource, topic=fhir_topic("Device"), offset=offset)


def test_a_failure_rolls_back_the_transaction_it_is_in(identity: IdentityIndex) -> None:
    batch = [
        _device({"resourceType": "Device", "id": "d1"}, 0),
        _device({"resourceType": "Device"}, 1),
    ]
    with pytest.raises(InvalidPatient):
        IdentityHandler(identity)(batch)
    with pytest.raises(LinkageNotFound):
        identity.entity_of("Device", "d1")
    IdentityHandler(identity)(batch[:1])  # delivered again without the bad one
    assert identity.entity_of("Device", "d1").entity_id
