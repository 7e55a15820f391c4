"""The search parameters the store serves, loaded from the shipped derived data.

``data/search_parameters.json`` is generated from the FHIR R4 spec by
``fhir_store/tools/derive_search_params.py``; this module compiles its expressions once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from fhir_store.fhirpath import Collection, compile_expression

#: Parameters answered from columns of the ``resources`` table, not from index rows.
COLUMN_PARAMS = ("_id", "_lastUpdated")


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a composite parameter: its type and expression relative to the base."""

    type: str
    expression: str
    evaluate: Callable[..., Collection] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type."""

    code: str
    type: str
    expression: str
    url: str
    description: str
    targets: tuple[str, ...]
    components: tuple[Component, ...]
    evaluate: Callable[..., Collection] = field(repr=False, compare=False)
    #: Top-level elements the expression starts from; None when it needs the whole resource.
    roots: tuple[str, ...] | None = None

    def may_match(self, keys: frozenset[str] | set[str]) -> bool:
        """False when the resource has none of the elements the expression reads.

        ``keys`` are the resource's element names plus their choice stems (see
        :func:`element_keys`). Most parameters are absent from any one resource, and
        skipping them is most of the indexing cost saved on the hot path.
        """
        return self.roots is None or not keys.isdisjoint(self.roots)


@dataclass(frozen=True, slots=True)
class Shared:
    """Index rows a parameter shares with others instead of writing its own copies.

    ``combo-code`` is ``Observation.code | Observation.component.code``: its rows are those
    of ``code`` and ``component-code``. ``patient`` is ``Observation.subject.where(resolve()
    is Patient)``: its rows are ``subject``'s rows that point at a Patient. Storing each
    row once cuts a vital sign's index rows by a third (see ``Indexer.rows``), and the
    query reads ``param IN (own, *params)`` (with ``target_type`` for an alias, see
    ``search.param_rows``). Rows the others do not hold (a reference that resolves to
    a Patient only through ``Reference.type``) stay under the parameter's own code, so
    the answer is exactly that of the parameter's own rows.
    """

    params: tuple[str, ...]
    #: For ``X.where(resolve() is T)``: only rows of ``params`` whose target type is ``T``.
    target_type: str | None = None


_ALIAS = re.compile(r"(.+)\.where\(resolve\(\) is (\w+)\)")


def _union_parts(expression: str) -> frozenset[str]:
    return frozenset(
        p.strip().removeprefix("(").removesuffix(")").strip() for p in expression.split("|")
    )


def shared_rows(params: Mapping[str, SearchParam]) -> dict[str, Shared]:
    """Per parameter of one type, the parameters whose rows it is made of (see ``Shared``).

    Derived from the expressions alone: ``A | B`` over parameters ``A`` and ``B`` of the same
    type (with the same components, for composites), and ``X.where(resolve() is T)`` over a
    reference parameter ``X``. Parameters that share nothing are absent.
    """
    out: dict[str, Shared] = {}
    for param in params.values():
        alias = _ALIAS.fullmatch(param.expression)
        if alias:
            bases = [
                q.code
                for q in params.values()
                if q.expression == alias.group(1) and q.type == param.type == "reference"
            ]
            if bases:
                out[param.code] = Shared((bases[0],), alias.group(2))
            continue
        parts = _union_parts(param.expression)
        if len(parts) < 2:
            continue
        shape = [(c.type, c.expression) for c in param.components]
        covers = [
            q
            for q in params.values()
            if q is not param
            and q.type == param.type
            and _union_parts(q.expression) < parts
            and [(c.type, c.expression) for c in q.components] == shape
        ]
        if covers and frozenset().union(*(_union_parts(q.expression) for q in covers)) == parts:
            out[param.code] = Shared(tuple(sorted(q.code for q in covers)))
    # A parameter's rows must be its own for another to read them there.
    return {code: s for code, s in out.items() if not any(q in out for q in s.params)}


def element_keys(resource: Mapping[str, Any]) -> set[str]:
    """Element names of a resource plus the stem of each choice element (valueX -> value)."""
    keys = set(resource)
    for key in resource:
        match = _STEM.match(key)
        if match and match.end() < len(key):
            keys.add(match.group())
    return keys


_STEM = re.compile(r"[a-z]+")
_PART = re.compile(r"^\(?[A-Z]\w*\.(\w+)(?:\s+as\s+(\w+)\))?$")
_RELATIVE = re.compile(r"^(\w+)\.as\((\w+)\)$")


def _choice(name: str, kind: str | None) -> str:
    return name + kind[0].upper() + kind[1:] if kind else name


def expression_roots(
    expression: str, components: tuple[Component, ...] = ()
) -> tuple[str, ...] | None:
    """Top-level elements an expression starts from, or None when it needs all of it.

    ``(Observation.value as Quantity)`` starts from ``valueQuantity``; a composite based on
    the resource itself starts from where its value component starts.
    """
    roots: list[str] = []
    for part in expression.split(" | "):
        part = part.strip()
        match = _PART.match(part)
        if match:
            roots.append(_choice(match.group(1), match.group(2)))
            continue
        if re.fullmatch(r"[A-Z]\w*", part) and len(components) == 2:
            for piece in components[1].expression.split(" | "):
                relative = _RELATIVE.match(piece.strip())
                if not relative:
                    return None
                roots.append(_choice(relative.group(1), relative.group(2)))
            continue
        if not re.match(r"^\(?[A-Z]\w*\.\w+", part):
            return None
        roots.append(re.match(r"^\(?[A-Z]\w*\.(\w+)", part).group(1))  # type: ignore[union-attr]
    return tuple(dict.fromkeys(roots))


class Registry:
    """Per resource type, its search parameters by code (``common`` ones included)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        common = [_param(p) for p in data["common"]]
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        for type_name, params in data["resources"].items():
            table = {p.code: p for p in common}
            table.update((p["code"], _param(p)) for p in params)
            self._by_type[type_name] = table
        self.not_supported: tuple[str, ...] = tuple(data.get("notSupported", ()))
        #: Per type, the reference parameters that put a resource in a patient's compartment.
        self.patient_compartment: dict[str, tuple[str, ...]] = {
            t: tuple(p) for t, p in data.get("patientCompartment", {}).items()
        }
        self._shared = {t: shared_rows(params) for t, params in self._by_type.items()}

    @property
    def types(self) -> tuple[str, ...]:
        """The resource types served, in the spec's order of the issue."""
        return tuple(self._by_type)

    def for_type(self, type_name: str) -> Mapping[str, SearchParam]:
        """Parameters of ``type_name`` by code; empty for a type the store does not serve."""
        return self._by_type.get(type_name, {})

    def get(self, type_name: str, code: str) -> SearchParam | None:
        return self._by_type.get(type_name, {}).get(code)

    def shared(self, type_name: str) -> Mapping[str, Shared]:
        """The parameters of ``type_name`` whose rows are others' (see ``Shared``)."""
        return self._shared.get(type_name, {})


def _param(raw: Mapping[str, Any]) -> SearchParam:
    components = tuple(
        Component(c["type"], c["expression"], compile_expression(c["expression"]))
        for c in raw.get("components", ())
    )
    return SearchParam(
        code=raw["code"],
        type=raw["type"],
        expression=raw["expression"],
        url=raw["url"],
        description=raw.get("description", ""),
        targets=tuple(raw.get("target", ())),
        components=components,
        evaluate=compile_expression(raw["expression"]),
        roots=expression_roots(raw["expression"], components),
    )


@cache
def default_registry() -> Registry:
    """The registry from the shipped data (parsed once per process)."""
    text = resources.files("fhir_store").joinpath("data/search_parameters.json").read_text("utf-8")
    return Registry(json.loads(text))
