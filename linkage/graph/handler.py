"""The graph's bus handler: every ``fhir.<Type>`` whose type makes edges.

    run_consumer(bus, "graph", [fhir_topic(t) for t in GRAPH_TYPES], GraphHandler(graph),
                 stop=stop)

A batch is written in one transaction (edges of each resource replaced: idempotent, so a
redelivery changes nothing). Content that is not a JSON resource raises ``MappingError``
and is dead-lettered by the loop; resource types without edges are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus.base import Message
from caregraph.errors import MappingError
from fhir_store.records import loads
from linkage.graph.edges import BUILDERS
from linkage.graph.store import Graph

GRAPH_TYPES: tuple[str, ...] = tuple(sorted(BUILDERS))


@dataclass
class GraphHandler:
    graph: Graph

    def __call__(self, messages: Sequence[Message]) -> None:
        resources: list[dict[str, Any]] = []
        for message in messages:
            try:
                resource = loads(message.value)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MappingError(f"not JSON: {exc}", location=message.topic) from exc
            if not isinstance(resource, dict) or not resource.get("resourceType"):
                raise MappingError("not a FHIR resource", location=message.topic)
            if resource["resourceType"] in BUILDERS:
                resources.append(resource)
        if resources:
            self.graph.put_resources(resources)
