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


def test_weigher_is_the_weight_to_the_last_bit() -> None:
    # The weigher binds one side and its term frequencies beforehand: on every level, with
    # and without frequencies, in any order of comparisons, it gives weight()'s float.
    from .test_batch import population

    model = starting_model()
    model.m["address"] = [0.6, 0.2, 0.1, 0.1]  # distinct weights, so a wrong level shows
    people = [extract(p) for p in population(120, seed=3)]
    people += [
        extract(patient()),
        extract(patient("Ana", "Meier", "1980-07-03", city="Bern", postcode="3002")),
        extract(patient("Meier", "Anna", "1981-03-07", phone="031 555 01 01")),
        extract(patient("Anna", "Meyer", "1980-03", phone="031 555 01 02")),
        extract(patient("Jon", "Smith", None, city=None, identifiers=[("urn:x", "1")])),
        extract(patient("John", "Smyth", "1950-01-01", identifiers=[("urn:x", "2")])),
        extract(patient("John", "Smyth", "1950-10-01", identifiers=[("urn:x", "2"), ("u", "9")])),
        extract(patient(None, "Meier", "1980-03-07", line="12 Lake Rd", postcode=None)),
        extract(patient("Anna", None, "1980-03-17", line="21 Lake Road", postcode="3010")),
        extract(patient("Anna", "Meier", "1980-03-07", line="12 Lakeside Avenue", gender=None)),
        extract(patient("Anna", "Meier", "1980-03-07", line="1 Hill St", phone="031 555 01 01")),
        extract(patient("Anna", "Meier", "1980-03-07", city="Berne", gender="male")),
        extract(patient("Anna", "Meier", "1980-03-07", city="Zurich", phone="031 555 01 11")),
        extract(patient("Anna", "Meier", "1980-03-07", city="Zurich", phone="044 123 45 67")),
    ]
    tf = Frequencies({("family", "meier"): 0.02, ("city", "bern"): 0.3, ("given", "anna"): 0.01})
    generic = FellegiSunterModel(tuple(reversed(model.comparisons)), model.m, model.u, 1e-3)
    levels: set[tuple[str, int]] = set()
    for a in people:
        for freq in (None, tf):
            fast, slow = model.weigher(a, freq), generic.weigher(a, freq)
            for b in people:
                assert fast(b) == model.weight(a, b, freq)
                assert slow(b) == generic.weight(a, b, freq)
                levels.update((c.name, c.level_of(a, b)) for c in model.comparisons)
    names = (
        "given_name",
        "family_name",
        "birth_date",
        "address",
        "postcode",
        "city",
        "sex",
        "phone",
    )
    every = {(c.name, lvl) for c in model.comparisons for lvl in range(-1, len(c.levels))}
    missing = {(n, lvl) for n, lvl in every if n in names} - levels
    assert not missing
