"""Search-index rows for a resource: what each search parameter's expression finds in it.

Rows go to the typed ``idx_*`` tables (see ``schema.py``); each row starts with
``(res_type, res_id, param)``. Reference identifiers and Identifier types are indexed as
token rows under ``<code>:identifier`` and ``<code>:of-type``, so the ``:identifier`` and
``:of-type`` modifiers are plain token lookups.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from fhir_store import combos
from fhir_store.dates import HIGHEST, LOWEST, date_range
from fhir_store.fhirpath import Collection, Node
from fhir_store.searchparams import COLUMN_PARAMS, Registry, SearchParam

Rows = dict[str, set[tuple[Any, ...]]]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_STRING_SKIP = frozenset({"use", "type", "system", "period", "extension", "id"})


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (the FHIR default match)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(node: Node) -> list[tuple[str, str, str | None]]:
    """``(system, code, text)`` triples a token parameter matches for one element."""
    value = node.value
    if isinstance(value, bool):
        return [("", "true" if value else "false", None)]
    if isinstance(value, str | int | float):
        return [("", str(value), None)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or (set(value) <= {"text", "extension", "id"} and "text" in value):
        text = value.get("text")
        out = []
        for coding in value.get("coding", ()):
            display = coding.get("display") or text
            out.append((coding.get("system", ""), coding.get("code", ""), _lower(display or text)))
        if not out and text:
            out.append(("", "", _lower(text)))
        elif text:
            out = [(s, c, _lower(text)) if t is None else (s, c, t) for s, c, t in out]
        return out
    if "code" in value and "value" not in value:
        return [(value.get("system", ""), str(value["code"]), _lower(value.get("display")))]
    if "value" in value:
        system = value.get("system", "")
        type_text = (
            value.get("type", {}).get("text") if isinstance(value.get("type"), dict) else None
        )
        if system in _CONTACT_SYSTEMS:
            return [("", str(value["value"]), None)]
        return [(system, str(value["value"]), _lower(type_text))]
    return []


def _lower(text: Any) -> str | None:
    return normalize(text) if isinstance(text, str) else None


def strings(node: Node) -> list[str]:
    """String values of one element (a HumanName or Address gives each of its parts)."""
    value = node.value
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, dict):
        for key, part in value.items():
            if key in _STRING_SKIP:
                continue
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, list):
                out.extend(p for p in part if isinstance(p, str))
    return out


def dates(node: Node) -> list[tuple[str, str]]:
    """``(lo, hi)`` ranges for a date, dateTime, instant, or Period element."""
    value = node.value
    try:
        if isinstance(value, str):
            return [date_range(value)]
        if isinstance(value, dict) and ("start" in value or "end" in value):
            lo = date_range(value["start"])[0] if "start" in value else LOWEST
            hi = date_range(value["end"])[1] if "end" in value else HIGHEST
            return [(lo, hi)]
        if isinstance(value, dict) and "event" in value:  # Timing
            return [date_range(e) for e in value["event"]]
    except ValueError:
        return []  # a resource built by us is valid; an invalid date is never searchable
    return []


def quantities(node: Node) -> list[tuple[float, str, str, str]]:
    """``(value, system, code, unit)`` for a Quantity element."""
    value = node.value
    if isinstance(value, dict) and isinstance(value.get("value"), int | float):
        return [
            (
                float(value["value"]),
                value.get("system", ""),
                value.get("code", ""),
                value.get("unit", ""),
            )
        ]
    return []


def reference_target(ref: str) -> tuple[str, str]:
    """``(type, id)`` of a literal reference; ``("", "")`` for urn:, fragments and the like."""
    if ref.startswith(("#", "urn:")):
        return "", ""
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return "", ref


class _Plan:
    """One resource type's parameters, by the top-level element each expression starts from.

    Built once per type: a resource then evaluates only the parameters whose elements it
    has (``SearchParam.may_match``), found by a dictionary lookup per element of the
    resource instead of a test per parameter of the type.
    """

    __slots__ = ("always", "by_key", "compounds")

    def __init__(self, params: Iterable[SearchParam], res_type: str) -> None:
        self.always: list[SearchParam] = []
        self.by_key: dict[str, list[SearchParam]] = {}
        for param in params:
            if param.code in COLUMN_PARAMS:
                continue
            if param.roots is None:
                self.always.append(param)
                continue
            for root in param.roots:
                self.by_key.setdefault(root, []).append(param)
        self.compounds = combos.for_type(res_type)

    def params(self, resource: Mapping[str, Any]) -> list[SearchParam]:
        """The parameters that may find something in ``resource``, each once."""
        chosen = list(self.always)
        by_key = self.by_key
        for key in resource:
            found = by_key.get(key)
            if found:
                chosen.extend(found)
            # A choice element (``valueQuantity``) also counts under its stem (``value``),
            # as in ``searchparams.element_keys``.
            stem = _STEM.match(key)
            if stem is not None and stem.end() < len(key):
                found = by_key.get(stem.group())
                if found:
                    chosen.extend(found)
        if len(chosen) < 2:
            return chosen
        return list({id(param): param for param in chosen}.values())

    def every(self, params: Iterable[SearchParam]) -> list[SearchParam]:
        return [p for p in params if p.code not in COLUMN_PARAMS]


_STEM = re.compile(r"[a-z]+")


class Indexer:
    """Turns resources into index rows, using the registry's compiled expressions."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._plans: dict[str, _Plan] = {}

    def _plan(self, res_type: str) -> _Plan:
        plan = self._plans.get(res_type)
        if plan is None:
            plan = self._plans[res_type] = _Plan(
                self.registry.for_type(res_type).values(), res_type
            )
        return plan

    def rows(
        self, resource: Mapping[str, Any], into: Rows | None = None, *, skip: bool = True
    ) -> Rows:
        """Index rows for one resource, added to ``into`` (a table -> rows mapping).

        ``skip=False`` evaluates every parameter of the type, even those whose elements the
        resource lacks: the reference the skipping is tested against.
        """
        out: Rows = {}
        res_type = resource["resourceType"]
        res_id = resource["id"]
        plan = self._plan(res_type)
        params = (
            plan.params(resource) if skip else plan.every(self.registry.for_type(res_type).values())
        )
        for param in params:
            found = param.evaluate(resource)
            if found:
                self._add(out, res_type, res_id, param, found)
        for compound in plan.compounds:
            rows = combos.compound_rows(
                compound,
                list(out.get("idx_reference", ())),
                list(out.get("idx_token", ())),
                list(out.get("idx_date", ())),
            )
            if rows:
                out.setdefault("idx_compound", set()).update(rows)
        if into is None:
            return out
        for table, part in out.items():
            into.setdefault(table, set()).update(part)
        return into

    def _add(
        self, out: Rows, res_type: str, res_id: str, param: SearchParam, found: Collection
    ) -> None:
        key = (res_type, res_id, param.code)
        kind = param.type
        if kind == "token":
            table = out.setdefault("idx_token", set())
            for node in found:
                for system, code, text in tokens(node):
                    table.add((*key, system, code, text))
                self._of_type(out, res_type, res_id, param.code, node)
        elif kind == "string":
            table = out.setdefault("idx_string", set())
            for node in found:
                for text in strings(node):
                    table.add((*key, normalize(text), text))
        elif kind == "date":
            table = out.setdefault("idx_date", set())
            for node in found:
                for lo, hi in dates(node):
                    table.add((*key, lo, hi))
        elif kind == "reference":
            self._references(out, key, found)
        elif kind == "quantity":
            table = out.setdefault("idx_quantity", set())
            for node in found:
                for q in quantities(node):
                    table.add((*key, *q))
        elif kind == "uri":
            table = out.setdefault("idx_uri", set())
            table.update((*key, n.value) for n in found if isinstance(n.value, str))
        elif kind == "number":
            table = out.setdefault("idx_number", set())
            table.update(
                (*key, float(n.value))
                for n in found
                if isinstance(n.value, int | float) and not isinstance(n.value, bool)
            )
        elif kind == "composite":
            self._composites(out, key, param, found)

    @staticmethod
    def _of_type(out: Rows, res_type: str, res_id: str, code: str, node: Node) -> None:
        value = node.value
        if not (
            isinstance(value, dict) and "value" in value and isinstance(value.get("type"), dict)
        ):
            return
        table = out.setdefault("idx_token", set())
        for coding in value["type"].get("coding", ()):
            type_key = f"{coding.get('system', '')}|{coding.get('code', '')}"
            table.add((res_type, res_id, f"{code}:of-type", type_key, str(value["value"]), None))

    @staticmethod
    def _references(out: Rows, key: tuple[str, str, str], found: Collection) -> None:
        table = out.setdefault("idx_reference", set())
        for node in found:
            value = node.value
            if isinstance(value, str):
                table.add((*key, *reference_target(value), value))
                continue
            if not isinstance(value, dict):
                continue
            ref = value.get("reference")
            if isinstance(ref, str):
                table.add((*key, *reference_target(ref), ref))
            ident = value.get("identifier")
            if isinstance(ident, dict) and "value" in ident:
                out.setdefault("idx_token", set()).add(
                    (
                        key[0],
                        key[1],
                        f"{key[2]}:identifier",
                        ident.get("system", ""),
                        str(ident["value"]),
                        None,
                    )
                )

    @staticmethod
    def _composites(
        out: Rows, key: tuple[str, str, str], param: SearchParam, found: Collection
    ) -> None:
        table = out.setdefault("idx_composite", set())
        first, second = param.components[0], param.components[1]
        for base in found:
            codes = [t for n in first.evaluate(base.value, base) for t in tokens(n)]
            if not codes:
                continue
            values = list(_composite_values(second.type, second.evaluate(base.value, base)))
            for system, code, _ in codes:
                for v in values:
                    table.add((*key, system, code, *v))


