"""Value objects shared by the store's components: stored versions, pending writes, ids."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_store.errors import InvalidResource
from fhir_store.schema import ROW_SPAN

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: Keys per ``res_id IN (...)`` list: well under both engines' parameter limits.
KEYS_PER_SELECT = 500
#: The content of a ``history h`` row. The current version's row leaves it empty: it is
#: written once, into ``resources``, and moves into the row when a newer version replaces
#: it (``FhirStore._write_batch``). Rows written by earlier releases keep theirs.
HISTORY_CONTENT = (
    "CASE WHEN h.content <> '' OR h.deleted = 1 THEN h.content ELSE COALESCE((SELECT"
    " r.content FROM resources r WHERE r.res_type = h.res_type AND r.res_id = h.res_id"
    " AND r.version = h.version), '') END"
)


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored version: its identity, and its JSON text exactly as served."""

    type: str
    id: str
    version: int
    last_updated: str  # column form, UTC, see fhir_store.dates
    deleted: bool
    content: str  # JSON text with meta.versionId and meta.lastUpdated; "" when deleted
    method: str = ""  # the interaction that wrote this version (history entries only)

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def resource(self) -> dict[str, Any]:
        return dict(loads(self.content))


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the version now current, and whether the resource was created."""

    stored: Stored
    created: bool
    changed: bool


@dataclass(slots=True)
class Pending:
    """One resource to write in a batch."""

    type: str
    id: str
    resource: dict[str, Any] | None  # None: delete
    method: str
    if_match: int | None = None


#: Every byte to a space but ASCII digits, so a run of 19 digits is a run of 19 ``0``: a scan
#: by ``bytes.translate`` and ``in`` is ten times faster than a regular expression.
_DIGITS = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_BIG_INT = b"0" * 19


def loads(text: str | bytes) -> Any:
    """JSON text to Python values, as ``json.loads`` reads it, at orjson's speed.

    orjson reads integers beyond 64 bits as floats and refuses what ``json`` tolerates
    (``NaN``): text with 19 digits in a row, or that orjson refuses, is read by ``json``.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError, RecursionError: as ``json.loads``.
    """
    raw = text.encode() if isinstance(text, str) else text
    if _BIG_INT not in raw.translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text (``json.dumps`` with ``separators=(",", ":")``, non-ASCII as is)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _versionless(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = resource.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = {**resource, "meta": rest}
        if not rest:
            del resource["meta"]
    return resource


def content_hash(resource: Mapping[str, Any]) -> str:
    """Hash of the content that versions compare: everything but versionId and lastUpdated.

    The text hashed is orjson's with sorted keys; it is byte for byte what
    :func:`legacy_content_hash` hashes except for some floats' spelling (``1e-05``), so a
    store compares with both before it calls content changed (hashes written before
    orjson stay valid).
    """
    try:
        text = orjson.dumps(_versionless(resource), option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits, a key that is not a string
        return legacy_content_hash(resource)
    return hashlib.sha256(text).hexdigest()


def legacy_content_hash(resource: Mapping[str, Any]) -> str:
    """:func:`content_hash` as written before orjson: ``json.dumps`` with sorted keys."""
    text = json.dumps(
        _versionless(resource), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def check_id(value: Any) -> str:
    """A valid FHIR id, or ``InvalidResource``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidResource(
            f"id {value!r} is not a FHIR id ([A-Za-z0-9-.], 1 to 64 characters)",
            expression="id",
        )
    return value


def by_type(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """(type, ids) groups of at most ``KEYS_PER_SELECT`` ids, for ``res_id IN (...)`` lists.

    One type per statement keeps the predicate on the primary key's prefix, which both
    engines answer from the index (row-value IN lists are not always planned that way).
    """
    grouped: dict[str, list[str]] = {}
    for type_name, res_id in dict.fromkeys(keys):
        grouped.setdefault(type_name, []).append(res_id)
    for type_name, ids in grouped.items():
        for start in range(0, len(ids), KEYS_PER_SELECT):
            yield type_name, ids[start : start + KEYS_PER_SELECT]


def resources_by_id(
    dialect: str, type_name: str, ids: list[str], *, lock: bool = False, join: str = ""
) -> tuple[str, list[Any]]:
    """``FROM`` and ``WHERE`` selecting the ``resources`` rows (alias ``r``) of ``ids``, one
    type, locked for update on PostgreSQL with ``lock``; the caller may append ``AND ...``.
    ``join`` (``JOIN ... ON ...``, no parameters) follows ``r``.

    SQLite gets ``r.res_id IN (...)``. PostgreSQL gets one primary-key probe per id (a
    lateral subquery that ``OFFSET 0`` keeps from being flattened): with statistics that
    lag a table growing by thousands of rows a second, its planner answered an IN list of
    500 ids, or a join on them, by reading every resource of the type (0.2-2 s at 150,000
    Observations: the store writer managed a few hundred resources a second).
    """
    if dialect == "postgresql":
        locked = " FOR UPDATE" if lock else ""
        return (
            "FROM unnest(?::text[]) AS k(res_id) CROSS JOIN LATERAL (SELECT * FROM resources x"
            f" WHERE x.res_type = ? AND x.res_id = k.res_id OFFSET 0{locked}) r{join} WHERE TRUE",
            [ids, type_name],
        )
    marks = ", ".join("?" * len(ids))
    return (
        f"FROM resources r{join} WHERE r.res_type = ? AND r.res_id IN ({marks})",
        [type_name, *ids],
    )


def delete_rows_of(table: str, rids: Iterable[int]) -> tuple[str, list[tuple[int, int]]]:
    """``DELETE`` of the rows of ``table`` of the resources numbered ``rids`` (see
    ``schema.ROW_SPAN``), for ``executemany``: one primary-key range each, on both engines,
    however stale the planner's statistics."""
    return (
        f"DELETE FROM {table} WHERE row_key BETWEEN ? AND ?",
        [(rid * ROW_SPAN, rid * ROW_SPAN + ROW_SPAN - 1) for rid in rids],
    )


#: Told of the versions a REST interaction wrote (``fhir_store.api.build_router``), after
#: they are committed: the composition root hands Patients to the patient index this way.
WriteListener = Callable[[list[Stored]], None]
