"""Batch and transaction Bundles.

A transaction is planned first (ids assigned, ``urn:uuid:`` and conditional references
resolved, every resource validated), then written in one database transaction through
``FhirStore.write``: it commits whole or not at all. A batch runs each entry on its own and
reports each entry's outcome.

PATCH entries carry a JSON Patch as the spec says, in a Binary (``contentType``
``application/json-patch+json``, the patch base64-encoded in ``data``); the patch is applied
to the version current when the Bundle is planned, and the write requires that version to
be current still, so a concurrent change fails the entry (412) rather than being lost.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_store.dates import column_to_instant
from fhir_store.errors import (
    FhirError,
    InvalidResource,
    NotSupported,
    PreconditionFailed,
    VersionConflict,
)
from fhir_store.outcome import outcome
from fhir_store.patch import apply_json_patch
from fhir_store.records import WriteListener, loads
from fhir_store.shaping import bundle_text
from fhir_store.store import FhirStore, Pending, Stored, WriteResult, check_id
from fhir_store.validation import check_depth, validate_resource

_STATUS = {201: "201 Created", 200: "200 OK", 204: "204 No Content"}


class BundleProcessor:
    """Processes batch/transaction Bundles against one store."""

    def __init__(self, store: FhirStore, on_written: WriteListener | None = None) -> None:
        self.store = store
        self.served = store.registry.types
        self.on_written = on_written

    def _notify(self, results: Iterable[WriteResult]) -> None:
        changed = [r.stored for r in results if r.changed]
        if changed and self.on_written is not None:
            self.on_written(changed)

    def matches(self, type_name: str, query: str) -> list[Stored]:
        """Current resources matching a conditional query (unknown parameters are errors)."""
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise FhirError(f"conditional {type_name}?{query} has no parameters", status=400)
        page = self.store.searching.search(
            type_name, [*params, ("_count", "2"), ("_total", "none")], strict=True
        )
        return page.matches

    def process(self, bundle: Any, base: str) -> dict[str, Any]:
        """Run a transaction or batch Bundle (decoded JSON, its nesting not yet bounded:
        the entries' resources are bounded one by one when validated, before anything
        walks them, and the rest here)."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise InvalidResource("POST to the base takes a Bundle", expression="resourceType")
        check_depth(bundle, skip="resource")
        kind = bundle.get("type")
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            raise InvalidResource("Bundle.entry must be an array", expression="Bundle.entry")
        if kind == "transaction":
            return self._transaction(entries, base)
        if kind == "batch":
            return self._batch(entries, base)
        raise InvalidResource("Bundle.type must be transaction or batch", expression="Bundle.type")

    # -- planning --------------------------------------------------------------------------

    def _plan(self, index: int, entry: Any, ids: dict[str, str]) -> tuple[str, Any]:
        """One entry as ("write", Pending) or ("exists"/"get", ...); registers its fullUrl."""
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            raise InvalidResource(f"{where}.request is missing", expression=f"{where}.request")
        request = entry["request"]
        method, url = request.get("method"), request.get("url")
        if not isinstance(url, str) or method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise InvalidResource(
                f"{where}.request needs method and url", expression=f"{where}.request"
            )
        type_name, _, query = url.partition("?")
        type_name, _, res_id = type_name.strip("/").partition("/")
        if type_name not in self.served:
            raise FhirError(
                f"{where}: type {type_name!r} is not served here",
                expression=f"{where}.request.url",
                status=404,
            )
        if method == "GET":
            return "get", (type_name, res_id, query)
        raw = entry.get("resource")
        resource: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method == "PATCH":
            return "write", self._patch(where, type_name, res_id, query, resource, request)
        if method in ("POST", "PUT") and resource.get("resourceType") != type_name:
            raise InvalidResource(
                f"{where}.resource must be a {type_name}", expression=f"{where}.resource"
            )
        if_match = request.get("ifMatch")
        version = None
        if if_match:
            text = str(if_match).removeprefix("W/").strip('"')
            if not text.isdigit():
                raise InvalidResource(
                    f"{where}.request.ifMatch {if_match!r} is not a version ETag",
                    expression=f"{where}.request.ifMatch",
                )
            version = int(text)
        full_url = entry.get("fullUrl")
        if method == "POST":
            condition = request.get("ifNoneExist")
            if condition:
                found = self.matches(type_name, condition)
                if len(found) > 1:
                    raise PreconditionFailed(f"{where}: ifNoneExist matched {len(found)} resources")
                if found:
                    if full_url:
                        ids[full_url] = f"{type_name}/{found[0].id}"
                    return "exists", found[0]
            new_id = str(uuid.uuid4())
            if full_url:
                ids[full_url] = f"{type_name}/{new_id}"
            return "write", Pending(type_name, new_id, {**resource, "id": new_id}, "POST")
        if method == "PUT":
            if query:
                found = self.matches(type_name, query)
                if len(found) > 1:
                    raise PreconditionFailed(f"{where}: conditional update matched {len(found)}")
                res_id = found[0].id if found else resource.get("id") or str(uuid.uuid4())
            check_id(res_id)
            if full_url:
                ids[full_url] = f"{type_name}/{res_id}"
            return "write", Pending(type_name, res_id, {**resource, "id": res_id}, "PUT", version)
        # DELETE
        if query:
            found = self.matches(type_name, query)
            if len(found) > 1:
                raise PreconditionFailed(f"{where}: conditional delete matched {len(found)}")
            if not found:
                return "noop", None
            res_id = found[0].id
        return "write", Pending(type_name, check_id(res_id), None, "DELETE", version)

    def _patch(
        self,
        where: str,
        type_name: str,
        res_id: str,
        query: str,
        binary: dict[str, Any],
        request: dict[str, Any],
    ) -> Pending:
        """A PATCH entry: a JSON Patch carried in a Binary (``contentType``
        ``application/json-patch+json``, the patch base64 in ``data``), applied to the
        current version; writing it requires that version still be current (as If-Match)."""
        if binary.get("resourceType") != "Binary":
            raise InvalidResource(
                f"{where}.resource of a PATCH must be a Binary holding the patch",
                expression=f"{where}.resource",
            )
        if "json-patch" not in str(binary.get("contentType", "")):
            raise NotSupported(
                f"{where}.resource.contentType {binary.get('contentType')!r}: PATCH entries"
                " take application/json-patch+json",
                expression=f"{where}.resource.contentType",
            )
        try:
            operations = loads(base64.b64decode(str(binary.get("data", "")), validate=True))
        except (binascii.Error, ValueError, RecursionError):
            raise InvalidResource(
                f"{where}.resource.data is not a base64 JSON Patch document",
                expression=f"{where}.resource.data",
            ) from None
        if query:
            found = self.matches(type_name, query)
            if len(found) != 1:
                raise PreconditionFailed(f"{where}: conditional patch matched {len(found)}")
            res_id = found[0].id
        current = self.store.read(type_name, check_id(res_id))
        version = request.get("ifMatch")
        if version and str(version).removeprefix("W/").strip('"') != str(current.version):
            raise VersionConflict(
                f"{where}: ifMatch {version} is stale (current version: {current.version})"
            )
        try:
            patched = apply_json_patch(current.resource(), operations)
        except InvalidResource as exc:
            exc.issues = [(f"{where}.resource: {w}", m) for w, m in exc.issues]
            raise
        if not isinstance(patched, dict) or (
            patched.get("resourceType"),
            patched.get("id"),
        ) != (type_name, res_id):
            raise InvalidResource(
                f"{where}: a patch may not change the resource's type or id",
                expression=f"{where}.resource",
                status=422,
            )
        return Pending(type_name, res_id, patched, "PATCH", current.version)

    def _rewrite(self, resource: dict[str, Any], ids: dict[str, str]) -> None:
        """Replace ``urn:uuid:`` (fullUrl) and conditional references with Type/id, in place
        (walked only when its text shows such a reference: ``_may_rewrite``)."""
        if _may_rewrite(resource, ids):
            self._replace(resource, ids)

    def _replace(self, value: Any, ids: dict[str, str]) -> None:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str):
                if ref in ids:
                    value["reference"] = ids[ref]
                elif "?" in ref and not ref.startswith(("http:", "https:")):
                    type_name, _, query = ref.partition("?")
                    found = self.matches(type_name, query)
                    if len(found) != 1:
                        raise PreconditionFailed(
                            f"conditional reference {ref!r} matched {len(found)} resources (need 1)"
                        )
                    value["reference"] = f"{type_name}/{found[0].id}"
                    ids[ref] = value["reference"]
            for item in value.values():
                self._replace(item, ids)
        elif isinstance(value, list):
            for item in value:
                self._replace(item, ids)

    # -- running ---------------------------------------------------------------------------

    def _transaction(self, entries: list[Any], base: str) -> dict[str, Any]:
        ids: dict[str, str] = {}
        plans = [self._plan(i, e, ids) for i, e in enumerate(entries)]
        served = self.served
        writes: list[Pending] = []
        for index, (kind, item) in enumerate(plans):
            if kind == "write" and item.resource is not None:
                # Validated first: a resource is then known to be bounded in depth, and
                # rewriting references keeps it valid (both forms are valid references).
                try:
                    validate_resource(item.resource, served, item.type)
                except FhirError as exc:
                    exc.issues = [
                        (f"Bundle.entry[{index}].resource: {w}", m) for w, m in exc.issues
                    ]
                    raise
                self._rewrite(item.resource, ids)
            if kind == "write":
                writes.append(item)
        written = self.store.write(writes)
        self._notify(written)
        results = iter(written)
        response: list[dict[str, Any]] = []
        for kind, item in plans:
            if kind == "write":
                response.append(self._written(next(results), item))
            elif kind == "exists":
                response.append(self._entry(200, item))
            elif kind == "noop":
                response.append({"response": {"status": "204 No Content"}})
            else:
                response.append(self._get(item, base))
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": response}

    def _batch(self, entries: list[Any], base: str) -> dict[str, Any]:
        response: list[dict[str, Any]] = []
        for index, entry in enumerate(entries):
            try:
                ids: dict[str, str] = {}
                kind, item = self._plan(index, entry, ids)
                if kind == "write":
                    if item.resource is not None:
                        validate_resource(item.resource, self.served, item.type)
                        self._rewrite(item.resource, ids)
                    [result] = self.store.write([item])
                    self._notify([result])
                    response.append(self._written(result, item))
                elif kind == "exists":
                    response.append(self._entry(200, item))
                elif kind == "noop":
                    response.append({"response": {"status": "204 No Content"}})
                else:
                    response.append(self._get(item, base))
            except FhirError as exc:
                response.append(
                    {
                        "response": {
                            "status": str(exc.status),
                            "outcome": outcome(exc.issues, exc.code),
                        }
                    }
                )
        return {"resourceType": "Bundle", "type": "batch-response", "entry": response}

    @staticmethod
    def _entry(status: int, stored: Stored) -> dict[str, Any]:
        return {
            "response": {
                "status": _STATUS.get(status, str(status)),
                "location": f"{stored.type}/{stored.id}/_history/{stored.version}",
                "etag": stored.etag,
                "lastModified": column_to_instant(stored.last_updated),
            }
        }

    def _written(self, result: Any, item: Pending) -> dict[str, Any]:
        if item.resource is None:
            return {"response": {"status": "204 No Content"}}
        return self._entry(201 if result.created else 200, result.stored)

    def _get(self, item: tuple[str, str, str], base: str) -> dict[str, Any]:
        type_name, res_id, query = item
        try:
            if res_id:
                stored = self.store.read(type_name, res_id)
                return {
                    "resource": loads(stored.content),
                    "response": {"status": "200 OK", "etag": stored.etag},
                }
            page = self.store.searching.search(type_name, parse_qsl(query, keep_blank_values=True))
            text = bundle_text(base, f"{base}/{type_name}", page)
            return {"resource": loads(text), "response": {"status": "200 OK"}}
        except FhirError as exc:
            return {
                "response": {"status": str(exc.status), "outcome": outcome(exc.issues, exc.code)}
            }


_REFERENCE = re.compile(rb'"reference":"([^"]*)"')


def _may_rewrite(resource: dict[str, Any], ids: dict[str, str]) -> bool:
    """Whether ``_rewrite`` could change anything in ``resource``: one of its references
    is a fullUrl of the Bundle or conditional (or escaped, so not told from its text).
    Found in the resource's JSON text, which takes a twentieth of the time of walking it."""
    try:
        text = orjson.dumps(resource)
    except TypeError:  # an integer beyond 64 bits: walk
        return True
    for match in _REFERENCE.finditer(text):
        ref = match.group(1)
        if b"?" in ref or b"\\" in ref or ref.decode() in ids:
            return True
    return False
