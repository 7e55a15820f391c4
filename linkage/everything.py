"""``Patient/[golden]/$everything``: the record across every linked identity.

A golden Patient's compartment is the union of its own (the store's ``$everything`` of the
golden id) and that of every source Patient confirmed in it (MATCH; a POSSIBLE_MATCH waits
for review and may be someone else, as in ``security.identities``). Each identity's
compartment comes from the store's public ``Searching.everything``, which orders by
(type, id); the identities' streams are merged in that order, and a resource in two
compartments (an Observation naming two of the identities) appears once. Paging is over
the merged order: ``_offset``/``_count`` as the store reads them; ``_type`` and ``_since``
go to every identity's query.

``total`` is exact when it can be had cheaply: one identity (the store's count), or when
the merged stream was read to its end anyway, or when the identities hold at most
``exact_total_limit`` resources together (then it is counted by reading the keys). Past
that a resource in several compartments would make the sum wrong, so ``total`` is left
out, which FHIR allows for a searchset.

Any other Patient (a source, or one the MPI never saw) gets the store's own answer.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fhir_store.errors import InvalidSearch
from fhir_store.search import DEFAULT_COUNT
from fhir_store.searching import SearchPage
from linkage.errors import LinkageNotFound
from linkage.links import LinkState
from linkage.mpi import Mpi

if TYPE_CHECKING:
    from fhir_store.records import Stored
    from fhir_store.store import FhirStore

MAX_COUNT = 1000  # the store's own cap on ``_count``
PASSED_ON = ("_type", "_since")


@dataclass(frozen=True, slots=True)
class _Paging:
    count: int
    offset: int
    filters: list[tuple[str, str]]


def _paging(params: Sequence[tuple[str, str]]) -> _Paging:
    """``_count``, ``_offset`` and the filters passed on; raises InvalidSearch (400) as the
    store does for a count or offset that is not a non-negative integer."""
    count, offset = DEFAULT_COUNT, 0
    filters: list[tuple[str, str]] = []
    for name, raw in params:
        if name in ("_count", "_offset"):
            if not raw.isdigit():
                raise InvalidSearch(f"{name} must be a non-negative integer", expression=name)
            if name == "_count":
                count = min(int(raw), MAX_COUNT)
            else:
                offset = int(raw)
        elif name in PASSED_ON:
            filters.append((name, raw))
    return _Paging(count, offset, filters)


class _Stream:
    """One identity's compartment, read in chunks in the store's (type, id) order."""

    def __init__(self, store: FhirStore, patient_id: str, filters: list[tuple[str, str]]) -> None:
        self.store = store
        self.patient_id = patient_id
        self.filters = filters
        self.total: int | None = None
        self.template: SearchPage | None = None

    def chunk(self, offset: int, size: int) -> SearchPage:
        params = [*self.filters, ("_count", str(size)), ("_offset", str(offset))]
        page = self.store.searching.everything(self.patient_id, params)
        if self.template is None:
            self.template, self.total = page, page.total
        return page

    def items(self, first: int) -> Iterator[tuple[tuple[str, str], Stored]]:
        """Every resource, the first chunk ``first`` long (a page needs no more than its
        offset plus its count from each identity), later ones as long as the store allows."""
        offset, size = 0, max(1, min(first, MAX_COUNT))
        while True:
            page = self.chunk(offset, size)
            for stored in page.matches:
                yield (stored.type, stored.id), stored
            if not page.has_next:
                return
            offset += len(page.matches)
            size = MAX_COUNT


def _merged(streams: list[Iterator[tuple[tuple[str, str], Stored]]]) -> Iterator[Stored]:
    last: tuple[str, str] | None = None
    for key, stored in heapq.merge(*streams, key=lambda item: item[0]):
        if key != last:
            last = key
            yield stored


class LinkedEverything:
    """``$everything`` over a golden record's linked identities (see the module docstring)."""

    def __init__(self, mpi: Mpi, store: FhirStore, *, exact_total_limit: int = 10_000) -> None:
        self.mpi = mpi
        self.store = store
        self.exact_total_limit = exact_total_limit

    def identities(self, patient_id: str) -> list[str] | None:
        """The golden id and its confirmed sources, or None when ``patient_id`` is not a
        golden record. A golden record merged into another has no members left: itself."""
        try:
            golden, members = self.mpi.golden(patient_id)
        except LinkageNotFound:
            return None
        sources = sorted(m.source_id for m in members if m.state == LinkState.MATCH)
        return [golden.golden_id, *(s for s in sources if s != golden.golden_id)]

    def everything(self, patient_id: str, params: Sequence[tuple[str, str]]) -> SearchPage:
        """The page of ``Patient/[patient_id]/$everything``.

        Raises:
            ResourceNotFound, ResourceGone: not golden, and the store has no such Patient.
            InvalidSearch: a ``_count``, ``_offset``, ``_type`` or ``_since`` it refuses.
        """
        ids = self.identities(patient_id)
        if ids is None:
            self.store.read("Patient", patient_id)
            return self.store.searching.everything(patient_id, params)
        return self._linked(ids, _paging(params))

    def _linked(self, ids: list[str], paging: _Paging) -> SearchPage:
        wanted = paging.offset + paging.count + 1  # one more tells whether a next page exists
        streams = [_Stream(self.store, i, paging.filters) for i in ids]
        merged = _merged([s.items(wanted) for s in streams])
        matches: list[Stored] = []
        seen = 0
        for stored in merged:
            if seen >= paging.offset + paging.count:
                seen += 1
                break
            if seen >= paging.offset:
                matches.append(stored)
            seen += 1
        has_next = seen > paging.offset + paging.count
        totals = [s.total or 0 for s in streams]
        total: int | None
        if len(streams) == 1:
            total = totals[0]
        elif not has_next:
            total = seen
        elif sum(totals) <= self.exact_total_limit:
            total = seen + sum(1 for _ in merged)
        else:
            total = None
        template = streams[0].template
        assert template is not None  # every stream reads its first chunk above
        query = replace(
            template.query,
            count=paging.count,
            offset=paging.offset,
            used=[*paging.filters, ("_count", str(paging.count))],
        )
        return SearchPage(query, matches, [], total, has_next)
