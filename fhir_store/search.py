"""FHIR search compiled to SQL over the typed index tables.

Each search parameter becomes one predicate on the candidate row ``alias.res_id``: an
``IN (SELECT res_id FROM idx_<type> WHERE ...)`` subquery on an indexed column; values
joined by commas (OR) become ``IN (...)`` lists or row-value lists, never long OR chains;
repeated parameters (AND) become more predicates. Chains and ``_has`` nest the same
predicates over another alias, so the whole search is one SQL statement.

Parameters answered from the stored JSON rather than from index rows (a predicate on the
candidate row itself, dialect-specific JSON access): Location ``near`` (great-circle
distance to ``position``), ``_text`` (words in the narrative ``text.div``) and ``_content``
(words anywhere in the resource's JSON text).

Errors: a value the server cannot read, an unsupported modifier, ``_query`` (no named
queries are defined) or ``:in``/``:not-in`` (no ValueSets here), and an unknown parameter
under ``Prefer: handling=strict``, raise ``InvalidSearch``/``NotSupported`` naming the
parameter. Under ``handling=lenient`` (the default) an unknown parameter is ignored and
reported in the Bundle's outcome entry.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_store import combos
from fhir_store.dates import FORMAT, date_range
from fhir_store.errors import InvalidSearch, NotSupported
from fhir_store.indexing import normalize, reference_target
from fhir_store.schema import ROW_SPAN
from fhir_store.searchparams import Registry, SearchParam

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Parameters that shape the result instead of filtering it.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
        "_snapshot",
    }
)
#: Resource-level parameters answered from the stored JSON text (see :meth:`QueryBuilder._words`).
TEXT_PARAMS = ("_text", "_content")
#: Great-circle distance units accepted by Location ``near`` (UCUM codes), in kilometres.
DISTANCE_UNITS = {
    "km": 1.0,
    "m": 0.001,
    "[mi_i]": 1.609344,
    "mi": 1.609344,
    "[mi_us]": 1.609347,
    "[nmi_i]": 1.852,
}
#: ``near`` without a distance: the spec leaves "near" to the server; this one says 10 km.
DEFAULT_NEAR_KM = 10.0
EARTH_RADIUS_KM = 6371.0088
#: Token modifiers the spec defines that need terminology (ValueSet expansion or
#: subsumption); the store has no terminology service, so it refuses them clearly.
_TERMINOLOGY_MODIFIERS = ("in", "not-in", "above", "below")
SNAPSHOT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}")
MAX_COUNT = 1000
DEFAULT_COUNT = 50
_TABLE = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "reference": "idx_reference",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "number": "idx_number",
    "composite": "idx_composite",
}
# Types whose values are split on '|' (system|code, quantity units, references): they keep
# an escaped '|' as the placeholder until split; the others take it back at once.
#: Past this no page exists: the bound keeps the number inside the databases' integers.
MAX_OFFSET = 2**31 - 1
_PIPED_TYPES = frozenset({"token", "reference", "number", "quantity", "composite"})
_MODIFIERS = {
    "token": {"missing", "not", "text", "of-type", ""},
    "string": {"missing", "exact", "contains", ""},
    "date": {"missing", ""},
    "reference": {"missing", "identifier", ""},
    "quantity": {"missing", ""},
    "uri": {"missing", "below", "above", ""},
    "number": {"missing", ""},
    "composite": {"missing", ""},
    "special": {"missing", ""},
}
#: Parameter types ``_sort`` accepts (see :meth:`QueryBuilder.order_by`).
_SORTABLE = ("date", "string", "token", "number", "quantity", "reference", "uri")


@dataclass(slots=True)
class Sql:
    """A SQL fragment and its parameters.

    A predicate on an index table also carries its correlated ``EXISTS`` form and a rank
    (0 most selective): the search drives from the best-ranked predicate as ``IN (...)``
    and probes the others with ``EXISTS``, so SQLite never materializes a large IN list
    (say every heart-rate Observation) only to intersect it with one patient's.
    """

    text: str
    params: list[Any] = field(default_factory=list)
    exists: str | None = None
    rank: int = 2
    #: Set on the compound predicate: what it takes to rank a page off ``idx_compound``.
    scan: CompoundScan | None = None


@dataclass(frozen=True, slots=True)
class CompoundScan:
    """The parts of a compound predicate (see ``combos.py``) that let a search sorted by
    the compound's date, newest first, read its page straight off ``idx_compound``'s
    order (``ref_id, code, system, hi``) and stop after the page, instead of sorting
    every candidate by a probe of ``idx_date`` each."""

    head: tuple[str, str, str]  # res_type, combo, ref_id
    filter: Sql  # token and date conditions on unqualified idx_compound columns
    date: str  # the compound's date parameter
    #: The date condition bounds ``hi`` from below only (``ge``/``gt``), so the row of a
    #: resource's latest date passes it whenever any of its rows does: the largest ``hi``
    #: among a resource's matching rows is then its sort key, MAX(hi) of all its dates.
    hi_only: bool


def own_rows(alias: str, qualifier: str = "") -> str:
    """The condition on an index table's ``row_key`` that keeps the rows of the resource
    row ``alias`` (see ``schema.ROW_SPAN``): one range of the primary key."""
    low = f"{alias}.rid * {ROW_SPAN}"
    return f"{qualifier}row_key BETWEEN {low} AND {low} + {ROW_SPAN - 1}"


def unindexed(dialect: str) -> str:
    """What follows an index table's name in a probe of one resource's rows by
    ``own_rows``: SQLite, planning without statistics, would otherwise rather walk a value
    index (all the rows of a code) than the resource's range of its rowid."""
    return " NOT INDEXED" if dialect == "sqlite" else ""


