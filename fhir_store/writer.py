"""The store-writer role: ``fhir.*`` bus messages upserted into the store, idempotently.

The handler is pure glue for ``bus.worker.run_consumer``: decode every message of the batch,
then one ``upsert_many`` (one transaction). Resources on ``fhir.*`` are built by caregraph's
typed builders with deterministic ids, so they are not re-validated here; a redelivered batch
changes nothing. A message that is not a FHIR resource raises ``MappingError``: the worker
then retries message by message and dead-letters only the bad one.

The trace id (``bus.headers``) of the message that made a resource is written into it as a
``meta.tag`` coding, ``urn:caregraph:trace|<trace id>``. A tag, because FHIR defines tags
for relating a resource to process and workflow without changing its meaning, and because
``_tag`` is a search parameter: ``GET /fhir/Observation?_tag=urn:caregraph:trace|<id>``
finds what one message produced (an extension would need a published definition and is
not searchable; ``meta.source`` already names the source message). Only the types whose
ids are made from one message are tagged (``TRACED_TYPES``: Observation, Provenance). An
entity many messages repeat (Patient, Device, Location, ImagingStudy) would get a
different tag from each message, and since the store versions a resource whenever its
content, tags included, changes, every message would add a version of the patient. The
trace id of one message is the same at every delivery, so a redelivery still writes
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bus.base import Message
from bus.headers import trace_id_of
from caregraph.errors import MappingError
from fhir_store.records import loads
from fhir_store.store import FhirStore

TOPIC_PREFIX = "fhir."
TRACE_SYSTEM = "urn:caregraph:trace"
TRACED_TYPES = frozenset({"Observation", "Provenance"})
#: How long the store writer waits for a batch to fill (``run_consumer``'s ``linger_s``): a
#: transaction's cost is mostly the pages it touches, so 64 monitors' readings written in
#: fewer, larger batches cost ~15% less CPU (``bench/serial.py --part fleet``) for at most
#: this much latency.
WRITE_LINGER_S = 0.1
#: The most resources the store writer takes in one batch (``run_consumer``'s
#: ``batch_size``), one transaction. It only fills when the writer is behind, and then a
#: larger transaction is cheaper per resource: each reading of a monitor lands at the end
#: of its own group in the search indexes, so a batch that holds one message per monitor
#: changes a page per reading. At 1,000 monitors 40 messages per transaction (the loop's
#: default ``BATCH_SIZE``, 500 resources) cost 2.48 ms CPU per message, 400 messages 2.01
#: (``bench/store_writer.py --monitors 1000 --batch N``).
WRITE_BATCH = 5_000


def decode(message: Message) -> dict[str, Any]:
    """The resource a ``fhir.<Type>`` message carries.

    Raises:
        MappingError: not UTF-8 JSON, not an object, or a resourceType/id that does not fit.
    """
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    try:
        message.value.decode("utf-8")  # the check; orjson (in ``loads``) reads the bytes
        resource = loads(message.value)
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


def with_trace_tag(resource: dict[str, Any], trace_id: str) -> dict[str, Any]:
    """``resource`` (copied where changed) tagged ``TRACE_SYSTEM|trace_id``; any earlier
    trace tag is replaced, every other tag kept in its place."""
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = meta.get("tag")
    kept = [t for t in tags if not _is_trace_tag(t)] if isinstance(tags, list) else []
    meta["tag"] = [*kept, {"system": TRACE_SYSTEM, "code": trace_id}]
    return {**resource, "meta": meta}


def trace_tag_of(resource: dict[str, Any]) -> str | None:
    """The trace id a stored resource carries, if any."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    for tag in tags if isinstance(tags, list) else ():
        if _is_trace_tag(tag):
            code = tag.get("code")
            return code if isinstance(code, str) else None
    return None


def _is_trace_tag(tag: object) -> bool:
    return isinstance(tag, dict) and tag.get("system") == TRACE_SYSTEM


def handle_fhir_batch(
    store: FhirStore, *, traced_types: frozenset[str] = TRACED_TYPES
) -> Callable[[list[Message]], None]:
    """The handler for ``run_consumer(bus, "store-writer", fhir topics, handler)``; resources
    of ``traced_types`` are tagged with their message's trace id (``with_trace_tag``)."""
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
            if resource["resourceType"] in traced_types:
                trace_id = trace_id_of(message.topic, message.headers, message.value)
                resource = with_trace_tag(resource, trace_id)
            resources.append(resource)
        store.upsert_many(resources)

    return handle
