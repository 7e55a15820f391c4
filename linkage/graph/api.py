"""The care-graph REST routes (JSON, in the OpenAPI schema), one per query:

    app.include_router(build_router(graph, authorize))

Times are FHIR dateTimes (``2024-01-02``, ``2024-01-02T10:00:00+01:00``); a window
``from``/``to`` selects relations valid at any moment inside it; omitted ends are open.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from caregraph.errors import MappingError
from fhir_store.dates import HIGHEST, LOWEST, date_range
from linkage.api import LinkageRoute
from linkage.graph.store import Graph, Relation

NODE_TYPES = ("Patient", "Practitioner", "Organization", "Location", "Device", "Encounter")


def _window(start: str | None, end: str | None) -> tuple[str, str]:
    try:
        return (
            date_range(start)[0] if start else LOWEST,
            date_range(end)[1] if end else HIGHEST,
        )
    except ValueError as exc:
        raise MappingError(str(exc), location="from/to") from exc


def _node(text: str) -> str:
    kind, _, ident = text.partition("/")
    if kind not in NODE_TYPES or not ident:
        raise MappingError(f"{text!r} is not Type/id of a graph node", location="node")
    return text


def _json(relations: list[Relation]) -> list[dict[str, Any]]:
    return [r.to_json() for r in relations]


From = Annotated[str | None, Query(alias="from", description="window start (FHIR dateTime)")]
To = Annotated[str | None, Query(alias="to", description="window end (FHIR dateTime)")]
NodeRef = Annotated[str, Query(description="a node, Type/id")]


def build_router(graph: Graph, authorize: Callable[..., Any]) -> APIRouter:
    """The ``/graph`` routes; every route depends on ``authorize``."""
    router = APIRouter(
        prefix="/graph", tags=["graph"], route_class=LinkageRoute, dependencies=[Depends(authorize)]
    )

    @router.get("/patients/{patient_id}/record")
    def linked_record(patient_id: str) -> dict[str, Any]:
        """Identities, encounters, devices, staff, institutions, locations, with windows."""
        return graph.linked_record(patient_id)

    @router.get("/patients/{patient_id}/devices")
    def devices(patient_id: str, start: From = None, end: To = None) -> Any:
        """Devices attached to, measuring or imaging the patient in the window."""
        return _json(graph.devices_of_patient(patient_id, *_window(start, end)))

    @router.get("/devices/{device_id}/patients")
    def exposed(device_id: str, start: From = None, end: To = None) -> Any:
        """Patients exposed to a device in the window (a recall)."""
        return _json(graph.patients_of_device(device_id, *_window(start, end)))

    @router.get("/patients/{patient_id}/staff")
    def staff(patient_id: str, start: From = None, end: To = None) -> Any:
        """Staff who cared for the patient in the window."""
        return _json(graph.staff_of_patient(patient_id, *_window(start, end)))

    @router.get("/practitioners/{practitioner_id}/patients")
    def patients(practitioner_id: str, start: From = None, end: To = None) -> Any:
        """Patients a practitioner cared for in the window."""
        return _json(graph.patients_of_practitioner(practitioner_id, *_window(start, end)))

    @router.get("/locations/{location_id}/at")
    def at_location(
        location_id: str, time: Annotated[str, Query(description="FHIR dateTime")]
    ) -> Any:
        """Everything at a location at one moment."""
        return _json(graph.at_location(location_id, _window(time, None)[0]))

    @router.get("/path")
    def path(
        a: NodeRef,
        b: NodeRef,
        max_depth: Annotated[int, Query(ge=1, le=10)] = 6,
    ) -> dict[str, Any]:
        """The shortest connection between two nodes (null when none within max_depth)."""
        found = graph.shortest_path(_node(a), _node(b), max_depth)
        return {"path": None if found is None else [e.to_json() for e in found]}

    @router.get("/traverse")
    def traverse(
        start_node: Annotated[str, Query(alias="node", description="Type/id")],
        rel: Annotated[list[str] | None, Query(description="edge types (all if none)")] = None,
        depth: Annotated[int, Query(ge=1, le=4)] = 2,
        start: From = None,
        end: To = None,
    ) -> dict[str, Any]:
        """Nodes and edges within ``depth`` hops, over the given edge types and window."""
        found = graph.traverse(_node(start_node), rel, *_window(start, end), depth=depth)
        return {
            "nodes": found.nodes,
            "edges": [e.to_json() for e in found.edges],
            "truncated": found.truncated,
        }

    return router
