"""Versioned schema migrations, applied in order on open; a version is never edited once shipped.

Portable DDL only (TEXT, INTEGER, DOUBLE PRECISION): both SQLite and PostgreSQL accept it.
Instants are stored as fixed-width UTC text (``YYYY-MM-DDTHH:MM:SS.ffffff``) so that string
order is time order on both engines and an index serves range predicates.

Tables:
- ``resources``: the current version of each resource (content is the full JSON, meta included).
- ``history``: every version ever written, append-only; deletes are rows with ``deleted=1``.
  The current version's row leaves ``content`` empty until a newer version replaces it
  (``records.HISTORY_CONTENT``), so each version's JSON is stored once.
- ``idx_*``: one typed search-index table per search-parameter type, rewritten with the resource.
  Since version 8 a row's key (``row_key``) is its resource's number (``resources.rid``, handed
  out in order of creation) times ``ROW_SPAN`` plus its place among the resource's rows: see
  ``ROW_SPAN``.
"""

from __future__ import annotations

from typing import NamedTuple


class PerDialect(NamedTuple):
    """A migration statement that the two engines spell differently."""

    sqlite: str
    postgresql: str


_KEY = "res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL"

MIGRATIONS: list[tuple[int, list[str | PerDialect]]] = [
    (
        1,
        [
            "CREATE TABLE resources ("
            " res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,"
            " last_updated TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
            " content_hash TEXT NOT NULL, content TEXT NOT NULL,"
            " PRIMARY KEY (res_type, res_id))",
            "CREATE INDEX resources_updated ON resources (res_type, last_updated)",
            "CREATE TABLE history ("
            " res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,"
            " last_updated TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
            " method TEXT NOT NULL, content TEXT NOT NULL,"
            " PRIMARY KEY (res_type, res_id, version))",
            "CREATE INDEX history_updated ON history (last_updated)",
            "CREATE INDEX history_type_updated ON history (res_type, last_updated)",
            f"CREATE TABLE idx_token ({_KEY}, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT)",
            "CREATE INDEX idx_token_code ON idx_token (res_type, param, code, system)",
            "CREATE INDEX idx_token_res ON idx_token (res_id, res_type)",
            f"CREATE TABLE idx_string ({_KEY}, value TEXT NOT NULL, exact TEXT NOT NULL)",
            "CREATE INDEX idx_string_value ON idx_string (res_type, param, value)",
            "CREATE INDEX idx_string_res ON idx_string (res_id, res_type)",
            f"CREATE TABLE idx_date ({_KEY}, lo TEXT NOT NULL, hi TEXT NOT NULL)",
            "CREATE INDEX idx_date_lo ON idx_date (res_type, param, lo)",
            "CREATE INDEX idx_date_res ON idx_date (res_id, res_type)",
            f"CREATE TABLE idx_reference ({_KEY}, target_type TEXT NOT NULL,"
            " target_id TEXT NOT NULL, ref TEXT NOT NULL)",
            "CREATE INDEX idx_reference_target ON idx_reference"
            " (res_type, param, target_id, target_type)",
            "CREATE INDEX idx_reference_rev ON idx_reference (target_type, target_id)",
            "CREATE INDEX idx_reference_res ON idx_reference (res_id, res_type)",
            f"CREATE TABLE idx_quantity ({_KEY}, value DOUBLE PRECISION NOT NULL,"
            " system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL)",
            "CREATE INDEX idx_quantity_value ON idx_quantity (res_type, param, value)",
            "CREATE INDEX idx_quantity_res ON idx_quantity (res_id, res_type)",
            f"CREATE TABLE idx_uri ({_KEY}, uri TEXT NOT NULL)",
            "CREATE INDEX idx_uri_value ON idx_uri (res_type, param, uri)",
            "CREATE INDEX idx_uri_res ON idx_uri (res_id, res_type)",
            f"CREATE TABLE idx_number ({_KEY}, value DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX idx_number_value ON idx_number (res_type, param, value)",
            "CREATE INDEX idx_number_res ON idx_number (res_id, res_type)",
            # A composite row pairs a token (c_system, c_code) with one value of the second
            # component, in the column its type uses.
            f"CREATE TABLE idx_composite ({_KEY}, c_system TEXT NOT NULL, c_code TEXT NOT NULL,"
            " v_system TEXT, v_code TEXT, v_num DOUBLE PRECISION, v_unit TEXT,"
            " v_lo TEXT, v_hi TEXT, v_str TEXT)",
            "CREATE INDEX idx_composite_code ON idx_composite (res_type, param, c_code)",
            "CREATE INDEX idx_composite_res ON idx_composite (res_id, res_type)",
        ],
    ),
    (
        # When each resource was first created: search pages filter on it, so the pages of
        # one search (its ``_snapshot``) do not shift while new resources stream in.
        2,
        [
            "ALTER TABLE resources ADD COLUMN first_created TEXT",
            "UPDATE resources SET first_created = (SELECT MIN(h.last_updated) FROM history h"
            " WHERE h.res_type = resources.res_type AND h.res_id = resources.res_id)",
        ],
    ),
    (
        # Covering indexes for the probes a search makes per candidate (EXISTS on a token or
        # date, the sort key) and for the driving reference lookup: answered from the index
        # alone, without a random read of the table row each time.
        3,
        [
            "DROP INDEX idx_token_res",
            "CREATE INDEX idx_token_res ON idx_token (res_id, res_type, param, code, system)",
            "DROP INDEX idx_date_res",
            "CREATE INDEX idx_date_res ON idx_date (res_id, res_type, param, lo, hi)",
            "DROP INDEX idx_reference_target",
            "CREATE INDEX idx_reference_target ON idx_reference"
            " (res_type, param, target_id, target_type, res_id)",
            "DROP INDEX idx_quantity_res",
            "CREATE INDEX idx_quantity_res ON idx_quantity (res_id, res_type, param, value)",
            "DROP INDEX idx_string_res",
            "CREATE INDEX idx_string_res ON idx_string (res_id, res_type, param, value)",
        ],
    ),
    (
        # A search filters candidates on these columns: answer it from an index, without
        # reading each candidate's row (and its content) before the page is cut.
        4,
        [
            "CREATE INDEX resources_live ON resources (res_type, res_id, deleted, first_created)",
        ],
    ),
    (
        # Compound (reference, token, date) rows: see fhir_store/combos.py. Backfilled from
        # the per-parameter rows so that an upgraded store answers searches the same way.
        5,
        [
            "CREATE TABLE idx_compound (res_type TEXT NOT NULL, res_id TEXT NOT NULL,"
            " combo TEXT NOT NULL, ref_id TEXT NOT NULL, system TEXT NOT NULL,"
            " code TEXT NOT NULL, lo TEXT NOT NULL, hi TEXT NOT NULL)",
            "CREATE INDEX idx_compound_key ON idx_compound"
            " (res_type, combo, ref_id, code, system, hi, lo, res_id)",
            "CREATE INDEX idx_compound_res ON idx_compound (res_id, res_type)",
            "INSERT INTO idx_compound (res_type, res_id, combo, ref_id, system, code, lo, hi)"
            " SELECT r.res_type, r.res_id, 'patient|code|date', r.target_id, t.system, t.code,"
            " d.lo, d.hi FROM idx_reference r"
            " JOIN idx_token t ON t.res_type = r.res_type AND t.res_id = r.res_id"
            " AND t.param = 'code'"
            " JOIN idx_date d ON d.res_type = r.res_type AND d.res_id = r.res_id"
            " AND d.param = 'date'"
            " WHERE r.res_type = 'Observation' AND r.param = 'patient'"
            " AND r.target_type = 'Patient'",
        ],
    ),
]

