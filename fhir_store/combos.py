"""Compound search indexes: one index row per (reference, token, date) of a resource.

Why: the clinical hot query, ``Observation?patient=X&code=C&date=ge<T>&_sort=-date``, has a
selective conjunction (one patient's one vital sign since T) but no single selective
parameter: a patient has thousands of Observations, a LOINC code hundreds of thousands.
Probing every one of a patient's Observations for its code and date costs thousands of
index lookups per search; a compound row ``(patient, code, date, id)`` answers the whole
conjunction with one index range scan, as a compound index does in any database.

Each compound is data (which reference, token and date parameters of which type); the
indexer derives its rows from the rows of the three parameters, and the query builder uses
it only when a search names all three, so results never differ from the plain path (a
test compares both). Sorted by the compound's date, newest first (``_sort=-date``), with a
``ge``/``gt`` date, the page is read off the compound index in date order and the read
stops after the page (``QueryBuilder.compound_page``): no sort of every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Compound:
    """A (reference, token, date) triple of search parameters indexed together."""

    res_type: str
    reference: str
    target_type: str
    token: str
    date: str
    #: Parameters that mean ``reference`` when their value names ``target_type``
    #: (``subject=Patient/x`` is ``patient=x``: the same index rows).
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.reference}|{self.token}|{self.date}"


COMPOUNDS: tuple[Compound, ...] = (
    Compound("Observation", "patient", "Patient", "code", "date", aliases=("subject",)),
)

COLUMNS = ("res_type", "res_id", "combo", "ref_id", "system", "code", "lo", "hi")


def compound_rows(
    compound: Compound, references: list[Row], tokens: list[Row], dates: list[Row]
) -> list[Row]:
    """Rows of ``idx_compound`` for one resource, from its parameter index rows. An
    alias's row naming ``target_type`` is the reference's row (the indexer keeps one of
    the two, see ``indexing._Plan``)."""
    out = []
    names = (compound.reference, *compound.aliases)
    for ref in references:
        if ref[2] not in names or ref[3] != compound.target_type:
            continue
        for token in tokens:
            if token[2] != compound.token:
                continue
            for date in dates:
                if date[2] == compound.date:
                    out.append(
                        (
                            ref[0],
                            ref[1],
                            compound.name,
                            ref[4],
                            token[3],
                            token[4],
                            date[3],
                            date[4],
                        )
                    )
    return out


def for_type(res_type: str) -> list[Compound]:
    return [c for c in COMPOUNDS if c.res_type == res_type]
