"""The linkage REST API: FHIR ``Patient/$match`` and the JSON ``/linkage/...`` routes.

The composition root mounts it *before* the store's router (whose catch-all would answer
``$match`` otherwise):

    app.include_router(build_router(mpi, authorize))

``/linkage`` is JSON, documented in the OpenAPI schema: a patient's golden record with its
members, scores and explanations; the review queue; manual link, unlink, merge, unmerge and
"not a duplicate"; the link history. Who made a manual decision is ``actor_of(request)``:
by default the ``X-Caregraph-Actor`` header, until the API has real authentication.

Handlers are sync (FastAPI runs them in its thread pool): the database seam is sync.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from caregraph.errors import MappingError, StoreError, StoreUnavailable
from fhir_store.api import FhirRoute, fhir_response
from fhir_store.shaping import bundle_text
from fhir_store.store import FhirStore
from linkage.errors import LinkageError, LinkageNotFound
from linkage.everything import LinkedEverything
from linkage.identity import RESOURCE_TYPES as IDENTITY_TYPES
from linkage.identity import EntityLink, IdentityIndex
from linkage.links import Candidate, Golden, Link
from linkage.mpi import Mpi, match_grade

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"
ACTOR_HEADER = "X-Caregraph-Actor"


def _status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, LinkageError):
        return exc.status, str(exc)
    if isinstance(exc, MappingError):
        return 400, str(exc)
    if isinstance(exc, StoreUnavailable):
        return 503, str(exc)
    return 500, f"internal error: {type(exc).__name__}"


def _operation_outcome(text: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


class LinkageRoute(APIRoute):
    """Errors leave as JSON ``{"detail": ...}`` with the status the error carries, or as an
    OperationOutcome on the FHIR routes (those under ``/fhir``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _error(request, 422, "; ".join(e["msg"] for e in exc.errors()))
            except (LinkageError, MappingError, StoreError) as exc:
                status, text = _status_of(exc)
                return _error(request, status, text)
            except Exception as exc:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                status, text = _status_of(exc)
                return _error(request, status, text)

        return route


def _error(request: Request, status: int, text: str) -> Response:
    if "/linkage/" in request.url.path:
        return Response(json.dumps({"detail": text}), status, media_type="application/json")
    code = {400: "invalid", 404: "not-found", 409: "conflict", 503: "transient"}.get(
        status, "exception"
    )
    return Response(json.dumps(_operation_outcome(text, code)), status, media_type=FHIR_JSON)


class LinkRequest(BaseModel):
    source_id: str = Field(description="the source Patient's id")
    golden_id: str = Field(description="the golden record's id")
    reason: str | None = None


class MergeRequest(BaseModel):
    from_golden: str = Field(description="the golden record that goes away")
    into_golden: str = Field(description="the golden record that survives")
    reason: str | None = None


class UnmergeRequest(BaseModel):
    golden_id: str = Field(description="the golden record that was merged away")
    reason: str | None = None


class NotDuplicateRequest(BaseModel):
    golden_a: str
    golden_b: str


def header_actor(request: Request) -> str:
    """Who decides: the ``X-Caregraph-Actor`` header, else "api"."""
    return request.headers.get(ACTOR_HEADER, "").strip() or "api"


def _link_json(link: Link) -> dict[str, Any]:
    return link.to_json()


def _golden_json(golden: Golden, members: list[Link]) -> dict[str, Any]:
    return {
        "golden_id": golden.golden_id,
        "active": golden.active,
        "replaced_by": golden.replaced_by,
        "resource": golden.resource,
        "members": [_link_json(m) for m in members],
    }


def _candidate_json(mpi: Mpi, c: Candidate) -> dict[str, Any]:
    return {
        "golden_id": c.golden_id,
        "best_source_id": c.source_id,
        "probability": c.probability,
        "grade": match_grade(c, mpi.settings.thresholds),
        "explanation": c.score.to_json(),
    }


def parse_match_parameters(body: Any) -> tuple[dict[str, Any], int, bool]:
    """``resource``, ``count`` and ``onlyCertainMatches`` of a $match Parameters body.

    Raises MappingError (400) when the body is not a Parameters with a Patient resource.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise MappingError("the body must be a Parameters resource", location="resourceType")
    resource, count, certain = None, 10, False
    for param in body.get("parameter") or ():
        name = param.get("name")
        if name == "resource":
            resource = param.get("resource")
        elif name == "count":
            count = param.get("valueInteger", count)
        elif name == "onlyCertainMatches":
            certain = bool(param.get("valueBoolean", False))
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise MappingError("parameter 'resource' must hold a Patient", location="resource")
    if not isinstance(count, int) or count < 1:
        raise MappingError("parameter 'count' must be a positive integer", location="count")
    return resource, count, certain


def build_router(
    mpi: Mpi,
    authorize: Callable[..., Any],
    *,
    fhir_prefix: str = "/fhir",
    actor_of: Callable[[Request], str] = header_actor,
    identity: IdentityIndex | None = None,
    store: FhirStore | None = None,
) -> APIRouter:
    """The linkage routes; every route depends on ``authorize``. With ``identity``, also
    ``/linkage/identity/...`` for Practitioner, Organization and Device; with ``store``,
    ``Patient/[id]/$everything`` across a golden record's linked identities (mounted before
    the store's router, it answers for every Patient: the store's own answer for the others).
    """
    router = APIRouter(route_class=LinkageRoute, dependencies=[Depends(authorize)])
    if store is not None:
        router.include_router(_everything_router(LinkedEverything(mpi, store), fhir_prefix))

    @router.post(f"{fhir_prefix}/Patient/$match", tags=["fhir"], response_class=Response)
    def patient_match(request: Request, body: dict[str, Any]) -> Response:
        """FHIR ``Patient/$match``: golden records ranked, with ``search.score`` and grade."""
        resource, count, certain = parse_match_parameters(body)
        found = mpi.match(resource, count=count, only_certain=certain)
        base = str(request.base_url).rstrip("/") + fhir_prefix
        entries = []
        for c in found:
            golden, _ = mpi.golden(c.golden_id)
            entries.append(
                {
                    "fullUrl": f"{base}/Patient/{c.golden_id}",
                    "resource": golden.resource,
                    "search": {
                        "mode": "match",
                        "score": round(c.probability, 6),
                        "extension": [
                            {
                                "url": MATCH_GRADE_URL,
                                "valueCode": match_grade(c, mpi.settings.thresholds),
                            }
                        ],
                    },
                }
            )
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": entries,
        }
        return Response(json.dumps(bundle), 200, media_type=FHIR_JSON)

    @router.post("/linkage/match", tags=["linkage"])
    def linkage_match(
        patient: dict[str, Any], count: int = Query(10, ge=1), only_certain: bool = False
    ) -> list[dict[str, Any]]:
        """Candidates for a Patient, each with the per-field weights that explain it."""
        return [_candidate_json(mpi, c) for c in mpi.match(patient, count, only_certain)]

    @router.get("/linkage/patients/{source_id}", tags=["linkage"])
    def patient_record(source_id: str) -> dict[str, Any]:
        """A source Patient's golden record, with every member, score and explanation, and
        this source's own links (including NO_MATCH decisions)."""
        link = mpi.golden_of(source_id)
        golden, members = mpi.golden(link.golden_id)
        return {
            "source_id": source_id,
            "link": _link_json(link),
            "links": [_link_json(x) for x in mpi.links_of(source_id)],
            "golden": _golden_json(golden, members),
        }

    @router.get("/linkage/golden/{golden_id}", tags=["linkage"])
    def golden_record(golden_id: str) -> dict[str, Any]:
        """A golden record and its members."""
        golden, members = mpi.golden(golden_id)
        return _golden_json(golden, members)

    @router.get("/linkage/review", tags=["linkage"])
    def review_queue() -> list[dict[str, Any]]:
        """Possible matches, then golden records flagged as possible duplicates."""
        return [
            {
                "kind": item.kind,
                "golden_id": item.golden_id,
                "source_id": item.source_id,
                "other_golden_id": item.other_golden_id,
                "score": item.score,
                "explanation": item.explanation,
            }
            for item in mpi.review_queue()
        ]

    @router.post("/linkage/links", tags=["linkage"])
    def link(request: Request, body: LinkRequest) -> dict[str, Any]:
        """Manual link (also confirms a possible match): MATCH, MANUAL."""
        return _link_json(mpi.link(body.source_id, body.golden_id, actor_of(request), body.reason))

    @router.post("/linkage/unlinks", tags=["linkage"])
    def unlink(request: Request, body: LinkRequest) -> dict[str, Any]:
        """Manual unlink: the source gets its own golden record and a NO_MATCH to the old."""
        return _link_json(
            mpi.unlink(body.source_id, body.golden_id, actor_of(request), body.reason)
        )

    @router.post("/linkage/merges", tags=["linkage"])
    def merge(request: Request, body: MergeRequest) -> dict[str, Any]:
        """Merge two golden records; returns the history event that ``unmerge`` undoes."""
        event_id = mpi.merge(body.from_golden, body.into_golden, actor_of(request), body.reason)
        return {"event_id": event_id}

    @router.post("/linkage/unmerges", tags=["linkage"])
    def unmerge(request: Request, body: UnmergeRequest) -> dict[str, Any]:
        """Undo the last merge of a golden record, restoring its members' links exactly."""
        return {"event_id": mpi.unmerge(body.golden_id, actor_of(request), body.reason)}

    @router.post("/linkage/not-duplicates", tags=["linkage"])
    def not_duplicate(request: Request, body: NotDuplicateRequest) -> dict[str, Any]:
        """Two flagged golden records are different people."""
        mpi.mark_not_duplicate(body.golden_a, body.golden_b, actor_of(request))
        return {"golden_a": body.golden_a, "golden_b": body.golden_b}

    @router.get("/linkage/history", tags=["linkage"])
    def history(source_id: str | None = None, golden_id: str | None = None) -> list[dict[str, Any]]:
        """The link history of a source Patient or a golden record, oldest first."""
        return [e.to_json() for e in mpi.history(source_id=source_id, golden_id=golden_id)]

    if identity is not None:
        _identity_routes(router, identity, actor_of)
    return router


