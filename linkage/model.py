"""The Fellegi-Sunter model: m and u probabilities per comparison level, and scores that explain.

For a pair, each comparison lands on a level; the level contributes log2(m / u) bits of
evidence (m: how often true matches land there, u: how often non-matches do). The prior
log-odds plus the sum is the match weight; the match probability follows from it. Every
score keeps each field's contribution, so a reviewer (and the link history) can see why.

Term-frequency adjustment replaces u at an exact level by the frequency of the agreed value
among all records: agreeing on a rare family name counts for more than agreeing on a common
one (Splink's ``tf_adjustment``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from linkage.comparisons import COMPARISONS, NULL, Comparison
from linkage.features import PatientFeatures


class TermFrequencies(Protocol):
    """How common a value is among the records of a field (0..1), or None if unknown."""

    def frequency(self, field: str, value: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class FieldWeight:
    """One comparison's part of a score: the level reached and the evidence in bits."""

    comparison: str
    level: str
    weight: float
    tf_adjusted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "comparison": self.comparison,
            "level": self.level,
            "weight": round(self.weight, 4),
            "tf_adjusted": self.tf_adjusted,
        }


@dataclass(frozen=True, slots=True)
class Score:
    """A pair's match weight (log2 odds), probability, and the per-field weights behind it.

    ``rule`` names a deterministic rule that decided the pair (e.g. a shared identifier);
    then the probability is 1 and the field weights are still given for the record.
    """

    weight: float
    probability: float
    prior_weight: float
    fields: tuple[FieldWeight, ...] = field(default_factory=tuple)
    rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "weight": round(self.weight, 4),
            "probability": self.probability,
            "prior_weight": round(self.prior_weight, 4),
            "rule": self.rule,
            "fields": [f.to_json() for f in self.fields if f.level != "null"],
        }


def probability_from_weight(weight: float) -> float:
    """2^w / (1 + 2^w), computed without overflow for large |w|."""
    if weight >= 0:
        return 1.0 / (1.0 + math.pow(2.0, -weight))
    odds = math.pow(2.0, weight)
    return odds / (1.0 + odds)


def _clamp(p: float) -> float:
    return min(max(p, 1e-9), 1.0 - 1e-9)


