"""The CapabilityStatement: generated from what the store and router actually implement."""

from __future__ import annotations

from typing import Any

from fhir_store.searchparams import Registry

INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
MODIFIERS_NOTE = (
    "Search: token, string, date, reference, quantity, uri, number and composite parameters,"
    " and Location near (latitude|longitude[|distance[|units]], units km (default), m, [mi_i],"
    " [mi_us], [nmi_i]; 10 km when the distance is omitted); prefixes eq ne gt lt ge le sa eb"
    " ap; modifiers :missing :exact :contains :not :text :identifier :of-type :[type] :below"
    " :above (uri); chaining and _has (nested _has too); _include and _revinclude (:iterate;"
    " Type:* and * for every reference parameter); _text (words in the narrative) and"
    " _content (words in the resource's JSON text), case-insensitive, commas for OR;"
    " _sort (several keys, -desc); _count with _offset paging; _total (accurate; otherwise"
    " Bundle.total is given on the last page and for _count=0); _summary (true, text, data,"
    " count); _elements. Not supported, refused with 400: _query (no named queries), token"
    " :in/:not-in/:above/:below (no terminology service), any other modifier. Unknown"
    " parameters are ignored (reported in an OperationOutcome entry) unless"
    " Prefer: handling=strict, which refuses them with 400."
)

#: Resource-level parameters answered by every type, beyond each type's own list.
SYSTEM_PARAMS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    ("_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
    ("_text", "string", "http://hl7.org/fhir/SearchParameter/DomainResource-text"),
    ("_content", "string", "http://hl7.org/fhir/SearchParameter/Resource-content"),
)


def capability_statement(registry: Registry, base: str) -> dict[str, Any]:
    """What this server supports, per resource type, with the spec's parameter definitions."""
    resources = []
    for type_name in registry.types:
        params = registry.for_type(type_name)
        references = [p.code for p in params.values() if p.type == "reference"]
        entry: dict[str, Any] = {
            "type": type_name,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_name}",
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": ["*", f"{type_name}:*", *(f"{type_name}:{c}" for c in references)],
            "searchRevInclude": ["*", *_revincludes(registry, type_name)],
            "searchParam": [
                {
                    "name": p.code,
                    "definition": p.url,
                    "type": p.type,
                    "documentation": p.description,
                }
                for p in params.values()
            ],
        }
        if type_name == "Patient":
            entry["operation"] = [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "caregraph"},
        "implementation": {"description": "caregraph FHIR store", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": MODIFIERS_NOTE,
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": name, "type": kind, "definition": url}
                    for name, kind, url in SYSTEM_PARAMS
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }


def _revincludes(registry: Registry, type_name: str) -> list[str]:
    """``Other:param`` for each reference parameter that can point at ``type_name``, and
    ``Other:*`` for each such type."""
    named = sorted(
        f"{other}:{p.code}"
        for other in registry.types
        for p in registry.for_type(other).values()
        if p.type == "reference" and type_name in p.targets
    )
    wild = sorted({f"{n.split(':')[0]}:*" for n in named})
    return [*wild, *named]