def param_rows(registry: Registry, type_name: str, code: str, qualifier: str = "") -> Sql:
    """The condition on an index table's ``param`` column that selects the rows of
    ``code``: its own, and those it shares with other parameters (``searchparams.Shared``:
    ``combo-code`` reads ``code`` and ``component-code`` rows, ``patient`` reads
    ``subject`` rows that point at a Patient). ``qualifier`` is a table alias and dot."""
    share = registry.shared(type_name).get(code)
    if share is None:
        return Sql(f"{qualifier}param = ?", [code])
    marks = ", ".join("?" * (1 + len(share.params)))
    text = f"{qualifier}param IN ({marks})"
    if share.target_type is None:
        return Sql(text, [code, *share.params])
    return Sql(
        f"{text} AND ({qualifier}param = ? OR {qualifier}target_type = ?)",
        [code, *share.params, code, share.target_type],
    )


@dataclass(frozen=True, slots=True)
class SortKey:
    code: str
    descending: bool


@dataclass(slots=True)
class Query:
    """A parsed search: filters as SQL, and how to shape the result."""

    type: str
    where: list[Sql]
    sort: list[SortKey]
    count: int
    offset: int
    #: "accurate": count every match; "none": never; "auto" (the default): only when the
    #: page shows it for free (the last page) or nothing but the count is asked (_count=0).
    #: Counting a large match set costs as much as the search; clients that need the
    #: number ask with ``_total=accurate``.
    total: str
    summary: str | None
    elements: list[str] | None
    includes: list[tuple[str, str, str | None, bool]]  # (source type, param, target, iterate)
    revincludes: list[tuple[str, str, str | None, bool]]
    used: list[tuple[str, str]]  # the parameters honoured, for the self link
    ignored: list[str]
    #: Resources first created after this instant are not in this search's pages.
    snapshot: str | None = None


