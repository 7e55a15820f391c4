"""ImagingStudy aggregation: the instances of a study arrive one C-STORE at a time.

What was chosen, and why: the mapping of one instance yields a *fragment*, a complete and
valid ImagingStudy that holds just that instance in its series. ``merge_imaging_studies``
folds fragments (and a study already known, e.g. read back from the FHIR store) into one
resource:

- series are matched by Series Instance UID and instances by SOP Instance UID, so a
  redelivered or re-sent instance changes nothing (idempotent);
- scalar fields keep the first value seen and only fill gaps (the DICOM study and series
  attributes are the same in every instance of a well-formed study, so the order in which
  instances arrive does not change the result);
- performers and identifiers are unions;
- ``numberOfSeries``, ``numberOfInstances`` and the study's ``modality`` list are always
  recomputed, and series and instances are sorted (by number, then UID), so the same set of
  instances always gives byte-identical JSON.

Because the merge is a pure, monotonic fold, the normalizer can keep recent studies in a
cache, seed a cold cache from the store, and emit one up-to-date ImagingStudy per study per
batch instead of one per instance (a 300-image CT would otherwise publish 300 ever-growing
copies).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

Json = dict[str, Any]

# Fields recomputed from the series on every merge; never taken from either input.
_STUDY_DERIVED = ("numberOfSeries", "numberOfInstances", "modality", "series")
_SERIES_DERIVED = ("numberOfInstances", "instance", "performer")


def _union(
    first: Iterable[Json], second: Iterable[Json], key: Callable[[Json], Hashable]
) -> list[Json]:
    seen: dict[Hashable, Json] = {}
    for item in (*first, *second):
        seen.setdefault(key(item), item)
    return list(seen.values())


def _json_key(item: Json) -> Hashable:
    return repr(sorted(item.items()))


def _performer_key(performer: Json) -> Hashable:
    codes = tuple(
        (c.get("system"), c.get("code")) for c in performer.get("function", {}).get("coding", [])
    )
    return codes, performer.get("actor", {}).get("reference")


def _order(item: Json) -> tuple[bool, int, str]:
    number = item.get("number")
    return number is None, number if isinstance(number, int) else 0, str(item.get("uid", ""))


def _fill(base: Mapping[str, Any], other: Mapping[str, Any], skip: Iterable[str]) -> Json:
    """``base`` with the fields only ``other`` has added; ``skip`` is left out of both."""
    skipped = set(skip)
    out = {k: v for k, v in base.items() if k not in skipped}
    for k, v in other.items():
        if k not in skipped and k not in out:
            out[k] = v
    return out


def _merge_series(base: Mapping[str, Any], other: Mapping[str, Any]) -> Json:
    out = _fill(base, other, _SERIES_DERIVED)
    performers = _union(base.get("performer", []), other.get("performer", []), _performer_key)
    if performers:
        out["performer"] = performers
    instances = _union(base.get("instance", []), other.get("instance", []), lambda i: i["uid"])
    instances.sort(key=_order)
    out["numberOfInstances"] = len(instances)
    if instances:
        out["instance"] = instances
    return out


def merge_imaging_studies(base: Mapping[str, Any], other: Mapping[str, Any]) -> Json:
    """One ImagingStudy holding everything ``base`` and ``other`` hold (see module doc).

    Raises ``ValueError`` when the two are not the same study (different ids).
    """
    if base.get("id") != other.get("id"):
        raise ValueError(f"not the same ImagingStudy: {base.get('id')} vs {other.get('id')}")
    out = _fill(base, other, _STUDY_DERIVED)
    identifiers = _union(base.get("identifier", []), other.get("identifier", []), _json_key)
    if identifiers:
        out["identifier"] = identifiers

    by_uid: dict[str, Json] = {}
    for series in (*base.get("series", []), *other.get("series", [])):
        uid = series["uid"]
        by_uid[uid] = (
            _merge_series(by_uid[uid], series) if uid in by_uid else _merge_series(series, {})
        )
    series_list = sorted(by_uid.values(), key=_order)

    modalities = _union(
        (s["modality"] for s in series_list if "modality" in s),
        (),
        lambda c: (c.get("system"), c.get("code")),
    )
    if modalities:
        out["modality"] = sorted(modalities, key=lambda c: str(c.get("code")))
    out["numberOfSeries"] = len(series_list)
    out["numberOfInstances"] = sum(s.get("numberOfInstances", 0) for s in series_list)
    if series_list:
        out["series"] = series_list
    return out


def fold_imaging_studies(studies: Iterable[Mapping[str, Any]]) -> Json:
    """Merge any number of fragments of one study; ``ValueError`` if there are none."""
    result: Json | None = None
    for study in studies:
        result = (
            merge_imaging_studies(result, study)
            if result is not None
            else (merge_imaging_studies(study, study))
        )
    if result is None:
        raise ValueError("no ImagingStudy to fold")
    return result
