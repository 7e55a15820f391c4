"""Unsupervised training of the Fellegi-Sunter model, the way Splink does it.

1. u from random pairs: almost every random pair is a non-match, so the level frequencies
   over random pairs estimate u directly.
2. m and the prior by expectation-maximisation over blocked pairs, u held fixed. One EM
   session per training blocking rule; the comparisons a rule forces to agree are left out of
   its session (every pair it finds agrees on them, so they carry no information there), and
   the m of each comparison is averaged over the sessions that estimated it.

Pairs are grouped by comparison vector before EM, so an iteration costs the number of
distinct vectors (hundreds), not the number of pairs.

Why not Splink itself: it would bring pandas, DuckDB, sqlglot and altair into the runtime
for about a hundred lines of arithmetic, and the real-time path (one record against its
blocked candidates, scored in-process) would still be ours; Splink's published FEBRL figures
are the yardstick in ``bench/linkage.py`` instead.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from linkage.blocking import TRAINING_RULES, BlockingRule
from linkage.comparisons import COMPARISONS, NULL, Comparison, comparison_vector
from linkage.features import PatientFeatures
from linkage.model import FellegiSunterModel, starting_model

_PSEUDO = 1.0  # Laplace smoothing: a level never seen keeps a small, non-zero probability.


def estimate_u(
    records: Sequence[PatientFeatures],
    comparisons: Sequence[Comparison] = COMPARISONS,
    max_pairs: int = 200_000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """u per comparison level from up to ``max_pairs`` random distinct pairs."""
    if len(records) < 2:
        raise ValueError("u needs at least two records")
    rng = random.Random(seed)
    counts = [[0.0] * len(c.levels) for c in comparisons]
    n = len(records)
    for _ in range(max_pairs):
        i, j = rng.randrange(n), rng.randrange(n)
        if i == j:
            continue
        for k, level in enumerate(comparison_vector(records[i], records[j], comparisons)):
            if level != NULL:
                counts[k][level] += 1
    u: dict[str, list[float]] = {}
    for c, row in zip(comparisons, counts, strict=True):
        total = sum(row) + _PSEUDO * len(row)
        u[c.name] = [(x + _PSEUDO) / total for x in row]
    return u


def blocked_pairs(
    records: Sequence[PatientFeatures], rule: BlockingRule, max_block: int = 200
) -> set[tuple[int, int]]:
    """Index pairs sharing a key of ``rule``; blocks over ``max_block`` are skipped (too
    common to say anything, and quadratic)."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(records):
        if f.placeholder:
            continue
        for key in rule.keys(f):
            blocks[key].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= max_block:
            pairs.update(itertools.combinations(members, 2))
    return pairs


@dataclass(frozen=True, slots=True)
class SessionResult:
    """What one EM session estimated: m for the comparisons it could see, and its matches."""

    rule: str
    m: dict[str, list[float]]
    expected_matches: float
    pairs: int
    iterations: int


def em_session(
    vectors: Counter[tuple[int, ...]],
    model: FellegiSunterModel,
    excluded: set[int],
    max_iterations: int = 50,
    tolerance: float = 1e-5,
    rule: str = "",
) -> SessionResult:
    """EM over grouped comparison vectors with u fixed; returns m for the included comparisons."""
    comparisons = model.comparisons
    included = [k for k in range(len(comparisons)) if k not in excluded]
    m = {c.name: list(model.m[c.name]) for c in comparisons}
    u = model.u
    total = sum(vectors.values())
    lam = 0.5
    iterations = 0
    expected = 0.0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported afterwards)
        sums = {comparisons[k].name: [0.0] * len(comparisons[k].levels) for k in included}
        expected = 0.0
        for vector, count in vectors.items():
            log_odds = math.log(lam / (1.0 - lam))
            for k in included:
                level = vector[k]
                if level != NULL:
                    name = comparisons[k].name
                    log_odds += math.log(max(m[name][level], 1e-12) / max(u[name][level], 1e-12))
            p = 1.0 / (1.0 + math.exp(-min(max(log_odds, -700.0), 700.0)))
            expected += p * count
            for k in included:
                level = vector[k]
                if level != NULL:
                    sums[comparisons[k].name][level] += p * count
        new_lam = min(max(expected / total, 1e-9), 1.0 - 1e-9)
        change = abs(new_lam - lam)
        for name, row in sums.items():
            denominator = sum(row) + _PSEUDO * 1e-3 * len(row)
            new_m = [(x + _PSEUDO * 1e-3) / denominator for x in row]
            change = max(change, *(abs(a - b) for a, b in zip(new_m, m[name], strict=True)))
            m[name] = new_m
        lam = new_lam
        if change < tolerance:
            break
    estimated = {comparisons[k].name: m[comparisons[k].name] for k in included}
    return SessionResult(rule, estimated, expected, total, iterations)


def train(
    records: Sequence[PatientFeatures],
    comparisons: Sequence[Comparison] = COMPARISONS,
    rules: Sequence[BlockingRule] = TRAINING_RULES,
    u_pairs: int = 200_000,
    seed: int = 0,
) -> tuple[FellegiSunterModel, list[SessionResult]]:
    """Train a model on unlabelled records (one data set, or several concatenated).

    The prior is the expected number of matches the richest session found, over all pairs.
    Raises ValueError with fewer than two records.
    """
    model = starting_model(comparisons)
    model.u = estimate_u(records, comparisons, u_pairs, seed)
    names = [c.name for c in comparisons]
    results: list[SessionResult] = []
    for rule in rules:
        pairs = blocked_pairs(records, rule)
        if not pairs:
            continue
        vectors = Counter(comparison_vector(records[i], records[j], comparisons) for i, j in pairs)
        excluded = {names.index(d) for d in rule.depends_on if d in names}
        results.append(em_session(vectors, model, excluded, rule=rule.name))
    for c in comparisons:
        estimates = [r.m[c.name] for r in results if c.name in r.m]
        if estimates:
            model.m[c.name] = [sum(col) / len(estimates) for col in zip(*estimates, strict=True)]
    n = len(records)
    all_pairs = n * (n - 1) / 2
    if results:
        model.prior = min(max(max(r.expected_matches for r in results) / all_pairs, 1e-9), 0.5)
    return model, results
