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
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from fhir_store import combos
from fhir_store.dates import HIGHEST, LOWEST, date_range
from fhir_store.fhirpath import Collection, Node
from fhir_store.searchparams import COLUMN_PARAMS, Registry, SearchParam, Shared

Rows = dict[str, set[tuple[Any, ...]]]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_STRING_SKIP = frozenset({"use", "type", "system", "period", "extension", "id"})


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (the FHIR default match)."""
    if text.isascii():  # nothing to decompose, no combining marks
        return text.casefold()
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


_SECOND_Z = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")


def instant_range(text: str) -> tuple[str, str]:
    """``date_range`` of ``text``, without its general parsing for the form devices and
    caregraph's builders write (``2023-11-14T22:14:20Z``, to the second, in UTC).

    Raises:
        ValueError: as ``date_range``.
    """
    match = _SECOND_Z.fullmatch(text)
    if match is None or text.startswith("9999"):  # 9999: date_range's overflow rules
        return date_range(text)
    year, month, day, hour, minute, second = map(int, match.groups())
    datetime(year, month, day, hour, minute, second)  # raises ValueError if not a date
    return text[:19] + ".000000", text[:19] + ".999999"


def dates(node: Node) -> list[tuple[str, str]]:
    """``(lo, hi)`` ranges for a date, dateTime, instant, or Period element."""
    value = node.value
    try:
        if isinstance(value, str):
            return [instant_range(value)]
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


@lru_cache(maxsize=8192)  # a feed's references repeat: its patient, device, bed
def reference_target(ref: str) -> tuple[str, str]:
    """``(type, id)`` of a literal reference; ``("", "")`` for urn:, fragments and the like."""
    if ref.startswith(("#", "urn:")):
        return "", ""
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return "", ref


_STEM = re.compile(r"[a-z]+")
_NAME = re.compile(r"^\(?\s*([a-z]\w*)")
_TYPED_PATH = re.compile(r"^\(?\s*[A-Z]\w*\.([a-z]\w*)")
_ANY_TYPED_PATH = re.compile(r"(?<![\w.])[A-Z]\w*\.([a-z]\w*)")
_BARE_TYPE = re.compile(r"^\(?\s*[A-Z]\w*\s*\)?$")
#: Per group, how many lookups before its hit rate is judged, and the rate that keeps it.
_JUDGE_AFTER = 5000
_KEEP_RATE = 0.2
_MEMO_LIMIT = 8192


@lru_cache(maxsize=4096)  # element names repeat in every resource
def _stem(key: str) -> str:
    match = _STEM.match(key)
    return match.group() if match else key


def _parts(expression: str) -> list[str]:
    return [part.strip() for part in expression.split("|")]


def dependencies(param: SearchParam) -> frozenset[str] | None:
    """Stems of the top-level elements an expression reads (``value`` for
    ``Observation.value as Quantity``); None when that cannot be told from the text.

    A composite based on the resource itself reads what its components start from. An
    expression that yields something from nothing (``Patient.deceased.exists() and ...``
    is ``false`` for a Patient without ``deceased``) depends on the whole resource.
    """
    if param.roots is None or "exists()" in param.expression or " and " in param.expression:
        return None
    names = {_stem(name) for name in _ANY_TYPED_PATH.findall(param.expression)}
    for part in _parts(param.expression):
        if _TYPED_PATH.match(part):
            continue
        if _BARE_TYPE.match(part) and param.components:
            for component in param.components:
                for piece in _parts(component.expression):
                    relative = _NAME.match(piece)
                    if relative is None:
                        return None
                    names.add(_stem(relative.group(1)))
        else:
            return None
    return frozenset(names)


def _memo_text(value: Any) -> Any:
    """A hashable stand-in for a JSON value that tells every two different values apart
    (``1``, ``1.0`` and ``True`` too): orjson's text of it, ``repr`` where orjson refuses."""
    kind = type(value)
    if kind is str:
        return value
    try:
        return (kind, orjson.dumps(value))
    except TypeError:  # an integer beyond 64 bits
        return (kind, repr(value))


class _Group:
    """Parameters that read the same top-level elements, with their rows memoized.

    Rows of a parameter are a function of the elements its expression reads; devices and
    feeds repeat most of those (a code, a category, a unit, the patient), so the rows of a
    group are kept by the elements' values (see ``_memo_text``) and reused without
    evaluating anything. A group whose values rarely
    repeat (a timestamp) stops memoizing after ``_JUDGE_AFTER`` lookups.
    """

    __slots__ = ("aliases", "hits", "lookups", "memo", "names", "params")

    def __init__(
        self, names: frozenset[str], params: list[SearchParam], aliases: Mapping[str, Shared]
    ) -> None:
        self.names = tuple(sorted(names))
        self.params = params
        codes = {p.code for p in params}
        #: The aliases whose rows and whose parts' rows this group finds alone.
        self.aliases = {
            c: s for c, s in aliases.items() if c in codes and codes.issuperset(s.params)
        }
        self.memo: dict[tuple[Any, ...], dict[str, list[tuple[Any, ...]]]] | None = {}
        self.lookups = 0
        self.hits = 0

    def judge(self) -> None:
        if self.lookups >= _JUDGE_AFTER and self.hits < _KEEP_RATE * self.lookups:
            self.memo = None  # values do not repeat: evaluate directly from now on


