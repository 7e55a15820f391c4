from __future__ import annotations

import random

from linkage.features import PatientFeatures, extract
from linkage.training import train

from .factories import patient

GIVEN = ["anna", "marc", "lea", "noah", "mia", "luca", "emma", "elias", "lina", "ben"] * 3
FAMILY = ["meier", "keller", "weber", "huber", "schmid", "brunner", "baumann", "frei", "moser"]


def typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(len(word))
    return word[:i] + rng.choice("aeiourst") + word[i + 1 :]


def synthetic(n: int, seed: int) -> tuple[list[PatientFeatures], list[int]]:
    """n people, half of them registered twice with typos; returns features and truth."""
    rng = random.Random(seed)
    records: list[PatientFeatures] = []
    truth: list[int] = []
    for person in range(n):
        given = rng.choice(GIVEN) + rng.choice(["", "a", "o", "e"])
        family = rng.choice(FAMILY) + rng.choice(["", "er", "li", "mann"])
        dob = f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        pc = str(rng.randint(1000, 9999))
        records.append(extract(patient(given, family, dob, postcode=pc, line=None, city=None)))
        truth.append(person)
        if person % 2 == 0:
            records.append(
                extract(patient(typo(rng, given), family, dob, postcode=pc, line=None, city=None))
            )
            truth.append(person)
    return records, truth


def test_em_learns_that_matches_agree_and_non_matches_do_not() -> None:
    records, _ = synthetic(1500, seed=1)
    model, sessions = train(records, u_pairs=50_000)
    assert {s.rule for s in sessions} == {"dob", "names"}
    # Birth date is estimated only by the names session, names only by the dob session.
    assert "birth_date" not in next(s.m for s in sessions if s.rule == "dob")
    assert model.m["birth_date"][0] > 0.9  # duplicates here always share the birth date
    assert model.u["birth_date"][0] < 0.01
    assert model.m["family_name"][0] > 0.9
    assert model.m["given_name"][0] < 0.9  # half the duplicates carry a typo in the given name
    # About 750 duplicate pairs among ~2.5 million: the prior is of that order.
    assert 1e-4 < model.prior < 1e-3


def test_trained_model_separates_synthetic_duplicates() -> None:
    records, truth = synthetic(1000, seed=2)
    model, _ = train(records, u_pairs=50_000)
    scores_true = [
        model.score(records[i], records[i + 1]).probability
        for i in range(len(records) - 1)
        if truth[i] == truth[i + 1]
    ]
    rng = random.Random(3)
    scores_false = []
    for _ in range(2000):
        i, j = rng.randrange(len(records)), rng.randrange(len(records))
        if truth[i] != truth[j]:
            scores_false.append(model.score(records[i], records[j]).probability)
    assert sum(p > 0.9 for p in scores_true) / len(scores_true) > 0.95
    assert sum(p > 0.9 for p in scores_false) == 0
