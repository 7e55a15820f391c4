"""The array weigher gives each pair the very float (and level) the one-pair code gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from linkage import pairs as pairs_module
from linkage.comparisons import COMPARISONS
from linkage.features import PatientFeatures, phonetic
from linkage.model import starting_model
from linkage.mpi import identifier_rule
from linkage.pairs import PairWeigher

NAMES = ["anna", "ana", "hanna", "marc", "mark", "lea", "leah", "catherine", "kathryn", "meier"]


def mutate(rng: random.Random, word: str) -> str:
    """A word with a typo, a swap, a deletion, an insertion, or unchanged."""
    if not word or rng.random() < 0.3:
        return word
    i = rng.randrange(len(word))
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + rng.choice("aeiou19 ") + word[i + 1 :]
    if kind == 1 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 2:
        return word[:i] + word[i + 1 :]
    return word[:i] + rng.choice("xyz0") + word[i:]


def date(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.2:
        return rng.choice(["1980", "1981", "1980-03"])
    digits = "1980" + rng.choice(["0307", "0703", "0308", "0370", "1207", "0317"])
    digits = mutate(rng, digits) if rng.random() < 0.5 else digits
    digits = (digits + "00000000")[:8]
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def features(rng: random.Random) -> PatientFeatures:
    given = mutate(rng, rng.choice([*NAMES, ""]))
    family = mutate(rng, rng.choice([*NAMES, ""]))
    values = ["P0001", "P0002", "x" * 40, "ü1"]  # long and non-ASCII ones go one by one
    identifiers = tuple(
        sorted(
            {
                f"{rng.choice(['urn:a', 'urn:b'])}|{mutate(rng, rng.choice(values))}"
                for _ in range(rng.choice([0, 1, 1, 1, 2]))
            }
        )
    )
    return PatientFeatures(
        given=given,
        family=family,
        given_phonetic=phonetic(given),
        family_phonetic=phonetic(family),
        birth_date=date(rng),
        sex=rng.choice(["", "male", "female"]),
        address=mutate(
            rng, rng.choice(["", "12 lake road", "21 lake rd", "7 hill street", "é st"])
        ),
        city=mutate(rng, rng.choice(["", "bern", "berne", "basel"])),
        postcode=mutate(rng, rng.choice(["", "3001", "3010", "30011"])),
        phone=mutate(rng, rng.choice(["", "612345678", "612345687"])),
        email=rng.choice(["", "a@x.org", "b@x.org"]),
        identifiers=identifiers,
    )


class Frequencies:
    def frequency(self, field: str, value: str) -> float | None:
        return None if value.startswith("m") else (len(value) % 7 + 1) / 997


@pytest.mark.parametrize(("seed", "dense"), [(1, 4096), (2, 4096), (3, 4), (4, 0)])
def test_array_weights_and_levels_equal_the_one_pair_code(
    seed: int, dense: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dense: how many names' similarities are tabled up front (the rest go pair by pair).
    monkeypatch.setattr(pairs_module, "_DENSE", dense)
    rng = random.Random(seed)
    batch = [features(rng) for _ in range(150)]
    model = starting_model()
    weigher = PairWeigher(model, batch)
    assert PairWeigher.supports(model)
    pairs = [(i, j) for i in range(len(batch)) for j in range(len(batch))]
    a = np.array([i for i, _ in pairs], np.int64)
    b = np.array([j for _, j in pairs], np.int64)
    for c in COMPARISONS:
        got = getattr(weigher, PairWeigher._ARRAY_FORMS[c.level_of])(a, b).tolist()
        want = [c.level_of(batch[i], batch[j]) for i, j in pairs]
        assert got == want, c.name
    tf = Frequencies()
    for frequencies in (tf, None):
        exact = np.array([model.exact_weights(batch[i], frequencies) for i, _ in pairs])
        weights, vectors = weigher.weigh(a, b, exact)
        want_w = [model.weight(batch[i], batch[j], frequencies) for i, j in pairs]
        assert weights.tolist() == want_w  # the same floats, not merely close ones
        for k in range(0, len(pairs), 97):
            i, j = pairs[k]
            vector = tuple(vectors[k].tolist())
            assert model.score_levels(batch[i], vector, frequencies) == model.score(
                batch[i], batch[j], frequencies
            )
    shared = weigher.shared_identifier(a, b).tolist()
    assert shared == [identifier_rule(batch[i])(batch[j]) is not None for i, j in pairs]