class _Plan:
    """One resource type's parameters, grouped by the top-level elements they read.

    Built once per type: a resource then evaluates only the groups whose elements it has
    (what ``SearchParam.may_match`` tells), found by a dictionary lookup per element of the
    resource instead of a test per parameter of the type.

    A union that shares its rows (``combo-code`` is ``code | component-code``, see
    ``Shared``) is not evaluated at all: every row it finds is one of its parts' rows, which
    ``_drop_shared`` would drop again. Only rows kept under a derived code are not: a token's
    ``:of-type`` rows, which ``_union_of_type`` copies from the parts' own. Aliases
    (``patient`` is ``subject`` where it names a Patient) are evaluated, since a reference
    that names its type only in ``Reference.type`` stays their own, and dropped row by row:
    by the group that evaluates them where it holds their parts too (its memo keeps the
    rows without them), else once the resource's rows are all found (``aliases``).
    """

    __slots__ = ("aliases", "always", "by_name", "compounds", "every", "layouts", "of_type")

    def __init__(
        self, params: Iterable[SearchParam], res_type: str, shared: Mapping[str, Shared]
    ) -> None:
        self.every = [p for p in params if p.code not in COLUMN_PARAMS]
        self.aliases = {c: s for c, s in shared.items() if s.target_type is not None}
        unions = {c: s for c, s in shared.items() if s.target_type is None}
        #: ``<part>:of-type`` -> ``<union>:of-type`` for each token union over that part.
        self.of_type: dict[str, list[str]] = {}
        for param in self.every:
            if param.code in unions and param.type == "token":
                for part in unions[param.code].params:
                    self.of_type.setdefault(f"{part}:of-type", []).append(f"{param.code}:of-type")
        self.always: list[SearchParam] = []
        grouped: dict[frozenset[str], list[SearchParam]] = {}
        for param in self.every:
            if param.code in unions:
                continue
            names = dependencies(param)
            if names is None:
                self.always.append(param)
            else:
                grouped.setdefault(names, []).append(param)
        self.by_name: dict[str, list[_Group]] = {}
        for names, members in grouped.items():
            group = _Group(names, members, self.aliases)
            for name in names:
                self.by_name.setdefault(name, []).append(group)
            for code in group.aliases:
                del self.aliases[code]  # dropped where the group is evaluated
        self.compounds = combos.for_type(res_type)
        self.layouts: dict[tuple[str, ...], list[tuple[_Group, tuple[str, ...]]]] = {}

    def layout(self, keys: tuple[str, ...]) -> list[tuple[_Group, tuple[str, ...]]]:
        """The groups that may find something in a resource with these top-level keys,
        each once, with the keys it reads. Kept per key tuple: one feed's resources
        have the same keys in the same order, so this is worked out once per feed."""
        found = self.layouts.get(keys)
        if found is None:
            by_stem: dict[str, list[str]] = {}
            for key in keys:
                by_stem.setdefault(_stem(key), []).append(key)
            found = [
                (group, tuple(k for name in group.names for k in by_stem.get(name, ())))
                for group in self.groups(by_stem)
            ]
            if len(self.layouts) >= _MEMO_LIMIT:
                self.layouts.clear()
            self.layouts[keys] = found
        return found

    def groups(self, by_stem: dict[str, list[str]]) -> list[_Group]:
        """The groups that may find something in a resource (its keys by stem), each once."""
        chosen: dict[int, _Group] = {}
        by_name = self.by_name
        for stem in by_stem:
            found = by_name.get(stem)
            if found:
                for group in found:
                    chosen[id(group)] = group
        return list(chosen.values())


