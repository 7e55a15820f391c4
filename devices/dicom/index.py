"""What the gateway has stored, searchable for C-FIND: one SQLite table in the data dir.

One row per SOP instance (upserted, so a re-sent instance stays one row) with the patient,
study, series and instance attributes the Query/Retrieve information models match on, and
the content hash of the stored file. A C-FIND at a level groups the rows by that level's
unique key; a level matches when any of its instances matches (PS3.4 C.2.2.2: single
value, UID list, wildcard ``*``/``?``, date and time ranges; person names case-blind).

The index is derived data: the files and the ``raw.dicom`` messages are the record. It runs
WAL with ``synchronous=NORMAL``, durable across a process crash; after a power loss the
last rows may be missing until the instance is sent again or ``DicomGateway.reindex``
rebuilds the index from the files.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from caregraph.errors import MappingError
from devices.dicom.status import GatewayError

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")


class IndexFailed(GatewayError):
    """The index database failed (disk, corruption); the store cannot complete."""


class UnsupportedQuery(MappingError):
    """A C-FIND identifier this index cannot answer (unknown level, bad range)."""


@dataclass(frozen=True, slots=True)
class IndexedInstance:
    """One stored instance's searchable attributes (DICOM string forms, '' when absent)."""

    sop_instance_uid: str
    sop_class_uid: str
    instance_number: str
    series_instance_uid: str
    series_number: str
    modality: str
    series_description: str
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician_name: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    sha256: str
    size: int
    transfer_syntax: str


_COLUMNS = [f.name for f in fields(IndexedInstance)]

