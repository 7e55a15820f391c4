"""Derive ``security/data/patient_compartment.json`` from the spec's definitions.

Run: ``python -m security.tools.derive_compartment /path/to/fhir-r4`` (the folder with
``compartmentdefinition-patient.json`` and ``search-parameters.json``).

Why a derived file: the compartment definition names search parameters (``Observation:
subject, performer``), but the response filter must look at the resource itself, so it needs
each parameter's element path (``Observation.subject``). Search parameters shared by many
types carry one ``a | b | c`` expression; this picks each type's own part and drops the
``.where(resolve() is Patient)`` filters (the filter only accepts ``Patient/`` references
anyway). Deriving once keeps start-up cheap and the shipped data reviewable in a diff.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "data" / "patient_compartment.json"
_WHERE = re.compile(r"\.where\(resolve\(\) is Patient\)$")
_PATH = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")


def expressions(search_parameters: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(base type, code) -> the parameter's whole FHIRPath expression."""
    found: dict[tuple[str, str], str] = {}
    for entry in search_parameters["entry"]:
        resource = entry["resource"]
        for base in resource.get("base", []):
            if resource.get("expression"):
                found[(base, resource["code"])] = resource["expression"]
    return found


def paths_of(type_name: str, expression: str) -> list[str]:
    """The element paths (without the type) of ``type_name``'s part of an expression."""
    paths = []
    for part in expression.split("|"):
        text = _WHERE.sub("", part.strip())
        if not text.startswith(type_name + "."):
            continue
        if not _PATH.match(text):
            raise ValueError(f"{type_name}: cannot use expression {part.strip()!r}")
        paths.append(text[len(type_name) + 1 :])
    return paths


def derive(definitions: Path) -> dict[str, list[str]]:
    """Resource type -> sorted element paths whose references put it in the compartment."""
    compartment = json.loads((definitions / "compartmentdefinition-patient.json").read_text())
    known = expressions(json.loads((definitions / "search-parameters.json").read_text()))
    derived: dict[str, list[str]] = {}
    for resource in compartment["resource"]:
        type_name = resource["code"]
        paths: set[str] = set()
        for code in resource.get("param", []):
            paths.update(paths_of(type_name, known[(type_name, code)]))
        if paths:
            derived[type_name] = sorted(paths)
    return derived


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = derive(Path(argv[1]))
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {len(data)} resource types")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
