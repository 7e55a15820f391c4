"""Weights of many candidate pairs at once, with numpy: batch linkage's inner loop.

``FellegiSunterModel.weigher`` costs 10-20 us a pair in Python (ten comparator calls); a
batch of a million Patients weighs some 55 million pairs. Here every field of the batch is
an integer code per record, each comparison's level is computed for whole arrays of pairs,
and the levels' weights are added in the model's order, so each pair's weight is the same
float ``weigher`` gives (the tests hold them equal). Jaro-Winkler comes from rapidfuzz's
pairwise ``cpdist`` in C++ (checked against jellyfish wherever the last digits could
matter); edit distances from exact bounds on arrays, jellyfish only where they leave the
level open.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar

import jellyfish
import numpy as np
import numpy.typing as npt
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from linkage import comparisons as cmp
from linkage.features import PatientFeatures
from linkage.model import FellegiSunterModel

Codes = npt.NDArray[np.int64]
Levels = npt.NDArray[np.int8]
Floats = npt.NDArray[np.float64]

_WIDTH = 32
"""Longest string (characters) the array comparisons take; longer ones go to the comparator."""

_NEAR = 1e-6
"""A similarity this close to a threshold is computed again by the comparator itself."""

_DENSE = 4096
"""Names (and cities) whose similarities to each other are computed up front: a 64 MiB
table, which a batch's common values (the first to come) fill."""


class _Vocab:
    """Distinct values, coded 0, 1, ...; code 0 is the empty value (``NULL`` levels)."""

    def __init__(self, empty: Hashable = "") -> None:
        self.ids: dict[Hashable, int] = {empty: 0}
        self.values: list[Hashable] = [empty]

    def codes(self, values: Sequence[Hashable]) -> Codes:
        ids, out = self.ids, self.values

        def code(value: Hashable) -> int:
            i = ids.get(value)
            if i is None:
                i = ids[value] = len(out)
                out.append(value)
            return i

        return np.fromiter((code(v) for v in values), np.int64, len(values))

    def strings(self) -> list[str]:
        return [str(v) for v in self.values]


def _bins() -> npt.NDArray[np.uint8]:
    """Characters into 48 bins for histograms: letters, digits and space apart, the rest
    shared (sharing a bin only loosens the bounds below, it never breaks them)."""
    table = np.full(128, 47, np.uint8)
    for k, ch in enumerate("abcdefghijklmnopqrstuvwxyz0123456789 "):
        table[ord(ch)] = k
    return table


_BINS = 48
_BIN_OF = _bins()


class _Strings:
    """A vocabulary's strings as arrays: lengths, code points (left-aligned, and of the
    reversed strings) and character histograms, as asked. ``plain`` marks the strings the array
    comparisons take: ASCII without a carriage return (where jellyfish's graphemes are its
    characters), without NUL, at most ``_WIDTH`` long; the others go to the comparator."""

    def __init__(
        self,
        values: list[str],
        *,
        matrices: bool = True,
        histogram: bool = False,
        similarity: int = 0,
    ):
        self.values = values
        self.length = np.fromiter((len(v) for v in values), np.int64, len(values))
        self.plain = np.fromiter(
            (len(v) <= _WIDTH and v.isascii() and "\r" not in v and "\0" not in v for v in values),
            np.bool_,
            len(values),
        )
        fitted = [v if ok else "" for v, ok in zip(values, self.plain.tolist(), strict=True)]
        width = self.width = max(1, max(map(len, fitted), default=1))
        if matrices:
            self.left = np.array(fitted, dtype=f"U{width}").view(np.uint32).reshape(-1, width)
            self.right = (
                np.array([v[::-1] for v in fitted], dtype=f"U{width}")
                .view(np.uint32)
                .reshape(-1, width)
            )
        # Jaro-Winkler of every pair of the first ``similarity`` values, at once (C++):
        # float32, whose rounding (< 1e-7) stays inside ``_NEAR``.
        self.similarity: npt.NDArray[np.float32] | None = None
        if similarity:
            top = fitted[:similarity]
            self.similarity = process.cdist(
                top, top, scorer=JaroWinkler.similarity, dtype=np.float32, workers=1
            )
        if histogram:
            raw = np.frombuffer("".join(fitted).encode("ascii"), np.uint8)
            rows = np.repeat(np.arange(len(values)), [len(v) for v in fitted])
            counts = np.bincount(rows * _BINS + _BIN_OF[raw], minlength=len(values) * _BINS)
            self.histogram = counts.reshape(len(values), _BINS).astype(np.int16)

    def prefix(self, a: Codes, b: Codes) -> Codes:
        """Length of the common prefix of each pair (plain strings only)."""
        return _common(self.left[a], self.left[b], np.minimum(self.length[a], self.length[b]))

    def suffix(self, a: Codes, b: Codes) -> Codes:
        return _common(self.right[a], self.right[b], np.minimum(self.length[a], self.length[b]))


