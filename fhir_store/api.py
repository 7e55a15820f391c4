"""The FHIR R4 REST API (``application/fhir+json``), as one FastAPI router.

The composition root mounts it: ``app.include_router(build_router(store, authorize))``.
Every route depends on ``authorize``; every error leaves as an OperationOutcome (see
``outcome.py``) because the routes use :class:`FhirRoute`, which maps exceptions to
responses inside the router (a router cannot install app-wide exception handlers).

Handlers are sync functions (FastAPI runs them in its thread pool) because the database
seam is sync; the request body is read by an async dependency with a size limit first.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real annotation
# objects of handlers defined inside build_router (the Body alias is local to it).
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from caregraph.errors import StoreError
from fhir_store.bundles import BundleProcessor
from fhir_store.capability import capability_statement
from fhir_store.dates import date_range, http_date
from fhir_store.errors import (
    FhirError,
    InvalidResource,
    InvalidSearch,
    NotSupported,
    ResourceNotFound,
)
from fhir_store.outcome import FHIR_JSON, for_error, outcome
from fhir_store.patch import apply_json_patch, apply_merge_patch
from fhir_store.records import WriteListener, dumps, loads
from fhir_store.search import SNAPSHOT
from fhir_store.shaping import bundle_text, history_bundle, shape
from fhir_store.store import FhirStore, Stored
from fhir_store.validation import check_depth, validate_resource

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 16 * 1024 * 1024


class FhirRoute(APIRoute):
    """A route whose errors become OperationOutcome responses with the right status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                issues = [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
                return fhir_response(400, outcome(issues, "invalid"))
            except (FhirError, StoreError) as exc:
                status, body = for_error(exc)
                return fhir_response(status, body)
            except HTTPException as exc:
                # From the authorize dependency (401/403): keep status and headers
                # (WWW-Authenticate), say it in an OperationOutcome.
                code = "security" if exc.status_code in (401, 403) else "processing"
                return fhir_response(
                    exc.status_code,
                    outcome([(None, str(exc.detail))], code),
                    dict(exc.headers or {}),
                )
            except Exception as exc:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                status, body = for_error(exc)
                return fhir_response(status, body)

        return route


def fhir_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    text = body if isinstance(body, str) else dumps(body)
    return Response(text, status_code=status, media_type=FHIR_JSON, headers=headers)


def version_headers(base: str, stored: Stored) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.last_updated),
        "Location": f"{base}/{stored.type}/{stored.id}/_history/{stored.version}",
    }


def is_version(text: str) -> bool:
    """A version id as caregraph writes them: ASCII digits, within a 64-bit integer
    (``str.isdigit`` admits superscripts and other scripts' digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def parse_if_match(value: str | None) -> int | None:
    """``W/"3"`` (or ``"3"`` or ``3``) to 3; ``InvalidResource`` if not a version."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not is_version(text):
        raise FhirError(f'If-Match {value!r} is not a version ETag like W/"3"', status=400)
    return int(text)