def _everything_router(linked: LinkedEverything, fhir_prefix: str) -> APIRouter:
    # The store's route class: errors leave exactly as the store's own $everything's do.
    router = APIRouter(route_class=FhirRoute)

    # answers before the store's route for the same path, which documents the operation
    # (two entries would give the schema one path with two operationIds)
    @router.get(f"{fhir_prefix}/Patient/{{res_id}}/$everything", include_in_schema=False)
    def everything(request: Request, res_id: str) -> Response:
        """FHIR ``Patient/[id]/$everything``; for a golden record, across its confirmed
        source Patients (merged in the store's order, each resource once, paged by
        ``_count``/``_offset``; ``_type`` and ``_since`` apply to every identity)."""
        page = linked.everything(res_id, list(request.query_params.multi_items()))
        base = str(request.base_url).rstrip("/") + fhir_prefix
        return fhir_response(200, bundle_text(base, f"{base}/Patient/{res_id}/$everything", page))

    return router


def _entity_json(link: EntityLink) -> dict[str, Any]:
    return link.to_json()


class EntityLinkRequest(BaseModel):
    source_id: str = Field(description="the source resource's id")
    entity_id: str = Field(description="the entity's id")
    reason: str | None = None


class EntityMergeRequest(BaseModel):
    from_entity: str = Field(description="the entity that goes away")
    into_entity: str = Field(description="the entity that survives")
    reason: str | None = None