def _common(x: npt.NDArray[np.uint32], y: npt.NDArray[np.uint32], cap: Codes) -> Codes:
    differ = x != y
    first: Codes = np.where(differ.any(axis=1), differ.argmax(axis=1), x.shape[1])
    return np.minimum(first, cap)


def _one_edit(s: _Strings, a: Codes, b: Codes) -> npt.NDArray[np.bool_]:
    """``comparisons._one_edit`` of each pair of (different) strings: with p the common
    prefix and q the common suffix, one substitution or deletion leaves p + q >= the
    shorter length - 1 or = it, one transposition p + q >= n - 2 with the two characters at
    p crossed."""
    out = np.zeros(len(a), np.bool_)
    plain = s.plain[a] & s.plain[b]
    for k in np.flatnonzero(~plain).tolist():
        out[k] = cmp._one_edit(s.values[a[k]], s.values[b[k]])
    idx = np.flatnonzero(plain)
    if not len(idx):
        return out
    a, b = a[idx], b[idx]
    n, m = s.length[a], s.length[b]
    p, q = s.prefix(a, b), s.suffix(a, b)
    short = np.minimum(n, m)
    same = n == m
    at = np.minimum(p, s.width - 1)
    after = np.minimum(p + 1, s.width - 1)
    crossed = (s.left[a, at] == s.left[b, after]) & (s.left[a, after] == s.left[b, at])
    ok = np.where(
        same,
        (p + q >= n - 1) | ((p + q >= n - 2) & crossed & (p + 1 < n)),
        (np.abs(n - m) == 1) & (p + q >= short),
    )
    out[idx] = ok
    return out


def _jaro_winkler_band(s: _Strings, x: Codes, y: Codes, thresholds: tuple[float, ...]) -> Levels:
    """For each pair, the first of the (falling) thresholds its Jaro-Winkler similarity
    reaches, or len(thresholds): jellyfish's answer. rapidfuzz's ``cpdist`` computes the
    similarities (C++, some 0.2 us a pair where a jellyfish call from Python takes 2-15 us);
    its arithmetic differs from jellyfish's in the last digits only, so a similarity within
    ``_NEAR`` of a threshold is asked of jellyfish again, as are strings that are not plain
    (jellyfish counts graphemes). Pairs of the first codes of a small vocabulary (names,
    cities: the common values come first) are looked up in ``s.similarity``."""
    out = np.full(len(x), len(thresholds), np.int8)
    values = s.values
    plain = s.plain[x] & s.plain[y]
    fast = np.flatnonzero(plain)
    sim = np.empty(len(fast), np.float64)
    known = np.zeros(len(fast), np.bool_)
    if s.similarity is not None:
        top = len(s.similarity)
        known = (x[fast] < top) & (y[fast] < top)
        sim[known] = s.similarity[x[fast[known]], y[fast[known]]]
    ask = fast[~known]
    sim[~known] = process.cpdist(
        [values[k] for k in x[ask].tolist()],
        [values[k] for k in y[ask].tolist()],
        scorer=JaroWinkler.similarity,
        workers=1,
        dtype=np.float64,
    )
    near = np.zeros(len(fast), np.bool_)
    for band, threshold in reversed(list(enumerate(thresholds))):
        out[fast[sim >= threshold]] = band
        near |= np.abs(sim - threshold) < _NEAR
    jw = jellyfish.jaro_winkler_similarity
    for k in np.concatenate([np.flatnonzero(~plain), fast[near]]).tolist():
        value = jw(values[x[k]], values[y[k]])
        out[k] = next((i for i, t in enumerate(thresholds) if value >= t), len(thresholds))
    return out


