"""The graph's bus handler: every ``fhir.<Type>`` whose type makes edges.

    run_consumer(bus, "graph", [fhir_topic(t) for t in GRAPH_TYPES], GraphHandler(graph),
                 stop=stop)

A batch is written in one transaction (edges of each resource replaced: idempotent, so a
redelivery changes nothing). Content that is not a JSON resource raises ``MappingError``
and is dead-lettered by the loop; resource types without edges are skipped.

Most messages are a monitor's readings, Observations that name a DeviceMetric and no
performer and so make no edge; parsing each of them only to find that took half of this
role's time at 1,000 beds. Such an Observation is told from its bytes (``edgeless_id``) and
only its edges are deleted, as for any update that leaves a resource without edges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bus.base import Message
from caregraph.errors import MappingError
from fhir_store.records import loads
from linkage.graph.edges import BUILDERS, Edge, edges_of, node, via_of
from linkage.graph.store import Graph

GRAPH_TYPES: tuple[str, ...] = tuple(sorted(BUILDERS))

#: The start of an Observation as caregraph's builders serialize it (orjson, resourceType
#: then id): anchored at the first byte, so the id is the top-level one.
_OBSERVATION_START = re.compile(rb'\{"resourceType":"Observation","id":"([A-Za-z0-9.\-]{1,64})"')


def edgeless_id(value: bytes) -> str | None:
    """The id of an Observation that can make no edge (``edges._observation`` needs a
    ``Device/`` reference or a ``performer``), told without parsing it; None when its bytes
    do not tell (then it is parsed). Without a backslash the JSON escapes nothing, so a
    performer or a Device reference would show as these bytes."""
    if b"\\" in value or b'"performer"' in value or b"Device/" in value:
        return None
    start = _OBSERVATION_START.match(value)
    return start.group(1).decode("ascii") if start else None


@dataclass
class GraphHandler:
    graph: Graph

    def __call__(self, messages: Sequence[Message]) -> None:
        by_via: dict[str, list[Edge]] = {}  # in order: the last copy of a resource counts
        for message in messages:
            ident = edgeless_id(message.value)
            if ident is not None:
                by_via[node("Observation", ident)] = []
                continue
            try:
                resource = loads(message.value)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MappingError(f"not JSON: {exc}", location=message.topic) from exc
            if not isinstance(resource, dict) or not resource.get("resourceType"):
                raise MappingError("not a FHIR resource", location=message.topic)
            if resource["resourceType"] in BUILDERS and resource.get("id"):
                by_via[via_of(resource)] = edges_of(resource)
        if by_via:
            self.graph.replace_edges(by_via)