def _composite_values(
    kind: str, found: Iterable[Node]
) -> Iterable[tuple[Any, Any, Any, Any, Any, Any, Any]]:
    """``(v_system, v_code, v_num, v_unit, v_lo, v_hi, v_str)`` for the second component."""
    for node in found:
        if kind == "token":
            for system, code, _ in tokens(node):
                yield (system, code, None, None, None, None, None)
        elif kind == "quantity":
            for num, system, code, unit in quantities(node):
                yield (system, code, num, unit, None, None, None)
        elif kind == "date":
            for lo, hi in dates(node):
                yield (None, None, None, None, lo, hi, None)
        elif kind == "string":
            for text in strings(node):
                yield (None, None, None, None, None, None, normalize(text))


#: Column order of each table's rows as :class:`Indexer` builds them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "idx_compound": combos.COLUMNS,
    "idx_token": ("res_type", "res_id", "param", "system", "code", "text"),
    "idx_string": ("res_type", "res_id", "param", "value", "exact"),
    "idx_date": ("res_type", "res_id", "param", "lo", "hi"),
    "idx_reference": ("res_type", "res_id", "param", "target_type", "target_id", "ref"),
    "idx_quantity": ("res_type", "res_id", "param", "value", "system", "code", "unit"),
    "idx_uri": ("res_type", "res_id", "param", "uri"),
    "idx_number": ("res_type", "res_id", "param", "value"),
    "idx_composite": (
        "res_type",
        "res_id",
        "param",
        "c_system",
        "c_code",
        "v_system",
        "v_code",
        "v_num",
        "v_unit",
        "v_lo",
        "v_hi",
        "v_str",
    ),
}