def build_router(
    store: FhirStore,
    authorize: Callable[..., Any],
    *,
    prefix: str = "/fhir",
    max_body_bytes: int = DEFAULT_MAX_BODY,
    on_written: WriteListener | None = None,
) -> APIRouter:
    """The FHIR API router; include it with ``app.include_router(router)`` (prefix built in).

    ``on_written`` hears every version a create, update, patch or Bundle wrote, once
    committed (an error it raises answers the request, the write stays)."""
    router = APIRouter(prefix=prefix, route_class=FhirRoute, dependencies=[Depends(authorize)])
    served = store.registry.types
    bundles = BundleProcessor(store, on_written)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise FhirError(f"body larger than {max_body_bytes} bytes", status=413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise FhirError(f"body larger than {max_body_bytes} bytes", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    Body = Annotated[bytes, Depends(read_body)]

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + prefix

    def read_json(body: bytes) -> Any:
        """The body's JSON, its nesting not yet bounded (orjson stops at 1,024 levels)."""
        try:
            return loads(body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integer digit limit
            raise InvalidResource(f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidResource("JSON nested too deeply") from None

    def parse_json(body: bytes) -> Any:
        data = read_json(body)
        check_depth(data)
        return data

    def parse_resource(body: bytes, type_name: str) -> dict[str, Any]:
        """The body as a valid resource of the type; ``validate_resource`` bounds the
        nesting itself, so the body is not walked for it twice."""
        return validate_resource(read_json(body), served, served_type(type_name))

    def served_type(type_name: str) -> str:
        if type_name not in served:
            raise ResourceNotFound(
                f"resource type {type_name!r} is not served here", expression=type_name
            )
        return type_name

    def strict(request: Request) -> bool:
        return "handling=strict" in request.headers.get("prefer", "").replace(" ", "")

    def written(request: Request, result: Any, created_status: int = 201) -> Response:
        stored = result.stored
        if result.changed and on_written is not None:
            on_written([stored])
        headers = version_headers(base_url(request), stored)
        status = created_status if result.created else 200
        prefer = request.headers.get("prefer", "")
        if "return=minimal" in prefer:
            return Response(status_code=status, headers=headers)
        if "return=OperationOutcome" in prefer:
            return fhir_response(
                status, outcome([(None, "done")], "informational", "information"), headers
            )
        return fhir_response(status, stored.content, headers)

    def search_response(
        request: Request, type_name: str, params: list[tuple[str, str]]
    ) -> Response:
        page = store.searching.search(type_name, params, strict=strict(request))
        return fhir_response(
            200, bundle_text(base_url(request), f"{base_url(request)}/{type_name}", page)
        )

    @router.get("/metadata")
    def metadata(request: Request) -> Response:
        return fhir_response(200, capability_statement(store.registry, base_url(request)))

    @router.post("")
    @router.post("/")
    def transaction(request: Request, body: Body) -> Response:
        return fhir_response(200, bundles.process(read_json(body), base_url(request)))

    @router.get("/_history")
    def system_history(request: Request) -> Response:
        return history_response(request, None, None)

    def history_response(request: Request, type_name: str | None, res_id: str | None) -> Response:
        params = list(request.query_params.multi_items())
        query = dict(params)
        try:
            since = date_range(query["_since"])[0] if "_since" in query else None
        except ValueError as exc:
            raise InvalidSearch(f"_since: {exc}", expression="_since") from None
        try:
            count = min(int(query.get("_count", "50")), 1000)
            offset = int(query.get("_offset", "0"))
        except ValueError:
            raise InvalidSearch(
                "_count and _offset must be integers", expression="_count"
            ) from None
        if count < 0 or offset < 0:
            raise InvalidSearch("_count and _offset must not be negative", expression="_count")
        snapshot = query.get("_snapshot")
        if snapshot is not None and not SNAPSHOT.fullmatch(snapshot):
            raise InvalidSearch("_snapshot is not one this server issued", expression="_snapshot")
        if "_at" in query:
            try:
                at = date_range(query["_at"])
            except ValueError as exc:
                raise InvalidSearch(f"_at: {exc}", expression="_at") from None
            page = store.history_at(
                type_name,
                res_id,
                at,
                since=since,
                count=count,
                offset=offset,
                snapshot=snapshot,
            )
        else:
            page = store.searching.history(
                type_name, res_id, since=since, count=count, offset=offset, snapshot=snapshot
            )
        base = base_url(request)
        path = "/".join(p for p in (base, type_name, res_id, "_history") if p)
        return fhir_response(200, history_bundle(base, path, params, page))

    @router.get("/Patient/{res_id}/$everything")
    def everything(request: Request, res_id: str) -> Response:
        store.read("Patient", res_id)
        params = list(request.query_params.multi_items())
        page = store.searching.everything(res_id, params)
        base = base_url(request)
        return fhir_response(200, bundle_text(base, f"{base}/Patient/{res_id}/$everything", page))

    @router.post("/{type_name}/$validate")
    @router.post("/{type_name}/{res_id}/$validate")
    def validate(
        request: Request, type_name: str, body: Body, res_id: str | None = None
    ) -> Response:
        served_type(type_name)
        data = parse_json(body)
        if isinstance(data, dict) and data.get("resourceType") == "Parameters":
            data = next(
                (
                    p.get("resource")
                    for p in data.get("parameter", [])
                    if p.get("name") == "resource"
                ),
                None,
            )
        try:
            validate_resource(data, served, type_name)
        except FhirError as exc:
            return fhir_response(200, outcome(exc.issues, exc.code))
        return fhir_response(
            200, outcome([(None, "the resource is valid")], "informational", "information")
        )

    @router.get("/{type_name}/_history")
    def type_history(request: Request, type_name: str) -> Response:
        return history_response(request, served_type(type_name), None)

    @router.post("/{type_name}/_search")
    def search_post(request: Request, type_name: str, body: Body) -> Response:
        served_type(type_name)
        form = body.decode("utf-8", errors="replace")
        params = list(request.query_params.multi_items()) + parse_qsl(form, keep_blank_values=True)
        return search_response(request, type_name, params)

    @router.get("/{type_name}/{res_id}/_history/{version}")
    def vread(request: Request, type_name: str, res_id: str, version: str) -> Response:
        if not is_version(version):
            raise ResourceNotFound(f"version {version!r} is not a version of this resource")
        stored = store.vread(served_type(type_name), res_id, int(version))
        return fhir_response(200, stored.content, version_headers(base_url(request), stored))

    @router.get("/{type_name}/{res_id}/_history")
    def instance_history(request: Request, type_name: str, res_id: str) -> Response:
        return history_response(request, served_type(type_name), res_id)

    @router.get("/{type_name}")
    def search_get(request: Request, type_name: str) -> Response:
        return search_response(
            request, served_type(type_name), list(request.query_params.multi_items())
        )

    @router.post("/{type_name}")
    def create(request: Request, type_name: str, body: Body) -> Response:
        resource = parse_resource(body, type_name)
        # If-None-Exist, or the same condition as URL parameters (as fhirpy sends it).
        condition = request.headers.get("if-none-exist") or str(request.url.query)
        if condition:
            matches = bundles.matches(type_name, condition)
            if len(matches) > 1:
                raise FhirError(f"If-None-Exist matched {len(matches)} resources", status=412)
            if matches:
                stored = matches[0]
                return fhir_response(
                    200, stored.content, version_headers(base_url(request), stored)
                )
        return written(request, store.create(resource))

    @router.put("/{type_name}")
    def conditional_update(request: Request, type_name: str, body: Body) -> Response:
        resource = parse_resource(body, type_name)
        query = str(request.url.query)
        if not query:
            raise FhirError(
                "PUT on a type needs search parameters (conditional update)", status=400
            )
        matches = bundles.matches(type_name, query)
        if len(matches) > 1:
            raise FhirError(f"conditional update matched {len(matches)} resources", status=412)
        if matches:
            target = matches[0].id
            if resource.get("id", target) != target:
                raise InvalidResource(
                    "the body's id is not the matched resource's id", expression="id"
                )
            return written(request, store.update(type_name, target, {**resource, "id": target}))
        if "id" in resource:
            return written(request, store.update(type_name, resource["id"], resource))
        return written(request, store.create(resource))

    @router.delete("/{type_name}")
    def conditional_delete(request: Request, type_name: str) -> Response:
        query = str(request.url.query)
        if not query:
            raise FhirError(
                "DELETE on a type needs search parameters (conditional delete)", status=400
            )
        matches = bundles.matches(served_type(type_name), query)
        if len(matches) > 1:
            raise FhirError(f"conditional delete matched {len(matches)} resources", status=412)
        for stored in matches:
            store.delete(type_name, stored.id)
        return Response(status_code=204)

    @router.get("/{type_name}/{res_id}")
    def read(request: Request, type_name: str, res_id: str) -> Response:
        stored = store.read(served_type(type_name), res_id)
        headers = version_headers(base_url(request), stored)
        del headers["Location"]
        if request.headers.get("if-none-match") == stored.etag:
            return Response(status_code=304, headers=headers)
        params = dict(request.query_params)
        if "_summary" in params or "_elements" in params:
            elements = [e for e in params.get("_elements", "").split(",") if e]
            return fhir_response(
                200, shape(stored.resource(), params.get("_summary"), elements or None), headers
            )
        return fhir_response(200, stored.content, headers)

    @router.put("/{type_name}/{res_id}")
    def update(request: Request, type_name: str, res_id: str, body: Body) -> Response:
        resource = parse_resource(body, type_name)
        if_match = parse_if_match(request.headers.get("if-match"))
        return written(request, store.update(type_name, res_id, resource, if_match=if_match))

    @router.patch("/{type_name}/{res_id}")
    def patch(request: Request, type_name: str, res_id: str, body: Body) -> Response:
        content_type = request.headers.get("content-type", "")
        current = store.read(served_type(type_name), res_id)
        if_match = parse_if_match(request.headers.get("if-match"))
        if if_match is None:
            if_match = current.version  # a patch applies to the version it was computed on
        operations = parse_json(body)
        if "json-patch" in content_type:
            patched = apply_json_patch(current.resource(), operations)
        elif "json" in content_type and isinstance(operations, dict):
            patched = apply_merge_patch(current.resource(), operations)
        else:
            raise NotSupported(
                "PATCH takes application/json-patch+json (an array of operations) or"
                " application/merge-patch+json (an object)",
                status=415,
            )
        resource = validate_resource(patched, served, type_name)
        return written(request, store.update(type_name, res_id, resource, if_match=if_match))

    @router.delete("/{type_name}/{res_id}")
    def delete(request: Request, type_name: str, res_id: str) -> Response:
        if_match = parse_if_match(request.headers.get("if-match"))
        store.delete(served_type(type_name), res_id, if_match=if_match)
        return Response(status_code=204)

    @router.api_route(
        "/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
        include_in_schema=False,  # not an operation: the OperationOutcome for what is none
    )
    def unknown(request: Request, rest: str) -> Response:
        raise NotSupported(
            f"{request.method} {prefix}/{rest} is not a FHIR interaction here", status=404
        )

    return router


__all__ = ["FhirRoute", "build_router"]
