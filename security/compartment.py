"""The patient compartment, checked on resources: is this resource about one of these patients?

The element paths per resource type are derived from the spec's CompartmentDefinition
(``security/data/patient_compartment.json``, see ``security.tools.derive_compartment``).
Only relative ``Patient/<id>`` references count: an absolute URL may name another server's
patient with the same id, and a logical reference (identifier only) names no resource here,
so both fail closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any


@cache
def compartment_paths() -> Mapping[str, tuple[str, ...]]:
    """Resource type -> element paths whose Patient references put it in the compartment."""
    text = resources.files("security").joinpath("data/patient_compartment.json").read_text()
    data: dict[str, list[str]] = json.loads(text)
    return {type_name: tuple(paths) for type_name, paths in data.items()}


def _values(node: Any, steps: Sequence[str]) -> Iterator[Any]:
    """Every value at a dotted path, descending through lists (FHIRPath's flattening)."""
    if isinstance(node, list):
        for item in node:
            yield from _values(item, steps)
        return
    if not steps:
        yield node
        return
    if isinstance(node, dict) and steps[0] in node:
        yield from _values(node[steps[0]], steps[1:])


def patient_id_of(reference: str) -> str | None:
    """``Patient/123`` (or ``Patient/123/_history/2``) -> ``123``; anything else -> None."""
    parts = reference.split("/")
    if len(parts) in (2, 4) and parts[0] == "Patient" and parts[1]:
        if len(parts) == 4 and parts[2] != "_history":
            return None
        return parts[1]
    return None


def patients_referenced(resource: Mapping[str, Any]) -> set[str]:
    """Ids of the Patients that put ``resource`` in their compartment."""
    type_name = resource.get("resourceType")
    found: set[str] = set()
    if type_name == "Patient" and isinstance(resource.get("id"), str):
        found.add(resource["id"])
    for path in compartment_paths().get(str(type_name), ()):
        for value in _values(resource, path.split(".")):
            if isinstance(value, dict) and isinstance(value.get("reference"), str):
                patient = patient_id_of(value["reference"])
                if patient:
                    found.add(patient)
    return found


def in_compartment(resource: Mapping[str, Any], patients: frozenset[str]) -> bool:
    """Whether the resource is in the compartment of any of ``patients``."""
    return not patients.isdisjoint(patients_referenced(resource))
