"""Search Bundles as text, and ``_summary`` / ``_elements`` subsetting.

A search page splices each stored resource's JSON text into the Bundle as is: parsing and
re-serializing 50 resources per page would cost more than the query itself.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fhir.resources.R4B import get_fhir_model_class

from fhir_store.dates import column_to_instant
from fhir_store.outcome import dumps

if TYPE_CHECKING:
    from fhir_store.searching import HistoryPage
    from fhir_store.store import SearchPage

_SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


@cache
def summary_elements(type_name: str) -> frozenset[str]:
    """Elements the spec marks as in the summary (from the fhir.resources model metadata)."""
    fields = get_fhir_model_class(type_name).model_fields
    names = {
        (info.alias or name)
        for name, info in fields.items()
        if isinstance(info.json_schema_extra, dict)
        and info.json_schema_extra.get("summary_element_property")
    }
    return frozenset(names | {"resourceType", "id", "meta"})


def shape(
    resource: dict[str, Any], summary: str | None, elements: list[str] | None
) -> dict[str, Any]:
    """The resource reduced as ``_summary`` / ``_elements`` ask, tagged SUBSETTED if reduced."""
    keep: set[str] | None = None
    if summary == "true":
        keep = set(summary_elements(resource["resourceType"]))
    elif summary == "text":
        keep = {"resourceType", "id", "meta", "text"}
    elif summary == "data":
        keep = set(resource) - {"text"}
    if elements:
        wanted = {"resourceType", "id", "meta", *elements}
        keep = wanted if keep is None else keep & wanted
    if keep is None:
        return resource
    out = {k: v for k, v in resource.items() if k in keep}
    if len(out) < len(resource):
        meta = dict(out.get("meta", {}))
        meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
        out["meta"] = meta
    return out


def bundle_text(base: str, self_path: str, page: SearchPage) -> str:
    """A searchset Bundle (JSON text) with self/next/previous links built from the query."""
    query = page.query
    used = [(k, v) for k, v in query.used if k not in ("_offset", "_snapshot")]
    if query.snapshot:
        # Later pages see the resources the first page saw (see search.Query.snapshot).
        used.append(("_snapshot", query.snapshot))

    def at(offset: int) -> str:
        return f"{self_path}?{urlencode([*used, ('_offset', offset)])}"

    links = [{"relation": "self", "url": at(query.offset)}]
    if page.has_next:
        links.append({"relation": "next", "url": at(query.offset + query.count)})
    if query.offset:
        links.append({"relation": "previous", "url": at(max(0, query.offset - query.count))})
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        head["total"] = page.total
    head["link"] = links
    entries: list[str] = []
    reduce = query.summary is not None or query.elements is not None
    for mode, items in (("match", page.matches), ("include", page.included)):
        for stored in items:
            content = stored.content
            if reduce:
                content = dumps(shape(json.loads(content), query.summary, query.elements))
            entries.append(
                '{"fullUrl":'
                + json.dumps(f"{base}/{stored.type}/{stored.id}")
                + ',"resource":'
                + content
                + ',"search":{"mode":"'
                + mode
                + '"}}'
            )
    if query.ignored:
        note = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "not-supported",
                    "diagnostics": f"ignored unknown parameter {n!r}",
                    "expression": [n],
                }
                for n in query.ignored
            ],
        }
        entries.append('{"resource":' + dumps(note) + ',"search":{"mode":"outcome"}}')
    text = dumps(head)
    return text[:-1] + ',"entry":[' + ",".join(entries) + "]}"


def history_bundle(
    base: str, path: str, params: list[tuple[str, str]], page: HistoryPage
) -> dict[str, Any]:
    """A history Bundle; links carry the snapshot so later pages do not shift under writes."""
    kept = [(k, v) for k, v in params if k not in ("_offset", "_snapshot")]
    kept.append(("_snapshot", page.snapshot))

    def at(offset: int) -> str:
        return f"{path}?{urlencode([*kept, ('_offset', offset)])}"

    links = [{"relation": "self", "url": at(page.offset)}]
    if page.has_next:
        links.append({"relation": "next", "url": at(page.offset + page.count)})
    if page.offset:
        links.append({"relation": "previous", "url": at(max(0, page.offset - page.count))})
    entries = []
    for s in page.versions:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{s.type}/{s.id}"}
        if not s.deleted:
            entry["resource"] = json.loads(s.content)
        entry["request"] = {
            "method": s.method,
            "url": s.type if s.method == "POST" else f"{s.type}/{s.id}",
        }
        entry["response"] = {
            "status": "204 No Content"
            if s.deleted
            else ("201 Created" if s.version == 1 else "200 OK"),
            "etag": s.etag,
            "lastModified": column_to_instant(s.last_updated),
        }
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": links,
        "entry": entries,
    }