class PairWeigher:
    """The batch's features coded once; ``weigh`` gives the weights of arrays of pairs.

    ``supports(model)`` says whether every comparison of the model has an array form here
    (the default comparisons do); otherwise the batch weighs its pairs one by one.
    """

    def __init__(self, model: FellegiSunterModel, features: Sequence[PatientFeatures]) -> None:
        self.model = model
        self.features = features
        names = _Vocab()
        # Given and family names of each record in turn: the common ones get the first
        # codes, whose similarities are tabled.
        both = names.codes([name for f in features for name in (f.given, f.family)])
        self.given, self.family = both[0::2].copy(), both[1::2].copy()
        self._names = _Strings(names.strings(), matrices=False, similarity=_DENSE)
        phonetics = _Vocab()
        self.given_phonetic = phonetics.codes([f.given_phonetic for f in features])
        self.family_phonetic = phonetics.codes([f.family_phonetic for f in features])
        # Metaphone per distinct name, once (``comparisons._name_similarity`` asks it per pair).
        self._metaphone = _Vocab().codes([jellyfish.metaphone(v) for v in self._names.values])
        dates = _Vocab()
        self.date = dates.codes([f.birth_date for f in features])
        date_values = dates.strings()
        self._date_full = np.array([len(d) >= 10 for d in date_values], np.bool_)
        parts = _Vocab()
        self._year = parts.codes([d[:4] for d in date_values])
        self._month = parts.codes([d[5:7] for d in date_values])
        self._day = parts.codes([d[8:10] for d in date_values])
        self._digits = _Strings([d.replace("-", "") for d in date_values], histogram=True)
        sexes = _Vocab()
        self.sex = sexes.codes([f.sex for f in features])
        addresses = _Vocab()
        self.address = addresses.codes([f.address for f in features])
        self._addresses = _Strings(addresses.strings(), matrices=False)
        cities = _Vocab()
        self.city = cities.codes([f.city for f in features])
        self._cities = _Strings(cities.strings(), matrices=False, similarity=_DENSE)
        postcodes = _Vocab()
        self.postcode = postcodes.codes([f.postcode for f in features])
        self._postcodes = _Strings(postcodes.strings())
        phones = _Vocab()
        self.phone = phones.codes([f.phone for f in features])
        self._phones = _Strings(phones.strings())
        emails = _Vocab()
        self.email = emails.codes([f.email for f in features])
        # Identifiers: one per record is the common case, in arrays; more go one by one.
        self.id_count = np.fromiter(
            (min(len(f.identifiers), 2) for f in features), np.int64, len(features)
        )
        single = [f.identifiers[0] if len(f.identifiers) == 1 else "" for f in features]
        systems, values, whole = _Vocab(), _Vocab(), _Vocab()
        split = [key.partition("|") for key in single]
        self.id_system = systems.codes([s for s, _, _ in split])
        self.id_value = values.codes([v for _, _, v in split])
        self.id_key = whole.codes(single)
        self._id_values = _Strings(values.strings())

    _ARRAY_FORMS: ClassVar[dict[cmp.LevelFn, str]] = {
        cmp.given_name: "given_name_levels",
        cmp.family_name: "family_name_levels",
        cmp.birth_date: "birth_date_levels",
        cmp.sex: "sex_levels",
        cmp.address: "address_levels",
        cmp.city: "city_levels",
        cmp.postcode: "postcode_levels",
        cmp.phone: "phone_levels",
        cmp.email: "email_levels",
        cmp.identifier: "identifier_levels",
    }

    @classmethod
    def supports(cls, model: FellegiSunterModel) -> bool:
        return all(c.level_of in cls._ARRAY_FORMS for c in model.comparisons)

    def weigh(self, a: Codes, b: Codes, exact: Floats) -> tuple[Floats, Levels]:
        """Weights of the pairs (a[k], b[k]) (a: the incoming record), and their comparison
        vectors (row k: each comparison's level). ``exact[k, c]`` is comparison c's
        exact-level weight as a[k] sees it (``model.exact_weights``). A weight is the prior
        plus each comparison's weight, in the model's order: ``weigher``'s float."""
        model = self.model
        total = np.full(len(a), model.prior_weight())
        vectors = np.empty((len(a), len(model.comparisons)), np.int8)
        for c, comparison in enumerate(model.comparisons):
            levels = vectors[:, c] = getattr(self, self._ARRAY_FORMS[comparison.level_of])(a, b)
            # The last entry is NULL's (index -1): it adds 0.0, which leaves a sum as it is.
            table = np.array(
                [*(model.level_weight(c, k) for k in range(len(comparison.levels))), 0.0]
            )
            weights = table[levels]
            if comparison.tf_field:
                weights = np.where(levels == 0, exact[:, c], weights)
            total += weights
        return total, vectors

    def shared_identifier(self, a: Codes, b: Codes) -> npt.NDArray[np.bool_]:
        """Whether the records share an identifier (system and value): the identifier rule."""
        ca, cb = self.id_count[a], self.id_count[b]
        out: npt.NDArray[np.bool_] = (ca == 1) & (cb == 1) & (self.id_key[a] == self.id_key[b])
        features = self.features
        for k in np.flatnonzero((ca > 1) & (cb > 0) | (ca > 0) & (cb > 1)).tolist():
            x, y = features[a[k]].identifiers, features[b[k]].identifiers
            out[k] = not frozenset(x).isdisjoint(y)
        return out

    # Each comparison's levels for arrays of pairs: those of ``linkage.comparisons``.

    def _name_levels(self, own: Codes, phon: Codes, other: Codes, a: Codes, b: Codes) -> Levels:
        """``comparisons._name_level``: exact, Jaro-Winkler >= 0.92, >= 0.80 or a phonetic
        key (stored, or Metaphone) in common, given and family names swapped, else."""
        x, y = own[a], own[b]
        levels = np.full(len(a), 4, np.int8)
        levels[(x == 0) | (y == 0)] = cmp.NULL
        levels[(x == y) & (x != 0)] = 0
        rest = np.flatnonzero((x != y) & (x != 0) & (y != 0))
        x, y = x[rest], y[rest]
        band = _jaro_winkler_band(self._names, x, y, (0.92, 0.80))
        px, py = phon[a[rest]], phon[b[rest]]
        phonetic = ((px != 0) & (px == py)) | (self._metaphone[x] == self._metaphone[y])
        sub = np.where(band == 0, 1, np.where((band == 1) | phonetic, 2, 4)).astype(np.int8)
        # Given and family names swapped: the rest.
        far = np.flatnonzero(sub == 4)
        x, y = x[far], y[far]
        xo, yo = other[a[rest[far]]], other[b[rest[far]]]
        swapped = (x == yo) | (y == xo)
        both = np.flatnonzero(~swapped & (xo != 0) & (yo != 0))
        swapped[both] = _jaro_winkler_band(self._names, x[both], yo[both], (0.92,)) == 0
        sub[far] = np.where(swapped, 3, 4)
        levels[rest] = sub
        return levels

    def given_name_levels(self, a: Codes, b: Codes) -> Levels:
        return self._name_levels(self.given, self.given_phonetic, self.family, a, b)

    def family_name_levels(self, a: Codes, b: Codes) -> Levels:
        return self._name_levels(self.family, self.family_phonetic, self.given, a, b)

    def birth_date_levels(self, a: Codes, b: Codes) -> Levels:
        x, y = self.date[a], self.date[b]
        levels = np.full(len(a), 4, np.int8)
        known = (x != 0) & (y != 0)
        levels[~known] = cmp.NULL
        partial = known & ~(self._date_full[x] & self._date_full[y])
        levels[partial & (self._year[x] == self._year[y])] = cmp.NULL
        full = known & ~partial
        levels[full & (x == y)] = 0
        swapped = (
            full
            & (x != y)
            & (self._year[x] == self._year[y])
            & (self._month[x] == self._day[y])
            & (self._day[x] == self._month[y])
        )
        levels[swapped] = 1
        rest = np.flatnonzero(full & (x != y) & ~swapped)
        levels[rest] = self._date_edits(x[rest], y[rest])
        return levels

    def _date_edits(self, x: Codes, y: Codes) -> Levels:
        """2 for at most one edit between the digits, 3 for two, else 4
        (``comparisons.birth_date``). Equal lengths: h differing positions are h
        substitutions; one edit is h <= 1 or two crossed neighbours; h >= 3 needs two edits
        at least, and an edit changes the character histogram by 2 at most, so histograms
        apart by more than 4 are 3 edits apart or more. The rest (few) go to jellyfish."""
        s = self._digits
        levels = np.full(len(x), 4, np.int8)
        plain = s.plain[x] & s.plain[y] & (s.length[x] == s.length[y])
        idx = np.flatnonzero(plain)
        xs, ys = s.left[x[idx]], s.left[y[idx]]
        differ = xs != ys
        h = differ.sum(axis=1)
        first = differ.argmax(axis=1)
        nxt = np.minimum(first + 1, s.width - 1)
        rows = np.arange(len(idx))
        crossed = (
            (h == 2)
            & differ[rows, nxt]
            & (xs[rows, first] == ys[rows, nxt])
            & (xs[rows, nxt] == ys[rows, first])
        )
        sub = np.where((h <= 1) | crossed, 2, 3).astype(np.int8)
        many = np.flatnonzero(h >= 3)
        hx, hy = s.histogram[x[idx[many]]], s.histogram[y[idx[many]]]
        close = np.abs(hx - hy).sum(axis=1) <= 4
        sub[many[~close]] = 4
        levels[idx] = sub
        ask = np.concatenate([np.flatnonzero(~plain), idx[many[close]]])
        values = s.values
        for k in ask.tolist():
            distance = jellyfish.damerau_levenshtein_distance(values[x[k]], values[y[k]])
            levels[k] = 2 if distance <= 1 else 3 if distance <= 2 else 4
        return levels

    def sex_levels(self, a: Codes, b: Codes) -> Levels:
        return self._exact(self.sex, a, b)

    def email_levels(self, a: Codes, b: Codes) -> Levels:
        return self._exact(self.email, a, b)

    @staticmethod
    def _exact(codes: Codes, a: Codes, b: Codes) -> Levels:
        x, y = codes[a], codes[b]
        levels = np.where(x == y, 0, 1).astype(np.int8)
        levels[(x == 0) | (y == 0)] = cmp.NULL
        return levels

    def address_levels(self, a: Codes, b: Codes) -> Levels:
        x, y = self.address[a], self.address[b]
        levels = np.full(len(a), 3, np.int8)
        levels[(x == 0) | (y == 0)] = cmp.NULL
        levels[(x == y) & (x != 0)] = 0
        rest = np.flatnonzero((x != y) & (x != 0) & (y != 0))
        levels[rest] = 1 + _jaro_winkler_band(self._addresses, x[rest], y[rest], (0.90, 0.75))
        return levels

    def city_levels(self, a: Codes, b: Codes) -> Levels:
        x, y = self.city[a], self.city[b]
        levels = np.zeros(len(a), np.int8)
        levels[(x == 0) | (y == 0)] = cmp.NULL
        rest = np.flatnonzero((x != y) & (x != 0) & (y != 0))
        levels[rest] = 1 + _jaro_winkler_band(self._cities, x[rest], y[rest], (0.88,))
        return levels

    def postcode_levels(self, a: Codes, b: Codes) -> Levels:
        return self._typo(self.postcode, self._postcodes, a, b)

    def phone_levels(self, a: Codes, b: Codes) -> Levels:
        return self._typo(self.phone, self._phones, a, b)

    @staticmethod
    def _typo(codes: Codes, strings: _Strings, a: Codes, b: Codes) -> Levels:
        x, y = codes[a], codes[b]
        levels = np.zeros(len(a), np.int8)
        levels[(x == 0) | (y == 0)] = cmp.NULL
        rest = np.flatnonzero((x != y) & (x != 0) & (y != 0))
        levels[rest] = np.where(_one_edit(strings, x[rest], y[rest]), 1, 2)
        return levels

    def identifier_levels(self, a: Codes, b: Codes) -> Levels:
        ca, cb = self.id_count[a], self.id_count[b]
        levels = np.full(len(a), cmp.NULL, np.int8)
        single = np.flatnonzero((ca == 1) & (cb == 1) & (self.id_system[a] == self.id_system[b]))
        x, y = self.id_value[a[single]], self.id_value[b[single]]
        sub = np.zeros(len(single), np.int8)
        rest = np.flatnonzero(x != y)
        sub[rest] = np.where(_one_edit(self._id_values, x[rest], y[rest]), 1, 2)
        levels[single] = sub
        features = self.features
        for k in np.flatnonzero((ca > 0) & (cb > 0) & ((ca > 1) | (cb > 1))).tolist():
            levels[k] = cmp.identifier(features[a[k]], features[b[k]])
        return levels
