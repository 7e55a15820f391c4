"""Derive ``fhir_store/data/search_parameters.json`` from the spec's definitions.

Run: ``python -m fhir_store.tools.derive_search_params /path/to/fhir-r4`` (the folder with
``search-parameters.json`` and ``compartmentdefinition-patient.json``).

Why a derived file: the spec's bundle (2 MB, 1,378 parameters over 146 resource types) mixes
every resource's expression into one ``a | b | c`` string per shared parameter. The store
needs, per served resource type, each parameter's code, type, its own part of the
expression, reference targets and composite components; deriving that once keeps start-up
cheap and the shipped data reviewable in a diff.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SERVED_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Encounter",
    "Observation",
    "Device",
    "DeviceMetric",
    "DeviceUseStatement",
    "ImagingStudy",
    "Endpoint",
    "MessageHeader",
    "Provenance",
    "AuditEvent",
    # Not in the list, but caregraph itself writes it (the silence alert on a device,
    # adapters/registry/alerts.py), so the store serves and searches it like the others.
    "DetectedIssue",
)

#: Parameter types the store searches. ``special`` is Location ``near`` (the only special
#: parameter of a served type): fhir_store/search.py answers it from ``Location.position``.
SUPPORTED_TYPES = (
    "token",
    "string",
    "date",
    "reference",
    "quantity",
    "uri",
    "number",
    "composite",
    "special",
)

#: Resource-level parameters with an expression (``_text``, ``_content``, ``_query`` have none).
COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")

OUTPUT = Path(__file__).resolve().parent.parent / "data" / "search_parameters.json"


def _split_union(expression: str) -> list[str]:
    """Top-level ``|`` parts (parentheses and quotes respected)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _own_part(expression: str, resource_type: str) -> str:
    """The parts of a shared expression that apply to ``resource_type``."""
    own = re.compile(rf"^\(?{resource_type}\b")
    return " | ".join(p for p in _split_union(expression) if own.match(p))


def derive(spec: dict[str, Any], compartment: dict[str, Any]) -> dict[str, Any]:
    """The shipped structure: per served type, its search parameters in spec order, and
    which of them put a resource in a patient's compartment (for ``$everything``)."""
    by_url = {e["resource"]["url"]: e["resource"] for e in spec["entry"]}
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in SERVED_TYPES}
    common: list[dict[str, Any]] = []
    skipped: list[str] = []
    for entry in spec["entry"]:
        sp = entry["resource"]
        if sp["type"] not in SUPPORTED_TYPES:
            skipped.extend(f"{b}.{sp['code']} ({sp['type']})" for b in sp["base"])
            continue
        if "Resource" in sp["base"] and sp["code"] in COMMON:
            common.append(_entry(sp, sp.get("expression", ""), by_url))
            continue
        for base in sp["base"]:
            if base not in out:
                continue
            expression = _own_part(sp.get("expression", ""), base)
            if not expression:
                skipped.append(f"{base}.{sp['code']} (no expression)")
                continue
            out[base].append(_entry(sp, expression, by_url))
    return {
        "fhirVersion": "4.0.1",
        "derivedFrom": "http://hl7.org/fhir/R4/search-parameters.json",
        "generator": "fhir_store/tools/derive_search_params.py",
        "common": common,
        "resources": out,
        "notSupported": sorted(s for s in skipped if s.split(".")[0] in SERVED_TYPES),
        "patientCompartment": {
            r["code"]: r["param"]
            for r in compartment["resource"]
            if r["code"] in SERVED_TYPES and r.get("param")
        },
    }


def _entry(sp: dict[str, Any], expression: str, by_url: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "code": sp["code"],
        "type": sp["type"],
        "url": sp["url"],
        "expression": expression,
        "description": sp.get("description", "").split("\r\n")[0].split("\n")[0][:200],
    }
    if sp["type"] == "reference":
        item["target"] = sorted(sp.get("target", []))
    if sp["type"] == "composite":
        item["components"] = [
            {"type": by_url[c["definition"]]["type"], "expression": c["expression"]}
            for c in sp["component"]
        ]
    return item


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[1])
    spec = json.loads((folder / "search-parameters.json").read_text(encoding="utf-8"))
    compartment = json.loads(
        (folder / "compartmentdefinition-patient.json").read_text(encoding="utf-8")
    )
    derived = derive(spec, compartment)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(derived, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    count = sum(len(v) for v in derived["resources"].values())
    print(f"wrote {count} parameters for {len(SERVED_TYPES)} types to {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