#: The rows each parameter shares with others (``searchparams.Shared``) when version 6
#: shipped: (type, table, parameter, the parameters holding its rows, target type).
_SHARED_AT_6 = (
    ("Encounter", "idx_reference", "patient", ("subject",), "Patient"),
    ("Encounter", "idx_reference", "practitioner", ("participant",), "Practitioner"),
    ("ImagingStudy", "idx_reference", "patient", ("subject",), "Patient"),
    ("Provenance", "idx_reference", "patient", ("target",), "Patient"),
    ("Observation", "idx_reference", "patient", ("subject",), "Patient"),
    ("Observation", "idx_token", "combo-code", ("code", "component-code"), None),
    (
        "Observation",
        "idx_token",
        "combo-data-absent-reason",
        ("component-data-absent-reason", "data-absent-reason"),
        None,
    ),
    (
        "Observation",
        "idx_token",
        "combo-value-concept",
        ("component-value-concept", "value-concept"),
        None,
    ),
    (
        "Observation",
        "idx_quantity",
        "combo-value-quantity",
        ("component-value-quantity", "value-quantity"),
        None,
    ),
    (
        "Observation",
        "idx_composite",
        "combo-code-value-concept",
        ("code-value-concept", "component-code-value-concept"),
        None,
    ),
    (
        "Observation",
        "idx_composite",
        "combo-code-value-quantity",
        ("code-value-quantity", "component-code-value-quantity"),
        None,
    ),
)
_VALUE_COLUMNS = {
    "idx_token": ("system", "code", "text"),
    "idx_reference": ("target_type", "target_id", "ref"),
    "idx_quantity": ("value", "system", "code", "unit"),
    "idx_composite": (
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


def _drop_shared_rows() -> list[str | PerDialect]:
    """Version 6: delete the rows a parameter shares with others (they hold the same)."""
    out: list[str | PerDialect] = []
    for res_type, table, param, shared, target in _SHARED_AT_6:
        same = " AND ".join(
            f"q.{c} IS NOT DISTINCT FROM {table}.{c}" for c in _VALUE_COLUMNS[table]
        )
        names = ", ".join(f"'{q}'" for q in shared)
        only = f" AND target_type = '{target}'" if target else ""
        out.append(
            f"DELETE FROM {table} WHERE res_type = '{res_type}' AND param = '{param}'{only}"
            f" AND EXISTS (SELECT 1 FROM {table} q WHERE q.res_id = {table}.res_id"
            f" AND q.res_type = {table}.res_type AND q.param IN ({names}) AND {same})"
        )
    return out


# Rows a parameter shares with others are stored once (see ``searchparams.Shared``).
MIGRATIONS.append((6, _drop_shared_rows()))
# Reverse lookups (``_revinclude``, ``$everything``) name the source types and parameters,
# so ``idx_reference_target`` answers them; the index led by the target cost each
# Observation written into a store of 1,000,000 13-17% of its CPU (a scattered page per
# patient and batch).
MIGRATIONS.append((7, ["DROP INDEX idx_reference_rev"]))

INDEX_TABLES = (
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_quantity",
    "idx_uri",
    "idx_number",
    "idx_composite",
    "idx_compound",
)

#: The rows of one resource in one index table are ``row_key`` rid * ROW_SPAN to rid *
#: ROW_SPAN + ROW_SPAN - 1: they lie together in the table's primary key (SQLite's rowid),
#: and a new resource's rows go at its end. Until version 8 an index per table keyed by
#: ``res_id`` found them; a random id put each row's entry on a random page. Keyed rows
#: cost the store writer 13-15% less CPU and 41% fewer bytes written per message
#: (``bench/store_writer.py --monitors 1000 --batch 400 --messages 10000``).
ROW_SPAN = 1 << 20

# The value indexes and columns of the index tables as version 7 left them.
_VALUE_INDEXES = {
    "idx_token": ["idx_token_code (res_type, param, code, system)"],
    "idx_string": ["idx_string_value (res_type, param, value)"],
    "idx_date": ["idx_date_lo (res_type, param, lo)"],
    "idx_reference": ["idx_reference_target (res_type, param, target_id, target_type, res_id)"],
    "idx_quantity": ["idx_quantity_value (res_type, param, value)"],
    "idx_uri": ["idx_uri_value (res_type, param, uri)"],
    "idx_number": ["idx_number_value (res_type, param, value)"],
    "idx_composite": ["idx_composite_code (res_type, param, c_code)"],
    "idx_compound": ["idx_compound_key (res_type, combo, ref_id, code, system, hi, lo, res_id)"],
}
_TABLE_COLUMNS = {
    "idx_token": f"{_KEY}, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT",
    "idx_string": f"{_KEY}, value TEXT NOT NULL, exact TEXT NOT NULL",
    "idx_date": f"{_KEY}, lo TEXT NOT NULL, hi TEXT NOT NULL",
    "idx_reference": f"{_KEY}, target_type TEXT NOT NULL, target_id TEXT NOT NULL,"
    " ref TEXT NOT NULL",
    "idx_quantity": f"{_KEY}, value DOUBLE PRECISION NOT NULL, system TEXT NOT NULL,"
    " code TEXT NOT NULL, unit TEXT NOT NULL",
    "idx_uri": f"{_KEY}, uri TEXT NOT NULL",
    "idx_number": f"{_KEY}, value DOUBLE PRECISION NOT NULL",
    "idx_composite": f"{_KEY}, c_system TEXT NOT NULL, c_code TEXT NOT NULL, v_system TEXT,"
    " v_code TEXT, v_num DOUBLE PRECISION, v_unit TEXT, v_lo TEXT, v_hi TEXT, v_str TEXT",
    "idx_compound": "res_type TEXT NOT NULL, res_id TEXT NOT NULL, combo TEXT NOT NULL,"
    " ref_id TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, lo TEXT NOT NULL,"
    " hi TEXT NOT NULL",
}


def _keyed_rows() -> list[str | PerDialect]:
    """Version 8: resources numbered, index rows keyed by ``row_key`` (``ROW_SPAN``). Each
    table is rebuilt with the key, its rows numbered per resource in the order they are
    read, and its value indexes made again, without the ``*_res`` ones; rows whose resource
    does not exist (the store never writes such) are left out."""
    out: list[str | PerDialect] = [
        "ALTER TABLE resources ADD COLUMN rid BIGINT",
        PerDialect(
            "UPDATE resources SET rid = rowid",
            "UPDATE resources SET rid = n.rid FROM (SELECT res_type, res_id,"
            " row_number() OVER (ORDER BY first_created, res_type, res_id) AS rid"
            " FROM resources) n WHERE resources.res_type = n.res_type"
            " AND resources.res_id = n.res_id",
        ),
        PerDialect(
            "CREATE TABLE rid_counter (next BIGINT NOT NULL)",
            "CREATE SEQUENCE resource_rid",
        ),
        PerDialect(
            "INSERT INTO rid_counter (next) SELECT COALESCE(MAX(rid), 0) + 1 FROM resources",
            "SELECT setval('resource_rid', COALESCE(MAX(rid), 0) + 1, false) FROM resources",
        ),
    ]
    for table, columns in _TABLE_COLUMNS.items():
        names = ", ".join(c.split()[0] for c in columns.split(", "))
        out += [
            PerDialect(
                f"CREATE TABLE {table}_keyed (row_key INTEGER PRIMARY KEY, {columns})",
                f"CREATE TABLE {table}_keyed (row_key BIGINT PRIMARY KEY, {columns})",
            ),
            f"INSERT INTO {table}_keyed (row_key, {names})"
            f" SELECT r.rid * {ROW_SPAN} + ROW_NUMBER() OVER"
            " (PARTITION BY t.res_type, t.res_id) - 1,"
            f" {', '.join(f't.{n}' for n in names.split(', '))}"
            f" FROM {table} t JOIN resources r"
            " ON r.res_type = t.res_type AND r.res_id = t.res_id",
            f"DROP TABLE {table}",
            f"ALTER TABLE {table}_keyed RENAME TO {table}",
            PerDialect("SELECT 1", f"ALTER INDEX {table}_keyed_pkey RENAME TO {table}_pkey"),
        ]
        out += [
            f"CREATE INDEX {name} ON {table} {columns}"
            for name, columns in (index.split(" ", 1) for index in _VALUE_INDEXES[table])
        ]
    return out


MIGRATIONS.append((8, _keyed_rows()))
