"""The search parameters the store serves, loaded from the shipped derived data.

``data/search_parameters.json`` is generated from the FHIR R4 spec by
``fhir_store/tools/derive_search_params.py``; this module compiles its expressions once.
"""

from __future__ import annotations

import json
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

    @property
    def types(self) -> tuple[str, ...]:
        """The resource types served, in the spec's order of the issue."""
        return tuple(self._by_type)

    def for_type(self, type_name: str) -> Mapping[str, SearchParam]:
        """Parameters of ``type_name`` by code; empty for a type the store does not serve."""
        return self._by_type.get(type_name, {})

    def get(self, type_name: str, code: str) -> SearchParam | None:
        return self._by_type.get(type_name, {}).get(code)


def _param(raw: Mapping[str, Any]) -> SearchParam:
    return SearchParam(
        code=raw["code"],
        type=raw["type"],
        expression=raw["expression"],
        url=raw["url"],
        description=raw.get("description", ""),
        targets=tuple(raw.get("target", ())),
        components=tuple(
            Component(c["type"], c["expression"], compile_expression(c["expression"]))
            for c in raw.get("components", ())
        ),
        evaluate=compile_expression(raw["expression"]),
    )


@cache
def default_registry() -> Registry:
    """The registry from the shipped data (parsed once per process)."""
    text = resources.files("fhir_store").joinpath("data/search_parameters.json").read_text("utf-8")
    return Registry(json.loads(text))