@dataclass(slots=True)
class FellegiSunterModel:
    """Parameters of the model: ``m[name][level]``, ``u[name][level]`` and the prior.

    ``prior`` is lambda, the probability that two records drawn at random are the same
    person; training estimates it along with m (u comes from random pairs).
    """

    comparisons: tuple[Comparison, ...]
    m: dict[str, list[float]]
    u: dict[str, list[float]]
    prior: float
    tf_minimum_u: float = 1e-6
    _weights: list[list[float]] | None = field(default=None, init=False, repr=False, compare=False)
    _parts: list[list[FieldWeight]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def prior_weight(self) -> float:
        p = _clamp(self.prior)
        return math.log2(p / (1.0 - p))

    def level_weight(self, index: int, level: int) -> float:
        return self._table()[index][level]

    def _table(self) -> list[list[float]]:
        table = self._weights
        if table is None:
            # Computed once: m and u are not changed after a model scores (training builds
            # its model completely first; a new estimate is a new model).
            table = self._weights = [
                [
                    math.log2(_clamp(m) / _clamp(u))
                    for m, u in zip(self.m[c.name], self.u[c.name], strict=True)
                ]
                for c in self.comparisons
            ]
        return table

    def score_vector(self, vector: Sequence[int], tf_u: Mapping[int, float] | None = None) -> Score:
        """Score a comparison vector; ``tf_u`` overrides u at exact levels, by position."""
        prior = self.prior_weight()
        total = prior
        fixed = self._fixed_parts()
        parts: list[FieldWeight] = []
        for i, level in enumerate(vector):
            if tf_u and level == 0 and i in tf_u:
                c = self.comparisons[i]
                u = max(tf_u[i], self.tf_minimum_u)
                w = math.log2(_clamp(self.m[c.name][0]) / _clamp(u))
                total += w
                parts.append(FieldWeight(c.name, c.levels[level], w, True))
                continue
            # Not adjusted: the part is the same object every time (the last is "null").
            part = fixed[i][level]
            if level != NULL:
                total += part.weight
            parts.append(part)
        return Score(total, probability_from_weight(total), prior, tuple(parts))

    def _fixed_parts(self) -> list[list[FieldWeight]]:
        """Each comparison's part at each level, then at NULL (index -1), built once."""
        parts = self._parts
        if parts is None:
            table = self._table()
            parts = self._parts = [
                [FieldWeight(c.name, label, table[i][k]) for k, label in enumerate(c.levels)]
                + [FieldWeight(c.name, "null", 0.0)]
                for i, c in enumerate(self.comparisons)
            ]
        return parts

    def score(
        self,
        a: PatientFeatures,
        b: PatientFeatures,
        tf: TermFrequencies | None = None,
    ) -> Score:
        """Score the pair (a: the incoming record, whose values the frequencies look up)."""
        return self.score_levels(a, tuple(c.level_of(a, b) for c in self.comparisons), tf)

    def score_levels(
        self, a: PatientFeatures, vector: Sequence[int], tf: TermFrequencies | None = None
    ) -> Score:
        """``score(a, b, tf)`` from the pair's comparison vector, found elsewhere (a batch's
        workers send the vectors of the pairs that may need explaining)."""
        return self.score_vector(vector, self._tf_u(a, vector, tf))

    def _tf_u(
        self, a: PatientFeatures, vector: Sequence[int], tf: TermFrequencies | None
    ) -> dict[int, float]:
        tf_u: dict[int, float] = {}
        if tf is not None:
            for i, c in enumerate(self.comparisons):
                if c.tf_field and vector[i] == 0:
                    freq = tf.frequency(c.tf_field, str(getattr(a, c.tf_field)))
                    if freq is not None:
                        tf_u[i] = freq
        return tf_u

    def weight(
        self,
        a: PatientFeatures,
        b: PatientFeatures,
        tf: TermFrequencies | None = None,
    ) -> float:
        """``score(a, b, tf).weight`` (the same sum in the same order, so the same float)
        without the per-field parts: batch linkage ranks many pairs and explains few."""
        table = self._table()
        total = self.prior_weight()
        for i, c in enumerate(self.comparisons):
            level = c.level_of(a, b)
            if level == NULL:
                continue
            if level == 0 and tf is not None and c.tf_field:
                freq = tf.frequency(c.tf_field, str(getattr(a, c.tf_field)))
                if freq is not None:
                    u = max(freq, self.tf_minimum_u)
                    total += math.log2(_clamp(self.m[c.name][0]) / _clamp(u))
                    continue
            total += table[i][level]
        return total

    def weigher(
        self, a: PatientFeatures, tf: TermFrequencies | None = None
    ) -> Callable[[PatientFeatures], float]:
        """``lambda b: weight(a, b, tf)``, for one incoming record against many candidates.

        The term frequencies of a's values are looked up once, not once per candidate, and
        each comparison's weights by level are bound beforehand: the same sum in the same
        order, so the same float as ``weight`` (and ``score().weight``).
        """
        table = self._table()
        rows: list[tuple[Callable[[PatientFeatures, PatientFeatures], int], list[float]]] = []
        for i, (c, exact) in enumerate(
            zip(self.comparisons, self.exact_weights(a, tf), strict=True)
        ):
            row = table[i]
            rows.append((c.level_of, row if exact is row[0] else [exact, *row[1:]]))
        prior = self.prior_weight()

        def weight(b: PatientFeatures) -> float:
            total = prior
            for level_of, row in rows:
                level = level_of(a, b)
                if level != NULL:
                    total += row[level]
            return total

        return weight

    def exact_weights(self, a: PatientFeatures, tf: TermFrequencies | None) -> list[float]:
        """Each comparison's weight at its exact level as record a sees it (adjusted by the
        frequency of a's value where the comparison has one): what ``weigher`` binds, and
        what the batch's array weigher (``linkage.pairs``) uses, so both give one float."""
        table = self._table()
        out: list[float] = []
        for i, c in enumerate(self.comparisons):
            exact = table[i][0]
            if tf is not None and c.tf_field:
                freq = tf.frequency(c.tf_field, str(getattr(a, c.tf_field)))
                if freq is not None:
                    u = max(freq, self.tf_minimum_u)
                    exact = math.log2(_clamp(self.m[c.name][0]) / _clamp(u))
            out.append(exact)
        return out

    def to_json(self) -> dict[str, Any]:
        """Parameters as JSON (saved in ``linkage_model``; comparisons are named, not pickled)."""
        return {
            "prior": self.prior,
            "tf_minimum_u": self.tf_minimum_u,
            "comparisons": [
                {"name": c.name, "levels": list(c.levels), "m": self.m[c.name], "u": self.u[c.name]}
                for c in self.comparisons
            ],
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], comparisons: Sequence[Comparison] = COMPARISONS
    ) -> FellegiSunterModel:
        """Rebuild a model; raises ValueError if the saved levels no longer fit the code."""
        by_name = {c.name: c for c in comparisons}
        m: dict[str, list[float]] = {}
        u: dict[str, list[float]] = {}
        used: list[Comparison] = []
        for saved in data["comparisons"]:
            c = by_name.get(saved["name"])
            if c is None or list(c.levels) != list(saved["levels"]):
                raise ValueError(f"saved comparison {saved['name']!r} does not match the code")
            used.append(c)
            m[c.name] = [float(x) for x in saved["m"]]
            u[c.name] = [float(x) for x in saved["u"]]
        return cls(tuple(used), m, u, float(data["prior"]), float(data["tf_minimum_u"]))


# How often two different people agree exactly on a field by chance: generic orders of
# magnitude (half of all pairs share a sex; few share a birth date), only until training
# replaces them with u estimated from the data itself.
_GENERIC_U_EXACT: dict[str, float] = {
    "given_name": 0.01,
    "family_name": 0.005,
    "birth_date": 0.0003,
    "sex": 0.5,
    "address": 0.0005,
    "city": 0.02,
    "postcode": 0.01,
    "phone": 0.0001,
    "email": 0.0001,
    "identifier": 0.0001,
}


def _falling(n: int) -> list[float]:
    """m for n levels: most matches agree exactly, fewer at each weaker level."""
    values = [0.9 * 0.3**k for k in range(n)]
    total = sum(values)
    return [v / total for v in values]


def starting_model(comparisons: Sequence[Comparison] = COMPARISONS) -> FellegiSunterModel:
    """A model to start EM from, and to run on before any training has happened.

    m falls from the best level to "else"; u at the exact level is a generic chance
    agreement, the fuzzy levels three times that, and "else" the rest. Training replaces
    these with estimates from the data (u from random pairs, m by EM).
    """
    m: dict[str, list[float]] = {}
    u: dict[str, list[float]] = {}
    for c in comparisons:
        n = len(c.levels)
        exact = _GENERIC_U_EXACT.get(c.name, 0.01)
        fuzzy = [min(exact * 3, 0.1)] * (n - 2)
        m[c.name] = _falling(n)
        u[c.name] = [exact, *fuzzy, 1.0 - exact - sum(fuzzy)]
    return FellegiSunterModel(tuple(comparisons), m, u, prior=1e-4)
