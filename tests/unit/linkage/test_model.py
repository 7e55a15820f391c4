from __future__ import annotations

import math

import pytest

from linkage.features import extract
from linkage.model import FellegiSunterModel, probability_from_weight, starting_model

from .factories import patient


class Frequencies:
    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table

    def frequency(self, field: str, value: str) -> float | None:
        return self.table.get((field, value))


def test_probability_is_the_logistic_of_the_weight() -> None:
    assert probability_from_weight(0.0) == 0.5
    assert probability_from_weight(10.0) == pytest.approx(1024 / 1025)
    assert probability_from_weight(-5000.0) == 0.0
    assert probability_from_weight(5000.0) == 1.0


def test_score_is_prior_plus_field_weights_and_explains_each() -> None:
    model = starting_model()
    a = extract(patient())
    s = model.score(a, extract(patient(given="Anne")))
    assert s.weight == pytest.approx(s.prior_weight + sum(x.weight for x in s.fields))
    by_name = {x.comparison: x for x in s.fields}
    assert by_name["given_name"].level == "jaro_winkler>=0.80|phonetic"
    assert by_name["family_name"].level == "exact"
    assert by_name["phone"].level == "null" and by_name["phone"].weight == 0.0
    expected = math.log2(model.m["family_name"][0] / model.u["family_name"][0])
    assert by_name["family_name"].weight == pytest.approx(expected)


def test_identical_records_outscore_different_ones() -> None:
    model = starting_model()
    a = extract(patient())
    same = model.score(a, extract(patient()))
    other = model.score(a, extract(patient("Zygmunt", "Kowalski", "1951-12-30", city="Basel")))
    assert same.probability > 0.99 > 0.01 > other.probability


def test_term_frequency_makes_rare_names_count_more() -> None:
    model = starting_model()
    a, b = extract(patient()), extract(patient())
    rare = model.score(a, b, Frequencies({("family", "meier"): 0.00001}))
    common = model.score(a, b, Frequencies({("family", "meier"): 0.05}))
    family = next(x for x in rare.fields if x.comparison == "family_name")
    assert family.tf_adjusted
    assert rare.weight > common.weight


def test_model_round_trips_through_json() -> None:
    model = starting_model()
    model.m["sex"] = [0.97, 0.03]
    again = FellegiSunterModel.from_json(model.to_json())
    assert again.m == model.m and again.u == model.u and again.prior == model.prior


def test_saved_model_with_other_levels_is_refused() -> None:
    data = starting_model().to_json()
    data["comparisons"][0]["levels"] = ["exact", "else"]
    with pytest.raises(ValueError, match="given_name"):
        FellegiSunterModel.from_json(data)


def test_weight_is_the_score_weight_to_the_last_bit() -> None:
    model = starting_model()
    people = [
        extract(patient()),
        extract(patient("Ana", "Meier", "1980-07-03", city="Bern", postcode="3002")),
        extract(patient("Meier", "Anna", "1981-03-07", phone="031 555 01 01")),
        extract(patient("Jon", "Smith", None, city=None, identifiers=[("urn:x", "1")])),
        extract(patient("John", "Smyth", "1950-01-01", identifiers=[("urn:x", "2")])),
    ]
    tf = Frequencies({("family", "meier"): 0.02, ("city", "bern"): 0.3, ("given", "anna"): 0.01})
    for a in people:
        for b in people:
            for freq in (None, tf):
                assert model.weight(a, b, freq) == model.score(a, b, freq).weight