class EntityUnmergeRequest(BaseModel):
    entity_id: str = Field(description="the entity that was merged away")
    reason: str | None = None


def _identity_routes(
    router: APIRouter, identity: IdentityIndex, actor_of: Callable[[Request], str]
) -> None:
    def checked(resource_type: str) -> str:
        if resource_type not in IDENTITY_TYPES:
            raise LinkageNotFound(f"no identity index for {resource_type!r}")
        return resource_type

    @router.get("/linkage/identity/{resource_type}/{source_id}", tags=["linkage"])
    def entity_of(resource_type: str, source_id: str) -> dict[str, Any]:
        """The entity a Practitioner, Organization or Device belongs to, with all its
        sources, the rule that put each there and whether a person decided it (origin), and
        the entities a person declared this source not to be."""
        link = identity.entity_of(checked(resource_type), source_id)
        members = identity.members(resource_type, link.entity_id)
        return {
            **_entity_json(link),
            "members": [_entity_json(m) for m in members],
            "no_match": identity.no_match(resource_type, source_id),
        }

    @router.get("/linkage/identity/{resource_type}", tags=["linkage"])
    def entity_duplicates(resource_type: str) -> list[dict[str, str]]:
        """Entities flagged as possibly one (a key shared by several)."""
        return [
            {"entity_a": a, "entity_b": b}
            for a, b in identity.possible_duplicates(checked(resource_type))
        ]

    @router.get("/linkage/identity/{resource_type}/{source_id}/history", tags=["linkage"])
    def source_history(resource_type: str, source_id: str) -> list[dict[str, Any]]:
        """Every decision about a source, automatic or manual, oldest first."""
        events = identity.history(checked(resource_type), source_id=source_id)
        return [e.to_json() for e in events]

    @router.get("/linkage/entities/{resource_type}/{entity_id}", tags=["linkage"])
    def entity(resource_type: str, entity_id: str) -> dict[str, Any]:
        """An entity: its members, where it was merged into (if it was), and its history
        (including merges into and away from it)."""
        members = identity.members(checked(resource_type), entity_id)
        merged_into = identity.merged_into(resource_type, entity_id)
        events = identity.history(resource_type, entity_id=entity_id)
        if not members and merged_into is None and not events:
            raise LinkageNotFound(f"no {resource_type} entity {entity_id}")
        return {
            "resource_type": resource_type,
            "entity_id": entity_id,
            "merged_into": merged_into,
            "members": [_entity_json(m) for m in members],
            "history": [e.to_json() for e in events],
        }

    @router.post("/linkage/identity/{resource_type}/links", tags=["linkage"])
    def entity_link(
        request: Request, resource_type: str, body: EntityLinkRequest
    ) -> dict[str, Any]:
        """Manual link (also confirms a possible match): MATCH, MANUAL; never changed by
        an automatic decision afterwards."""
        link = identity.link(
            checked(resource_type), body.source_id, body.entity_id, actor_of(request), body.reason
        )
        return _entity_json(link)

    @router.post("/linkage/identity/{resource_type}/unlinks", tags=["linkage"])
    def entity_unlink(
        request: Request, resource_type: str, body: EntityLinkRequest
    ) -> dict[str, Any]:
        """Manual unlink: the source gets an entity of its own and a NO_MATCH to the old."""
        link = identity.unlink(
            checked(resource_type), body.source_id, body.entity_id, actor_of(request), body.reason
        )
        return _entity_json(link)

    @router.post("/linkage/identity/{resource_type}/merges", tags=["linkage"])
    def entity_merge(
        request: Request, resource_type: str, body: EntityMergeRequest
    ) -> dict[str, Any]:
        """Merge two entities; returns the history event that ``unmerges`` undoes."""
        event_id = identity.merge(
            checked(resource_type),
            body.from_entity,
            body.into_entity,
            actor_of(request),
            body.reason,
        )
        return {"event_id": event_id}

    @router.post("/linkage/identity/{resource_type}/unmerges", tags=["linkage"])
    def entity_unmerge(
        request: Request, resource_type: str, body: EntityUnmergeRequest
    ) -> dict[str, Any]:
        """Undo the last merge of an entity, restoring its members' links exactly."""
        event_id = identity.unmerge(
            checked(resource_type), body.entity_id, actor_of(request), body.reason
        )
        return {"event_id": event_id}
