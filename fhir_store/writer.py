"""The store-writer role: ``fhir.*`` bus messages upserted into the store, idempotently.

The handler is pure glue for ``bus.worker.run_consumer``: decode every message of the batch,
then one ``upsert_many`` (one transaction). Resources on ``fhir.*`` are built by caregraph's
typed builders with deterministic ids, so they are not re-validated here; a redelivered batch
changes nothing. A message that is not a FHIR resource raises ``MappingError``: the worker
then retries message by message and dead-letters only the bad one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bus.base import Message
from caregraph.errors import MappingError
from fhir_store.store import FhirStore

TOPIC_PREFIX = "fhir."


def decode(message: Message) -> dict[str, Any]:
    """The resource a ``fhir.<Type>`` message carries.

    Raises:
        MappingError: not UTF-8 JSON, not an object, or a resourceType/id that does not fit.
    """
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    try:
        resource = json.loads(message.value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(f"not UTF-8 JSON: {exc}", location=where) from exc
    if not isinstance(resource, dict):
        raise MappingError("the message is not a JSON object", location=where)
    expected = message.topic.removeprefix(TOPIC_PREFIX)
    if resource.get("resourceType") != expected:
        raise MappingError(
            f"resourceType {resource.get('resourceType')!r} on topic {message.topic}",
            location=where,
        )
    if not isinstance(resource.get("id"), str):
        raise MappingError("the resource has no id (ids are deterministic)", location=where)
    return resource


def handle_fhir_batch(store: FhirStore) -> Callable[[list[Message]], None]:
    """The handler for ``run_consumer(bus, "store-writer", fhir topics, handler)``."""
    served = set(store.registry.types)

    def handle(messages: list[Message]) -> None:
        resources = []
        for message in messages:
            resource = decode(message)
            if resource["resourceType"] not in served:
                raise MappingError(
                    f"{resource['resourceType']} is not a type the store serves",
                    location=f"{message.topic}@{message.offset}",
                )
            resources.append(resource)
        store.upsert_many(resources)

    return handle
