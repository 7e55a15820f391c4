from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dicom import fold_imaging_studies, map_instance, merge_imaging_studies
from tests.unit.dicom.helpers import bundled_header, element, validate

STUDY_UID = "1.2.826.0.1.3680043.2.1"
BASE = bundled_header("CT_small.dcm")


def fragment(
    series: int, instance: int, modality: str = "CT", operator: str = ""
) -> dict[str, Any]:
    """The ImagingStudy fragment of one instance of the one study these tests build."""
    data = dict(BASE)
    data["0020000D"] = element("UI", STUDY_UID)
    data["0020000E"] = element("UI", f"{STUDY_UID}.{series}")
    data["00080018"] = element("UI", f"{STUDY_UID}.{series}.{instance}")
    data["00200011"] = element("IS", series)
    data["00200013"] = element("IS", instance)
    data["00080060"] = element("CS", modality)
    if operator:
        data["00081070"] = element("PN", {"Alphabetic": operator})
    return map_instance(data).study


def canonical(study: dict[str, Any]) -> str:
    return json.dumps(study, sort_keys=True)


def test_instances_accumulate_in_series_with_counts() -> None:
    study = fold_imaging_studies(
        [fragment(2, 1, "MR"), fragment(1, 2), fragment(1, 1), fragment(2, 1, "MR")]
    )
    validate(study)
    assert study["numberOfSeries"] == 2 and study["numberOfInstances"] == 3
    assert [s["number"] for s in study["series"]] == [1, 2]
    assert [i["number"] for i in study["series"][0]["instance"]] == [1, 2]
    assert study["series"][0]["numberOfInstances"] == 2
    assert [c["code"] for c in study["modality"]] == ["CT", "MR"]


def test_performers_are_a_union() -> None:
    study = fold_imaging_studies([fragment(1, 1, operator="A^B"), fragment(1, 2, operator="C^D")])
    functions = [p["function"]["coding"][0]["code"] for p in study["series"][0]["performer"]]
    assert sorted(functions) == ["DEV", "SPRF", "SPRF"]


def test_merging_different_studies_is_refused() -> None:
    other = map_instance(bundled_header("MR_small.dcm")).study
    with pytest.raises(ValueError, match="not the same"):
        merge_imaging_studies(fragment(1, 1), other)


def test_a_known_study_keeps_fields_the_fragments_lack() -> None:
    known = fold_imaging_studies([fragment(1, 1)])
    known["meta"] = {"versionId": "3"}
    merged = merge_imaging_studies(known, fragment(1, 2))
    assert merged["meta"] == {"versionId": "3"}
    assert merged["numberOfInstances"] == 2


instances = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(instances, st.randoms(use_true_random=False))
def test_fold_is_order_and_duplicate_independent(pairs: list[tuple[int, int]], rnd: Any) -> None:
    fragments = [fragment(s, i) for s, i in pairs]
    expected = fold_imaging_studies(fragments)
    shuffled = fragments + rnd.sample(fragments, len(fragments) // 2)
    rnd.shuffle(shuffled)
    folded = fold_imaging_studies(shuffled)
    assert canonical(folded) == canonical(expected)
    distinct = set(pairs)
    assert folded["numberOfInstances"] == len(distinct)
    assert folded["numberOfSeries"] == len({s for s, _ in distinct})
    # Seeding from an already merged study (as a cold cache does from the store) changes
    # nothing either.
    half = fold_imaging_studies(shuffled[: len(shuffled) // 2 + 1])
    assert canonical(fold_imaging_studies([half, *shuffled])) == canonical(expected)
    validate(folded)