# keyword -> (column, matching kind, level the attribute belongs to)
_Kind = Literal["text", "pn", "uid", "date", "time"]
ATTRIBUTES: dict[str, tuple[str, _Kind, Level]] = {
    "PatientID": ("patient_id", "text", "PATIENT"),
    "IssuerOfPatientID": ("issuer_of_patient_id", "text", "PATIENT"),
    "PatientName": ("patient_name", "pn", "PATIENT"),
    "PatientBirthDate": ("patient_birth_date", "date", "PATIENT"),
    "PatientSex": ("patient_sex", "text", "PATIENT"),
    "StudyInstanceUID": ("study_instance_uid", "uid", "STUDY"),
    "StudyDate": ("study_date", "date", "STUDY"),
    "StudyTime": ("study_time", "time", "STUDY"),
    "AccessionNumber": ("accession_number", "text", "STUDY"),
    "StudyID": ("study_id", "text", "STUDY"),
    "StudyDescription": ("study_description", "text", "STUDY"),
    "ReferringPhysicianName": ("referring_physician_name", "pn", "STUDY"),
    "SeriesInstanceUID": ("series_instance_uid", "uid", "SERIES"),
    "Modality": ("modality", "text", "SERIES"),
    "SeriesNumber": ("series_number", "text", "SERIES"),
    "SeriesDescription": ("series_description", "text", "SERIES"),
    "SOPInstanceUID": ("sop_instance_uid", "uid", "IMAGE"),
    "SOPClassUID": ("sop_class_uid", "uid", "IMAGE"),
    "InstanceNumber": ("instance_number", "text", "IMAGE"),
}
_UNIQUE_KEY: dict[Level, str] = {
    "PATIENT": "patient_id",
    "STUDY": "study_instance_uid",
    "SERIES": "series_instance_uid",
    "IMAGE": "sop_instance_uid",
}
# Attributes computed over the instances under one match (PS3.4 C.3 optional keys).
COUNTS: dict[str, tuple[Level, str]] = {
    "NumberOfPatientRelatedStudies": ("PATIENT", "COUNT(DISTINCT study_instance_uid)"),
    "NumberOfPatientRelatedSeries": ("PATIENT", "COUNT(DISTINCT series_instance_uid)"),
    "NumberOfPatientRelatedInstances": ("PATIENT", "COUNT(*)"),
    "NumberOfStudyRelatedSeries": ("STUDY", "COUNT(DISTINCT series_instance_uid)"),
    "NumberOfStudyRelatedInstances": ("STUDY", "COUNT(*)"),
    "ModalitiesInStudy": ("STUDY", "GROUP_CONCAT(DISTINCT modality)"),
    "NumberOfSeriesRelatedInstances": ("SERIES", "COUNT(*)"),
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS instances (
    {", ".join(f"{c} {'INTEGER' if c == 'size' else 'TEXT'} NOT NULL" for c in _COLUMNS)},
    PRIMARY KEY (sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_instance_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_patient ON instances (patient_id);
"""


def _glob_escape(text: str) -> str:
    # GLOB's own wildcards are DICOM's; only '[' (a character class) must be neutralised.
    return text.replace("[", "[[]")


def _condition(column: str, kind: _Kind, value: str) -> tuple[str, list[str]] | None:
    """SQL for one matching key; ``None`` for universal matching."""
    value = value.strip()
    if value in ("", "*"):
        return None
    if kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        return f"{column} IN ({','.join('?' * len(uids))})", uids
    if kind in ("date", "time") and "-" in value:
        low, _, high = value.partition("-")
        if "-" in high:
            raise UnsupportedQuery(f"not a range: {value!r}")
        parts, args = [], []
        if low:
            parts.append(f"{column} >= ?")
            args.append(low)
        if high:
            # A time range's upper end covers the whole of its last unit (e.g. "1200").
            parts.append(f"{column} <= ?" if kind == "date" else f"substr({column}, 1, ?) <= ?")
            args += [high] if kind == "date" else [str(len(high)), high]
        return (" AND ".join(parts) or "1"), args
    if kind == "pn":
        if "*" in value or "?" in value:
            return f"upper({column}) GLOB upper(?)", [_glob_escape(value)]
        return f"upper({column}) = upper(?)", [value]
    if "*" in value or "?" in value:
        return f"{column} GLOB ?", [_glob_escape(value)]
    return f"{column} = ?", [value]


def _where(level: str, keys: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """SQL conditions for the matching keys of a query at ``level`` (see ``find``)."""
    if level not in LEVELS:
        raise UnsupportedQuery(f"unknown Query/Retrieve level {level!r}")
    depth = LEVELS.index(level)
    allowed = set(LEVELS[: depth + 1])
    where, args = [], []
    for keyword, value in keys.items():
        if keyword == "ModalitiesInStudy" and value.strip() and level != "PATIENT":
            mods = [m.strip() for m in value.split("\\") if m.strip() not in ("", "*")]
            if mods:
                where.append(
                    "study_instance_uid IN (SELECT study_instance_uid FROM instances "
                    f"WHERE modality IN ({','.join('?' * len(mods))}))"
                )
                args += mods
            continue
        spec = ATTRIBUTES.get(keyword)
        if spec is None or spec[2] not in allowed:
            continue
        cond = _condition(spec[0], spec[1], value)
        if cond is not None:
            where.append(cond[0])
            args += cond[1]
    return where, args


class InstanceIndex:
    """The SQLite index at ``path``; one connection shared by the gateway's threads."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise IndexFailed(f"cannot open the DICOM index {path}: {exc}") from exc
        self._lock = threading.Lock()

    def add(self, row: IndexedInstance) -> None:
        """Insert or replace the row of ``row.sop_instance_uid``."""
        sql = f"INSERT OR REPLACE INTO instances VALUES ({','.join('?' * len(_COLUMNS))})"
        try:
            with self._lock:
                # Not dataclasses.astuple: it deep-copies every field.
                self._db.execute(sql, tuple(getattr(row, c) for c in _COLUMNS))
        except sqlite3.Error as exc:
            raise IndexFailed(f"cannot index {row.sop_instance_uid}: {exc}") from exc

    def find(
        self, level: str, keys: Mapping[str, str], returned: set[str] | None = None
    ) -> list[dict[str, str | int]]:
        """Matches at ``level`` for the matching ``keys`` (keyword -> DICOM query string).

        Each match maps keyword -> value for the attributes of its level and the levels
        above, plus the ``COUNTS`` named in ``returned``. Keys of lower levels or unknown
        keywords are ignored (PS3.4 C.2.2.1: the SCP matches the keys it supports).
        """
        where, args = _where(level, keys)
        depth = LEVELS.index(level)  # a known level: _where checked it
        allowed = set(LEVELS[: depth + 1])
        out_attrs = [(k, c) for k, (c, _, lvl) in ATTRIBUTES.items() if lvl in allowed]
        counts = [(k, expr) for k, (lvl, expr) in COUNTS.items() if lvl == level]
        counts = [(k, e) for k, e in counts if returned is None or k in returned]
        select = [f"MIN({c})" for _, c in out_attrs] + [e for _, e in counts]
        sql = (
            f"SELECT {', '.join(select)} FROM instances"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" GROUP BY {_UNIQUE_KEY[LEVELS[depth]]} ORDER BY MIN(rowid)"
        )
        names = [k for k, _ in out_attrs] + [k for k, _ in counts]
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise IndexFailed(f"C-FIND query failed: {exc}") from exc
        return [dict(zip(names, row, strict=True)) for row in rows]

    def instances(self, level: str, keys: Mapping[str, str]) -> list[IndexedInstance]:
        """Every instance under the matches of a query at ``level`` (for C-GET)."""
        where, args = _where(level, keys)
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM instances"
            f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY rowid"
        )
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise IndexFailed(f"C-GET query failed: {exc}") from exc
        return [IndexedInstance(*row) for row in rows]

    def count(self) -> int:
        """How many instances are indexed."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
