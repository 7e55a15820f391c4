"""C-FIND at study and series level answered from the ImagingStudy resources.

The gateway's own index (``devices.dicom.index``) knows what this gateway stored; the
ImagingStudy resources in the FHIR store know every study caregraph holds, whichever
gateway process received it. With a ``StudySearch`` (a FHIR search on ImagingStudy, passed
in by the composition root, so ``devices/`` never imports the store), STUDY and SERIES
queries are answered from those resources.

How: the identifier's most selective keys are pushed down as FHIR search parameters
(Study Instance UIDs as ``identifier``, Modality / Modalities in Study as ``modality``, a
Study Date range as ``started``), with ``_include=ImagingStudy:subject`` for the patient
attributes; the resources that come back are turned into index rows
(``rows_of``) and matched in an in-memory ``InstanceIndex`` with exactly the rules of the
gateway's own index (PS3.4 C.2.2.2: wildcards, lists, ranges, case-blind person names),
so both sources answer a query the same way, with one loss: the Study Time of a study
whose time zone was unknown (``ImagingStudy.started`` then holds the date only, as a FHIR
dateTime with a time needs a zone) is empty. C-GET and C-MOVE still read this gateway's
own files, so a study another gateway received is found here but retrieved there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devices.dicom.index import IndexedInstance, InstanceIndex

StudySearch = Callable[[list[tuple[str, str]]], Sequence[Mapping[str, Any]]]
"""FHIR search on ImagingStudy: (name, value) parameters -> the matching ImagingStudy
resources and the included Patients (FHIR JSON). Raises what the store raises."""

DICOM_UID_SYSTEM = "urn:dicom:uid"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LEVELS = frozenset({"STUDY", "SERIES"})
SEARCH_LIMIT = 1000
_SEX = {"male": "M", "female": "F", "other": "O"}
_DATE_RANGE = re.compile(r"\s*(\d{8})?\s*-\s*(\d{8})?\s*\Z")
_DATE = re.compile(r"\s*(\d{8})\s*\Z")
_UID = re.compile(r"[0-9.]{1,64}\Z")


def _iso(date: str, days: int = 0) -> str:
    """DICOM DA -> FHIR date, moved by ``days`` (pushed-down date bounds are widened by a
    day each way: the store compares instants, and a study's local midnight is another
    day in UTC; the exact match happens afterwards)."""
    return (datetime.strptime(date, "%Y%m%d") + timedelta(days=days)).date().isoformat()


def search_params(keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """FHIR search parameters that narrow a STUDY/SERIES query without losing a match
    (keys that cannot be pushed down exactly are matched afterwards, in ``find``)."""
    params: list[tuple[str, str]] = [
        ("_include", "ImagingStudy:subject"),
        ("_count", str(SEARCH_LIMIT)),
    ]
    uids = [u.strip() for u in keys.get("StudyInstanceUID", "").split("\\") if u.strip()]
    if uids and all(_UID.match(u) for u in uids):
        params.append(("identifier", ",".join(f"{DICOM_UID_SYSTEM}|urn:oid:{u}" for u in uids)))
    for keyword in ("ModalitiesInStudy", "Modality"):
        mods = [m.strip() for m in keys.get(keyword, "").split("\\") if m.strip()]
        if mods and not any("*" in m or "?" in m for m in mods):
            params.append(("modality", ",".join(mods)))
            break
    date = keys.get("StudyDate", "")
    exact, span = _DATE.match(date), _DATE_RANGE.match(date)
    try:
        low, high = (exact[1], exact[1]) if exact else (span[1], span[2]) if span else ("", "")
        if low:
            params.append(("started", f"ge{_iso(low, -1)}"))
        if high:
            params.append(("started", f"le{_iso(high, 1)}"))
    except ValueError:
        pass  # not a real date: matched (and refused) by the index rules afterwards
    return params


def _dicom_date_time(value: str | None) -> tuple[str, str]:
    """FHIR dateTime -> (DA, TM) as the modality wrote them (local wall time)."""
    if not value:
        return "", ""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        digits = re.sub(r"\D", "", value)[:8]
        return digits, ""
    if "T" not in value:
        return when.strftime("%Y%m%d"), ""
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def _has_type(identifier: Mapping[str, Any], code: str) -> bool:
    codings = (identifier.get("type") or {}).get("coding") or []
    return any(c.get("code") == code for c in codings)


def _person_name(name: Mapping[str, Any] | None) -> str:
    if not name:
        return ""
    given = list(name.get("given") or [])
    parts = [
        str(name.get("family") or ""),
        given[0] if given else "",
        " ".join(given[1:]),
        " ".join(name.get("prefix") or []),
        " ".join(name.get("suffix") or []),
    ]
    return "^".join(parts).rstrip("^")


def _patient_values(patient: Mapping[str, Any] | None) -> dict[str, str]:
    if patient is None:
        return {"id": "", "issuer": "", "name": "", "birth": "", "sex": ""}
    identifiers = list(patient.get("identifier") or [])
    chosen = next((i for i in identifiers if _has_type(i, "MR")), None) or (
        identifiers[0] if identifiers else {}
    )
    return {
        "id": str(chosen.get("value") or ""),
        "issuer": str((chosen.get("assigner") or {}).get("display") or ""),
        "name": _person_name((patient.get("name") or [None])[0]),
        "birth": str(patient.get("birthDate") or "").replace("-", ""),
        "sex": _SEX.get(str(patient.get("gender") or ""), ""),
    }


def rows_of(resources: Iterable[Mapping[str, Any]]) -> list[IndexedInstance]:
    """Index rows (one per listed instance) of the ImagingStudy resources, with the
    patient attributes of the included Patient each one's ``subject`` names."""
    resources = list(resources)
    patients = {
        f"Patient/{r.get('id')}": r for r in resources if r.get("resourceType") == "Patient"
    }
    out: list[IndexedInstance] = []
    for study in resources:
        if study.get("resourceType") != "ImagingStudy":
            continue
        identifiers = list(study.get("identifier") or [])
        study_uid = next(
            (
                str(i["value"])[len("urn:oid:") :]
                for i in identifiers
                if i.get("system") == DICOM_UID_SYSTEM
                and str(i.get("value", "")).startswith("urn:oid:")
            ),
            "",
        )
        if not study_uid:
            continue  # not from DICOM: nothing a C-FIND could name
        accession = next(
            (str(i.get("value") or "") for i in identifiers if _has_type(i, "ACSN")), ""
        )
        date, time = _dicom_date_time(study.get("started"))
        patient = _patient_values(patients.get(str((study.get("subject") or {}).get("reference"))))
        referrer = str((study.get("referrer") or {}).get("display") or "")
        for series in study.get("series") or []:
            modality = str((series.get("modality") or {}).get("code") or "")
            number = series.get("number")
            for instance in series.get("instance") or []:
                inumber = instance.get("number")
                out.append(
                    IndexedInstance(
                        sop_instance_uid=str(instance.get("uid") or ""),
                        sop_class_uid=str((instance.get("sopClass") or {}).get("code") or ""),
                        instance_number="" if inumber is None else str(inumber),
                        series_instance_uid=str(series.get("uid") or ""),
                        series_number="" if number is None else str(number),
                        modality=modality,
                        series_description=str(series.get("description") or ""),
                        study_instance_uid=study_uid,
                        study_date=date,
                        study_time=time,
                        accession_number=accession,
                        study_id="",
                        study_description=str(study.get("description") or ""),
                        referring_physician_name=referrer,
                        patient_id=patient["id"],
                        issuer_of_patient_id=patient["issuer"],
                        patient_name=patient["name"],
                        patient_birth_date=patient["birth"],
                        patient_sex=patient["sex"],
                        sha256="",
                        size=0,
                        transfer_syntax="",
                    )
                )
    return out


class StudyCatalog:
    """``find`` for STUDY and SERIES queries over a ``StudySearch`` (module docstring)."""

    def __init__(self, search: StudySearch) -> None:
        self.search = search

    def find(
        self, level: str, keys: Mapping[str, str], returned: set[str] | None = None
    ) -> list[dict[str, str | int]]:
        """As ``InstanceIndex.find``, over the studies the search returns."""
        rows = rows_of(self.search(search_params(keys)))
        scratch = InstanceIndex(Path(":memory:"))
        try:
            for row in rows:
                scratch.add(row)
            return scratch.find(level, keys, returned)
        finally:
            scratch.close()


__all__ = ["LEVELS", "StudyCatalog", "StudySearch", "rows_of", "search_params"]