def split_values(raw: str) -> list[str]:
    """Comma-separated OR values; ``\\,`` is a literal comma and ``\\|`` a literal pipe,
    kept as the placeholder ``_split_pipe`` leaves whole (``_unescape`` turns it back)."""
    out, current, escaped = [], [], False
    for ch in raw:
        if escaped:
            current.append(_PIPE if ch == "|" else ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


_PIPE = "\x00"  # an escaped '|' inside a value: never a separator


def _split_pipe(value: str) -> list[str]:
    return value.replace("\\|", _PIPE).split("|")


def _unescape(value: str) -> str:
    return value.replace(_PIPE, "|")


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class QueryBuilder:
    """Parses search parameters of one request into a :class:`Query`.

    ``dialect`` ("sqlite" or "postgresql") picks the JSON functions of the parameters
    answered from stored content (``near``, ``_text``, ``_content``).
    """

    def __init__(self, registry: Registry, dialect: str = "sqlite") -> None:
        self.registry = registry
        self.dialect = dialect

    def _sub(
        self, alias: str, negate: bool, key: str, body: str, params: list[Any], rank: int
    ) -> Sql:
        """``alias.res_id [NOT] IN (SELECT key FROM body)`` with its EXISTS twin; ``body``
        is ``<table> WHERE <conditions>``. Where ``key`` is the index row's own resource,
        the twin probes that resource's rows (``own_rows``)."""
        op = "NOT IN" if negate else "IN"
        prefix = "NOT EXISTS" if negate else "EXISTS"
        if key == "res_id":
            table, where = body.split(" WHERE ", 1)
            probe = f"{table}{unindexed(self.dialect)} WHERE {where} AND {own_rows(alias)}"
        else:
            probe = f"{body} AND {key} = {alias}.res_id"
        return Sql(
            f"{alias}.res_id {op} (SELECT {key} FROM {body})",
            params,
            f"{prefix} (SELECT 1 FROM {probe})",
            3 if negate else rank,
        )

    def build(
        self, type_name: str, params: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> Query:
        """Raises ``InvalidSearch`` for unreadable values (and unknown names when strict)."""
        query = Query(type_name, [], [], DEFAULT_COUNT, 0, "auto", None, None, [], [], [], [])
        compound, consumed = self._compound(type_name, params)
        if compound is not None:
            query.where.append(compound)
        for index, (name, raw) in enumerate(params):
            if index in consumed:
                query.used.append((name, raw))
                continue
            base, _, modifier = name.partition(":")
            if base in ("_include", "_revinclude") and modifier in ("iterate", "recurse"):
                spec = self._include_spec(raw, name)
                target = query.includes if base == "_include" else query.revincludes
                target.append((*spec[:3], True))
                query.used.append((name, raw))
                continue
            if name in RESULT_PARAMS:
                self._result_param(query, name, raw)
                query.used.append((name, raw))
                continue
            try:
                condition = self.condition(type_name, "r", name, raw)
            except _Unknown as unknown:
                if strict:
                    raise InvalidSearch(
                        f"unknown search parameter {unknown.args[0]!r} for {type_name}",
                        expression=name,
                    ) from None
                query.ignored.append(name)
                continue
            query.where.append(condition)
            query.used.append((name, raw))
        return query

    def _compound(
        self, type_name: str, params: Sequence[tuple[str, str]]
    ) -> tuple[Sql | None, set[int]]:
        """One ``idx_compound`` predicate for a reference, a token and a date named together
        (see ``combos.py``), and which parameters it stands for; else ``(None, set())``."""
        for compound in combos.for_type(type_name):
            typed = f":{compound.target_type}"
            ref_names = {
                name + suffix
                for name in (compound.reference, *compound.aliases)
                for suffix in ("", typed)
            }
            found: dict[str, int] = {}
            for index, (name, raw) in enumerate(params):
                if not raw or ("," in raw and name != compound.token):
                    continue
                if name in ref_names and "ref" not in found:
                    found["ref"] = index
                elif name == compound.token and "token" not in found:
                    found["token"] = index
                elif name == compound.date and "date" not in found:
                    found["date"] = index
            if len(found) < 3:
                continue
            ref_name, ref_raw = params[found["ref"]]
            kind, ref_id = reference_target(ref_raw)
            if kind not in ("", compound.target_type):
                continue
            if ref_name in compound.aliases and kind != compound.target_type:
                continue  # subject=x may name a Group or a Device: only the plain path knows
            values = split_values(params[found["token"]][1])
            if any(not v for v in values):
                continue  # the plain path reports the empty value
            tokens = self._token_values(values, compound.token)
            codes = [_unescape(_split_pipe(v)[-1]) for v in values]
            distinct = list(dict.fromkeys(codes))
            if all(codes) and len(values) > 1:
                # lets the index range on code; the pairs then check systems (one value is
                # already an equality on code)
                marks = (
                    "code = ?"
                    if len(distinct) == 1
                    else f"code IN ({', '.join('?' * len(distinct))})"
                )
                tokens = Sql(f"{marks} AND {tokens.text}", [*distinct, *tokens.params])
            dates = self._date_range_sql("lo", "hi", params[found["date"]][1], compound.date)
            body = (
                "idx_compound WHERE res_type = ? AND combo = ? AND ref_id = ?"
                f" AND {tokens.text} AND {dates.text}"
            )
            args = [type_name, compound.name, ref_id or ref_raw, *tokens.params, *dates.params]
            sql = self._sub("r", False, "res_id", body, args, -1)
            sql.scan = CompoundScan(
                (type_name, compound.name, ref_id or ref_raw),
                Sql(f"{tokens.text} AND {dates.text}", [*tokens.params, *dates.params]),
                compound.date,
                _prefix(params[found["date"]][1])[0] in ("ge", "gt"),
            )
            return sql, set(found.values())
        return None, set()

    # -- result parameters ---------------------------------------------------------------

    def _result_param(self, query: Query, name: str, raw: str) -> None:
        if name in ("_format", "_pretty", "_since", "_type"):
            return
        if name == "_snapshot":
            if not SNAPSHOT.fullmatch(raw):
                raise InvalidSearch("_snapshot is not one this server issued", expression=name)
            query.snapshot = raw
            return
        if name in ("_count", "_offset"):
            if not (raw.isascii() and raw.isdigit()):
                raise InvalidSearch(
                    f"{name} must be a non-negative integer, got {raw!r}", expression=name
                )
            number = int(raw)
            if number > MAX_OFFSET:
                raise InvalidSearch(f"{name} must be at most {MAX_OFFSET}", expression=name)
            if name == "_count":
                query.count = min(number, MAX_COUNT)
            else:
                query.offset = number
        elif name == "_sort":
            for item in raw.split(","):
                code = item.lstrip("-")
                param = self.registry.get(query.type, code)
                if code not in ("_id", "_lastUpdated") and not param:
                    raise InvalidSearch(f"cannot sort {query.type} by {code!r}", expression="_sort")
                if param and param.type not in _SORTABLE:
                    raise InvalidSearch(
                        f"cannot sort by {param.type} parameter {code}", expression="_sort"
                    )
                query.sort.append(SortKey(code, item.startswith("-")))
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise InvalidSearch("_total must be none, estimate or accurate", expression=name)
            query.total = "none" if raw == "none" else "accurate"
        elif name == "_summary":
            if raw not in ("true", "false", "count", "data", "text"):
                raise InvalidSearch(
                    "_summary must be true, false, count, data or text", expression=name
                )
            query.summary = None if raw == "false" else raw
        elif name == "_elements":
            query.elements = [e.strip() for e in raw.split(",") if e.strip()]
        elif name in ("_include", "_revinclude"):
            spec = self._include_spec(raw, name)
            (query.includes if name == "_include" else query.revincludes).append(spec)

    def _include_spec(self, raw: str, name: str) -> tuple[str, str, str | None, bool]:
        """``(source type, param, target type, iterate)``; ``*`` stands for every reference
        parameter (``Type:*``) and, alone, for every source type too (``_include=*``)."""
        if raw == "*":
            return "*", "*", None, False
        parts = raw.split(":")
        if len(parts) not in (2, 3):
            raise InvalidSearch(
                f"{name}={raw!r}: use Type:param[:TargetType], Type:* or *", expression=name
            )
        if parts[1] == "*":
            if not self.registry.for_type(parts[0]):
                raise InvalidSearch(
                    f"{name}: {parts[0]!r} is not a resource type served here", expression=name
                )
            if len(parts) == 3 and not self.registry.for_type(parts[2]):
                raise InvalidSearch(
                    f"{name}: {parts[2]!r} is not a resource type served here", expression=name
                )
            return parts[0], "*", parts[2] if len(parts) == 3 else None, False
        param = self.registry.get(parts[0], parts[1])
        if param is None or param.type != "reference":
            raise InvalidSearch(
                f"{name}: {parts[0]}:{parts[1]} is not a reference parameter", expression=name
            )
        return parts[0], parts[1], parts[2] if len(parts) == 3 else None, False

    # -- filters ----------------------------------------------------------------------------

    def condition(self, type_name: str, alias: str, name: str, raw: str) -> Sql:
        """A predicate on ``alias.res_id`` for one ``name=raw`` pair."""
        if name.startswith("_has:"):
            return self._has(type_name, alias, name, raw)
        code, _, rest = name.partition(".")
        code, _, modifier = code.partition(":")
        if rest:
            return self._chain(type_name, alias, code, modifier, rest, raw)
        if code == "_query":
            # A named query replaces the search's meaning: ignoring it would answer another
            # question, so it is refused even under handling=lenient.
            raise NotSupported(
                f"_query={raw!r}: this server defines no named queries", expression=name
            )
        if code in TEXT_PARAMS:
            return self._words(alias, code, modifier, raw, name)
        if code in ("_id", "_lastUpdated") and modifier not in ("", "missing"):
            raise InvalidSearch(f"modifier :{modifier} is not supported on {code}", expression=name)
        if code == "_id":
            values = [_unescape(v) for v in split_values(raw)]
            if modifier == "missing":
                return Sql("1 = 1" if raw == "false" else "1 = 0")
            marks = ", ".join("?" * len(values))
            return Sql(f"{alias}.res_id IN ({marks})", values, rank=0)
        if code == "_lastUpdated":
            if modifier == "missing":
                return Sql("1 = 1" if raw == "false" else "1 = 0")
            ors = [
                self._date_range_sql(f"{alias}.last_updated", f"{alias}.last_updated", v, name)
                for v in split_values(raw)
            ]
            return _or(ors)
        param = self.registry.get(type_name, code)
        if param is None:
            raise _Unknown(code)
        if param.type == "token" and modifier in _TERMINOLOGY_MODIFIERS:
            raise NotSupported(
                f"{name}: the :{modifier} modifier needs a terminology service"
                f" ({'ValueSet expansion' if 'in' in modifier else 'code subsumption'}),"
                " and this server has none; search by system|code values instead",
                expression=name,
            )
        if modifier not in _MODIFIERS[param.type] and not (
            param.type == "reference" and modifier[:1].isupper()
        ):
            raise InvalidSearch(
                f"modifier :{modifier} is not supported on {param.type} parameter {code}",
                expression=name,
            )
        if param.type == "special":
            return self._near(alias, modifier, raw, name)
        table = _TABLE[param.type]
        rows = param_rows(self.registry, type_name, code)
        head = f"{table} WHERE res_type = ? AND {rows.text}"
        rank = {"reference": 0, "token": 1}.get(param.type, 2)
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise InvalidSearch(f"{name} must be true or false", expression=name)
            return self._sub(alias, raw == "true", "res_id", head, [type_name, *rows.params], rank)
        values = split_values(raw)
        if any(v == "" for v in values):
            raise InvalidSearch(f"{name} has an empty value", expression=name)
        if param.type not in _PIPED_TYPES:
            values = [_unescape(v) for v in values]
        if param.type == "reference" and modifier == "identifier":
            inner = self._token_values(values, name)
            return self._sub(
                alias,
                False,
                "res_id",
                f"idx_token WHERE res_type = ? AND param = ? AND ({inner.text})",
                [type_name, f"{code}:identifier", *inner.params],
                0,
            )
        if param.type == "token" and modifier == "of-type":
            inner = self._of_type_values(values, name)
            return self._sub(
                alias,
                False,
                "res_id",
                f"idx_token WHERE res_type = ? AND param = ? AND ({inner.text})",
                [type_name, f"{code}:of-type", *inner.params],
                0,
            )
        inner = self._values(param, modifier, values, name)
        return self._sub(
            alias,
            modifier == "not",
            "res_id",
            f"{head} AND ({inner.text})",
            [type_name, *rows.params, *inner.params],
            rank,
        )

    def _values(self, param: SearchParam, modifier: str, values: list[str], name: str) -> Sql:
        kind = param.type
        if kind == "token":
            if modifier == "text":
                return _or(
                    [Sql("text LIKE ? ESCAPE '\\'", [f"%{_like(normalize(v))}%"]) for v in values]
                )
            return self._token_values(values, name)
        if kind == "string":
            if modifier == "exact":
                marks = ", ".join("?" * len(values))
                return Sql(f"exact IN ({marks})", values)
            pattern = "%{}%" if modifier == "contains" else "{}%"
            return _or(
                [
                    Sql("value LIKE ? ESCAPE '\\'", [pattern.format(_like(normalize(v)))])
                    for v in values
                ]
            )
        if kind == "uri":
            if modifier == "below":
                return _or([Sql("uri LIKE ? ESCAPE '\\'", [f"{_like(v)}%"]) for v in values])
            if modifier == "above":
                return _or([Sql("? LIKE (uri || '%')", [v]) for v in values])
            return Sql(f"uri IN ({', '.join('?' * len(values))})", values)
        if kind == "date":
            return _or([self._date_range_sql("lo", "hi", v, name) for v in values])
        if kind in ("number", "quantity"):
            return _or([self._quantity_sql(kind, v, name) for v in values])
        if kind == "reference":
            return self._reference_values(param, modifier, values, name)
        if kind == "composite":
            return _or([self._composite_sql(param, v, name) for v in values])
        raise NotSupported(f"search on {kind} parameters is not supported", expression=name)

    @staticmethod
    def _token_values(values: list[str], name: str) -> Sql:
        codes: list[str] = []
        pairs: list[tuple[str, str]] = []
        systems: list[str] = []
        for value in values:
            parts = _split_pipe(value)
            if len(parts) == 1:
                codes.append(_unescape(parts[0]))
            elif len(parts) == 2 and parts[1] == "":
                systems.append(_unescape(parts[0]))
            elif len(parts) == 2:
                pairs.append((_unescape(parts[0]), _unescape(parts[1])))
            else:
                raise InvalidSearch(
                    f"{name}: token {value!r} has more than one '|'", expression=name
                )
        # One value is an equality, not a one-item IN list: SQLite walks an IN list as a
        # list of index ranges and then cannot rely on the index's order for ORDER BY.
        ors: list[Sql] = []
        if len(codes) == 1:
            ors.append(Sql("code = ?", codes))
        elif codes:
            ors.append(Sql(f"code IN ({', '.join('?' * len(codes))})", codes))
        if len(pairs) == 1:
            ors.append(Sql("(system = ? AND code = ?)", list(pairs[0])))
        elif pairs:
            ors.append(_pairs_in(("system", "code"), pairs))
        if len(systems) == 1:
            ors.append(Sql("system = ?", systems))
        elif systems:
            ors.append(Sql(f"system IN ({', '.join('?' * len(systems))})", systems))
        return _or(ors)

    @staticmethod
    def _of_type_values(values: list[str], name: str) -> Sql:
        pairs: list[tuple[str, str]] = []
        for value in values:
            parts = _split_pipe(value)
            if len(parts) != 3:
                raise InvalidSearch(f"{name}: use system|code|value", expression=name)
            pairs.append((f"{_unescape(parts[0])}|{_unescape(parts[1])}", _unescape(parts[2])))
        marks = ", ".join(["(?, ?)"] * len(pairs))
        return Sql(f"(system, code) IN ({marks})", [v for p in pairs for v in p])

    def _reference_values(
        self, param: SearchParam, modifier: str, values: list[str], name: str
    ) -> Sql:
        typed: list[tuple[str, str]] = []
        bare: list[str] = []
        for value in values:
            kind, ref_id = reference_target(value)
            if modifier:
                kind = modifier
                ref_id = value.rsplit("/", 1)[-1]
            if kind:
                typed.append((kind, ref_id))
            else:
                bare.append(ref_id or value)
        ors: list[Sql] = []
        if len(typed) == 1:
            ors.append(Sql("(target_type = ? AND target_id = ?)", list(typed[0])))
        elif typed:
            ors.append(_pairs_in(("target_type", "target_id"), typed))
        # A stored reference is found by its id, or by its text where it has no id (``urn:``,
        # ``#``): only those values need ``ref``, which no index leads with, so the
        # others stay a range of the parameter's index instead of a read of all its rows.
        by_text = [v for v in bare if reference_target(v) == ("", "")]
        by_id = [v for v in bare if v not in by_text]
        if len(by_id) == 1:
            ors.append(Sql("target_id = ?", by_id))
        elif by_id:
            ors.append(Sql(f"target_id IN ({', '.join('?' * len(by_id))})", by_id))
        if by_text:
            ors.append(Sql(f"ref IN ({', '.join('?' * len(by_text))})", by_text))
        return _or(ors)

    def _date_range_sql(self, lo_col: str, hi_col: str, value: str, name: str) -> Sql:
        prefix, text = _prefix(value)
        try:
            plo, phi = date_range(text)
        except ValueError as exc:
            raise InvalidSearch(f"{name}: {exc}", expression=name) from None
        if prefix == "eq":
            return Sql(f"({lo_col} >= ? AND {hi_col} <= ?)", [plo, phi])
        if prefix == "ne":
            return Sql(f"({lo_col} < ? OR {hi_col} > ?)", [plo, phi])
        if prefix == "gt":
            return Sql(f"{hi_col} > ?", [phi])
        if prefix == "lt":
            return Sql(f"{lo_col} < ?", [plo])
        if prefix == "ge":
            return Sql(f"{hi_col} >= ?", [plo])
        if prefix == "le":
            return Sql(f"{lo_col} <= ?", [phi])
        if prefix == "sa":
            return Sql(f"{lo_col} > ?", [phi])
        if prefix == "eb":
            return Sql(f"{hi_col} < ?", [plo])
        # ap: within 10% of the distance between the value and now (at least a day).
        start = datetime.strptime(plo, FORMAT)
        now = datetime.now(UTC).replace(tzinfo=None)
        slack = max(abs(now - start) / 10, timedelta(days=1))
        wlo = (start - slack).strftime(FORMAT) if start - slack > datetime.min + slack else plo
        whi = (datetime.strptime(phi, FORMAT) + slack).strftime(FORMAT)
        return Sql(f"({lo_col} <= ? AND {hi_col} >= ?)", [whi, wlo])

    @staticmethod
    def _number_sql(column: str, value: str, name: str) -> Sql:
        prefix, text = _prefix(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise InvalidSearch(f"{name}: {text!r} is not a number", expression=name) from None
        if not number.is_finite():
            raise InvalidSearch(f"{name}: {text!r} is not a finite number", expression=name)
        exponent = number.as_tuple().exponent
        half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else 0
        lo, hi, at = float(number - half), float(number + half), float(number)
        if prefix == "eq":
            return Sql(f"({column} >= ? AND {column} < ?)", [lo, hi])
        if prefix == "ne":
            return Sql(f"({column} < ? OR {column} >= ?)", [lo, hi])
        if prefix == "ap":
            slack = abs(at) / 10
            return Sql(f"({column} >= ? AND {column} <= ?)", [at - slack, at + slack])
        op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[prefix]
        return Sql(f"{column} {op} ?", [at])

    def _quantity_sql(self, kind: str, value: str, name: str) -> Sql:
        column = "value"
        parts = _split_pipe(value)
        if kind == "number" or len(parts) == 1:
            return self._number_sql(column, parts[0], name)
        if len(parts) != 3:
            raise InvalidSearch(f"{name}: use [prefix]number|system|code", expression=name)
        sql = self._number_sql(column, parts[0], name)
        system, code = _unescape(parts[1]), _unescape(parts[2])
        if system:
            sql = Sql(f"{sql.text} AND system = ?", [*sql.params, system])
        if code and system:
            sql = Sql(f"{sql.text} AND code = ?", [*sql.params, code])
        elif code:
            sql = Sql(f"{sql.text} AND (code = ? OR unit = ?)", [*sql.params, code, code])
        return Sql(f"({sql.text})", sql.params)

    def _composite_sql(self, param: SearchParam, value: str, name: str) -> Sql:
        first, _, second = value.partition("$")
        if not second:
            raise InvalidSearch(f"{name}: a composite value is code$value", expression=name)
        code_sql = self._token_values([first], name)
        code_sql.text = code_sql.text.replace("system", "c_system").replace("code", "c_code")
        kind = param.components[1].type
        if kind == "token":
            value_sql = self._token_values([second], name)
            value_sql.text = value_sql.text.replace("system", "v_system").replace("code", "v_code")
        elif kind == "quantity":
            parts = _split_pipe(second)
            value_sql = self._number_sql("v_num", parts[0], name)
            if len(parts) == 3 and parts[1]:
                value_sql = Sql(f"{value_sql.text} AND v_system = ?", [*value_sql.params, parts[1]])
            if len(parts) == 3 and parts[2]:
                value_sql = Sql(
                    f"{value_sql.text} AND (v_code = ? OR v_unit = ?)",
                    [*value_sql.params, parts[2], parts[2]],
                )
        elif kind == "date":
            value_sql = self._date_range_sql("v_lo", "v_hi", second, name)
        else:
            value_sql = Sql("v_str LIKE ? ESCAPE '\\'", [f"{_like(normalize(second))}%"])
        return Sql(
            f"(({code_sql.text}) AND ({value_sql.text}))", [*code_sql.params, *value_sql.params]
        )

    # -- parameters answered from the stored JSON -------------------------------------------

    def _json_text(self, alias: str, *path: str) -> str:
        """SQL for the JSON text at ``path`` of ``alias.content`` (NULL when absent)."""
        if self.dialect == "postgresql":
            return f"(CAST({alias}.content AS jsonb) #>> '{{{','.join(path)}}}')"
        return f"json_extract({alias}.content, '$.{'.'.join(path)}')"

    def _words(self, alias: str, code: str, modifier: str, raw: str, name: str) -> Sql:
        """``_text`` / ``_content``: every word of a value occurs in the narrative
        (``text.div``, markup included) / the resource's JSON text, case-insensitively.

        Commas separate alternatives (OR); a value in double quotes is one phrase. Element
        names are part of the JSON text, so ``_content=status`` matches most resources.
        Case folding is SQL ``lower()``: ASCII only on SQLite, full Unicode on PostgreSQL.
        """
        if modifier:
            raise InvalidSearch(f"modifier :{modifier} is not supported on {code}", expression=name)
        column = (
            f"lower({self._json_text(alias, 'text', 'div')})"
            if code == "_text"
            else f"lower({alias}.content)"
        )
        ors: list[Sql] = []
        for value in split_values(raw):
            stripped = _unescape(value).strip()
            if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
                words = [stripped[1:-1]]
            else:
                words = stripped.split()
            if not words or not all(words):
                raise InvalidSearch(f"{name} has an empty value", expression=name)
            ors.append(
                Sql(
                    "(" + " AND ".join([f"{column} LIKE ? ESCAPE '\\'"] * len(words)) + ")",
                    [f"%{_like(w.lower())}%" for w in words],
                )
            )
        found = _or(ors)
        return Sql(found.text, found.params, rank=3)

    def _near(self, alias: str, modifier: str, raw: str, name: str) -> Sql:
        """Location ``near=lat|long[|distance[|units]]``: ``position`` within the distance
        (great circle, haversine on a sphere of the mean Earth radius); km by default."""
        lat_sql = f"CAST({self._json_text(alias, 'position', 'latitude')} AS DOUBLE PRECISION)"
        lon_sql = f"CAST({self._json_text(alias, 'position', 'longitude')} AS DOUBLE PRECISION)"
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise InvalidSearch(f"{name} must be true or false", expression=name)
            op = "IS NULL" if raw == "true" else "IS NOT NULL"
            return Sql(f"({lat_sql} {op})", rank=3)
        least = "LEAST" if self.dialect == "postgresql" else "min"
        ors: list[Sql] = []
        for value in split_values(raw):
            lat, lon, km = self._near_value(value, name)
            haversine = (
                f"power(sin(radians({lat_sql} - ?) / 2), 2) + cos(radians(?))"
                f" * cos(radians({lat_sql})) * power(sin(radians({lon_sql} - ?) / 2), 2)"
            )
            ors.append(
                Sql(
                    # LEAST skips NULLs on PostgreSQL: a Location without a position must
                    # not come out as "half the Earth away".
                    f"({lat_sql} IS NOT NULL AND {lon_sql} IS NOT NULL"
                    f" AND 2 * {EARTH_RADIUS_KM} * asin({least}(1.0, sqrt({haversine}))) <= ?)",
                    [lat, lat, lon, km],
                )
            )
        found = _or(ors)
        return Sql(found.text, found.params, rank=3)

    @staticmethod
    def _near_value(value: str, name: str) -> tuple[float, float, float]:
        parts = value.split("|")
        if not 2 <= len(parts) <= 4:
            raise InvalidSearch(
                f"{name}: use latitude|longitude[|distance[|units]], got {value!r}",
                expression=name,
            )
        numbers: list[float] = []
        for label, text in zip(("latitude", "longitude", "distance"), parts[:3], strict=False):
            if label == "distance" and text == "":
                continue
            try:
                number = float(text)
            except ValueError:
                raise InvalidSearch(
                    f"{name}: {label} {text!r} is not a number", expression=name
                ) from None
            if not math.isfinite(number):
                raise InvalidSearch(f"{name}: {label} {text!r} is not finite", expression=name)
            numbers.append(number)
        lat, lon = numbers[0], numbers[1]
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidSearch(
                f"{name}: latitude must lie in [-90, 90] and longitude in [-180, 180]",
                expression=name,
            )
        unit = parts[3] if len(parts) == 4 and parts[3] else "km"
        if unit not in DISTANCE_UNITS:
            raise InvalidSearch(
                f"{name}: distance unit {unit!r} is not one of {', '.join(DISTANCE_UNITS)}",
                expression=name,
            )
        if len(numbers) < 3:
            return lat, lon, DEFAULT_NEAR_KM
        if numbers[2] < 0:
            raise InvalidSearch(f"{name}: the distance must not be negative", expression=name)
        return lat, lon, numbers[2] * DISTANCE_UNITS[unit]

    def _chain(
        self, type_name: str, alias: str, code: str, modifier: str, rest: str, raw: str
    ) -> Sql:
        param = self.registry.get(type_name, code)
        if param is None or param.type != "reference":
            raise _Unknown(code)
        targets = (
            [modifier] if modifier else [t for t in param.targets if self.registry.for_type(t)]
        )
        inner_alias = f"{alias}c"
        ors: list[Sql] = []
        for target in targets:
            try:
                nested = self.condition(target, inner_alias, rest, raw)
            except _Unknown:
                continue
            ors.append(
                Sql(
                    f"(target_type = ? AND target_id IN (SELECT {inner_alias}.res_id FROM resources"
                    f" {inner_alias} WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0"
                    f" AND {nested.text}))",
                    [target, target, *nested.params],
                )
            )
        if not ors:
            # No target type has the chained parameter: an unknown parameter, which
            # Prefer: handling decides about like any other.
            raise _Unknown(f"{code}.{rest}")
        body = _or(ors)
        rows = param_rows(self.registry, type_name, code)
        return self._sub(
            alias,
            False,
            "res_id",
            f"idx_reference WHERE res_type = ? AND {rows.text} AND ({body.text})",
            [type_name, *rows.params, *body.params],
            1,
        )

    def _has(self, type_name: str, alias: str, name: str, raw: str) -> Sql:
        # _has:Observation:patient:code=1234 (and nested _has:...:_has:...)
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise InvalidSearch(f"{name}: use _has:Type:reference:parameter", expression=name)
        _, source, ref_param, rest = parts
        param = self.registry.get(source, ref_param)
        if param is None or param.type != "reference":
            raise InvalidSearch(f"{name}: {source}.{ref_param} is not a reference", expression=name)
        inner_alias = f"{alias}h"
        nested = self.condition(source, inner_alias, rest, raw)
        rows = param_rows(self.registry, source, ref_param)
        return self._sub(
            alias,
            False,
            "target_id",
            f"idx_reference WHERE res_type = ? AND {rows.text} AND target_type = ?"
            f" AND res_id IN (SELECT {inner_alias}.res_id FROM resources {inner_alias}"
            f" WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0"
            f" AND {nested.text})",
            [source, *rows.params, type_name, source, *nested.params],
            1,
        )

    # -- paging -----------------------------------------------------------------------------

    @staticmethod
    def compound_page(query: Query, live: Sql) -> Sql | None:
        """The candidates' ids read off ``idx_compound`` in date order, or None when the
        query cannot be answered that way (see :class:`CompoundScan`).

        ``live`` is the condition on the candidate row ``r`` (type, not deleted, snapshot).
        An id repeats when several of its rows match (several dates or codings); its first
        occurrence is at its sort key, so the distinct ids in order of first occurrence are
        the plain path's order (date newest first, then id). The caller keeps those.
        """
        scans = [w.scan for w in query.where if w.scan is not None]
        if len(scans) != 1 or query.sort != [SortKey(scans[0].date, True)]:
            return None
        scan = scans[0]
        if not scan.hi_only:
            return None
        others = [w for w in query.where if w.scan is None]
        conds = [w.exists or w.text for w in others]
        text = (
            "SELECT c.res_id FROM idx_compound c JOIN resources r"
            " ON r.res_type = c.res_type AND r.res_id = c.res_id"
            f" WHERE c.res_type = ? AND c.combo = ? AND c.ref_id = ? AND {scan.filter.text}"
            f" AND {' AND '.join([live.text, *conds])}"
            " ORDER BY c.hi DESC, c.res_id ASC"
        )
        params = [
            *scan.head,
            *scan.filter.params,
            *live.params,
            *(p for w in others for p in w.params),
        ]
        return Sql(text, params)

    # -- sorting ----------------------------------------------------------------------------

    def order_by(self, query: Query, alias: str = "r") -> Sql:
        """``ORDER BY`` for the query's sort keys, ties broken by id so pages are stable."""
        parts: list[str] = []
        params: list[Any] = []
        for key in query.sort:
            direction = "DESC" if key.descending else "ASC"
            if key.code == "_id":
                parts.append(f"{alias}.res_id {direction}")
                continue
            if key.code == "_lastUpdated":
                parts.append(f"{alias}.last_updated {direction}")
                continue
            param = self.registry.get(query.type, key.code)
            assert param is not None  # checked when parsed
            table = _TABLE[param.type]
            column = {
                "date": "hi" if key.descending else "lo",
                "string": "value",
                "token": "code",
                "number": "value",
                "quantity": "value",
                "reference": "ref",
                "uri": "uri",
            }.get(param.type)
            if column is None:
                raise InvalidSearch(
                    f"cannot sort by {param.type} parameter {key.code}", expression="_sort"
                )
            pick = "MAX" if key.descending else "MIN"
            rows = param_rows(self.registry, query.type, key.code, "s.")
            parts.append(
                f"(SELECT {pick}({column}) FROM {table} s{unindexed(self.dialect)}"
                f" WHERE {own_rows(alias, 's.')} AND {rows.text}) {direction} NULLS LAST"
            )
            params.extend(rows.params)
        parts.append(f"{alias}.res_id ASC")
        return Sql("ORDER BY " + ", ".join(parts), params)


class _Unknown(Exception):
    """A parameter name the type does not define (the caller decides strict/lenient)."""


def _pairs_in(columns: tuple[str, str], pairs: Sequence[tuple[str, str]]) -> Sql:
    """``(a, b) IN ((..), ...)`` led by ``b IN (...)``: neither engine ranges an index on a
    row-value list of several rows (SQLite read every row of the parameter: 29 ms for
    ``device=a,b,c`` at 100,000 Observations), but both range on the second column's list
    (the indexes lead with it: code, target_id), and the pairs then check the first."""
    first, second = columns
    seconds = list(dict.fromkeys(p[1] for p in pairs))
    marks = ", ".join(["(?, ?)"] * len(pairs))
    return Sql(
        f"({second} IN ({', '.join('?' * len(seconds))}) AND ({first}, {second}) IN ({marks}))",
        [*seconds, *(v for p in pairs for v in p)],
    )


def _or(parts: list[Sql]) -> Sql:
    if len(parts) == 1:
        return parts[0]
    return Sql(
        "(" + " OR ".join(p.text for p in parts) + ")",
        list(itertools.chain.from_iterable(p.params for p in parts)),
    )