class Indexer:
    """Turns resources into index rows, using the registry's compiled expressions."""

    def __init__(self, registry: Registry, *, share: bool = True) -> None:
        """``share=False`` writes every parameter's own rows, as stores before schema 6
        did (see ``searchparams.Shared``); tests compare the two."""
        self.registry = registry
        self.share = share
        self._plans: dict[str, _Plan] = {}

    def _plan(self, res_type: str) -> _Plan:
        plan = self._plans.get(res_type)
        if plan is None:
            plan = self._plans[res_type] = _Plan(
                self.registry.for_type(res_type).values(),
                res_type,
                self.registry.shared(res_type) if self.share else {},
            )
        return plan

    def rows(
        self, resource: Mapping[str, Any], into: Rows | None = None, *, skip: bool = True
    ) -> Rows:
        """Index rows for one resource, added to ``into`` (a table -> rows mapping).

        ``skip=False`` evaluates every parameter of the type on the whole resource, without
        grouping or memos: the reference the fast path is tested against.
        """
        out: Rows = {}
        res_type = resource["resourceType"]
        res_id = resource["id"]
        plan = self._plan(res_type)
        if not skip:
            for param in plan.every:
                found = param.evaluate(resource)
                if found:
                    self._add(out, res_type, res_id, param, found)
        else:
            for param in plan.always:
                found = param.evaluate(resource)
                if found:
                    self._add(out, res_type, res_id, param, found)
            texts: dict[str, tuple[str, Any]] = {}
            gathered: dict[str, list[tuple[Any, ...]]] = {}
            for group, keys in plan.layout(tuple(resource)):
                if group.memo is None:  # values do not repeat: evaluate directly
                    self._evaluate(out, group, {k: resource[k] for k in keys}, res_type, res_id)
                    continue
                for table, tails in self._memoized(group, keys, resource, texts).items():
                    if table in gathered:
                        gathered[table].extend(tails)
                    else:
                        gathered[table] = list(tails)
            for table, tails in gathered.items():
                out.setdefault(table, set()).update([(res_type, res_id, *t) for t in tails])
            if plan.of_type and "idx_token" in out:
                _union_of_type(out["idx_token"], plan.of_type)
        for compound in plan.compounds:
            rows = combos.compound_rows(
                compound,
                list(out.get("idx_reference", ())),
                list(out.get("idx_token", ())),
                list(out.get("idx_date", ())),
            )
            if rows:
                out.setdefault("idx_compound", set()).update(rows)
        if not skip:
            if self.share:
                _drop_shared(out, self.registry.shared(res_type))
        elif plan.aliases and "idx_reference" in out:  # aliases are reference parameters
            _drop_covered(out["idx_reference"], plan.aliases)
        if into is None:
            return out
        for table, part in out.items():
            into.setdefault(table, set()).update(part)
        return into

    def _memoized(
        self,
        group: _Group,
        keys: tuple[str, ...],
        resource: Mapping[str, Any],
        texts: dict[str, tuple[str, Any]],
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The group's rows without their ``(res_type, res_id)``, by table: from its memo
        when the elements it reads (``keys``) were seen before, else evaluated on those
        elements alone (which gives the same rows) and remembered."""
        memo = group.memo
        assert memo is not None
        parts = []
        for k in keys:
            text = texts.get(k)
            if text is None:
                text = texts[k] = (k, _memo_text(resource[k]))
            parts.append(text)
        key = tuple(parts)
        group.lookups += 1
        tails = memo.get(key)
        if tails is not None:
            group.hits += 1
            return tails
        found: Rows = {}
        res_type, res_id = resource["resourceType"], resource["id"]
        self._evaluate(found, group, {k: resource[k] for k in keys}, res_type, res_id)
        tails = {table: [row[2:] for row in rows] for table, rows in found.items()}
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = tails
        if group.lookups % _JUDGE_AFTER == 0:
            group.judge()
        return tails

    def _evaluate(
        self,
        out: Rows,
        group: _Group,
        part: dict[str, Any],
        res_type: str,
        res_id: str,
    ) -> None:
        reduced = {"resourceType": res_type, "id": res_id, **part}
        for param in group.params:
            found = param.evaluate(reduced)
            if found:
                self._add(out, res_type, res_id, param, found)
        if group.aliases and "idx_reference" in out:
            _drop_covered(out["idx_reference"], group.aliases)

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


def _union_of_type(tokens: set[tuple[Any, ...]], of_type: Mapping[str, list[str]]) -> None:
    """The ``:of-type`` rows of the token unions (see ``_Plan``), from their parts' own."""
    derived = [
        (row[0], row[1], union, *row[3:])
        for row in tokens
        if row[2] in of_type
        for union in of_type[row[2]]
    ]
    tokens.update(derived)


def _drop_covered(rows: set[tuple[Any, ...]], shared: Mapping[str, Shared]) -> None:
    """Drop the rows of parameters that share other parameters' rows (see ``Shared``)
    where those hold the same row; what only the parameter itself finds is kept."""
    covered = [
        row
        for row in rows
        if (share := shared.get(row[2])) is not None
        and (share.target_type is None or row[3] == share.target_type)
        and any((row[0], row[1], code, *row[3:]) in rows for code in share.params)
    ]
    rows.difference_update(covered)


def _drop_shared(out: Rows, shared: Mapping[str, Shared]) -> None:
    """``_drop_covered`` in every table but the compounds'."""
    for table, rows in out.items():
        if table != "idx_compound":
            _drop_covered(rows, shared)


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
