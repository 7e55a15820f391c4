"""Where the MPI keeps its state: the repository interface, and an in-memory fake beside it.

The interface is narrow on purpose: records with their blocking keys and term counts, links,
golden records, duplicate flags, the event history and the trained model. ``Mpi`` holds all
the rules; a repository only stores. ``MemoryRepository`` is for unit tests and demos;
``linkage.sql.SqlRepository`` is the real one (SQLite or PostgreSQL, the store's database).

Every call happens inside ``transaction()``; a repository is used by one thread at a time
(the linkage consumer), or gets one transaction per thread (the SQL one does).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from linkage.features import PatientFeatures
from linkage.links import DuplicateFlag, DuplicateStatus, Golden, Link, LinkEvent, SourceRecord

TERM_FIELDS: tuple[str, ...] = ("given", "family", "city", "postcode")
"""Features whose value frequencies are counted, for the term-frequency adjustment."""


def duplicate_key(a: str, b: str) -> tuple[str, str]:
    """Duplicate flags are unordered pairs, stored sorted."""
    return (a, b) if a <= b else (b, a)


class LinkageRepository(ABC):
    """Storage of the MPI. Errors are ``caregraph.errors.StoreError``."""

    @abstractmethod
    def transaction(self, write: bool = True) -> AbstractContextManager[None]:
        """All calls inside commit together, or not at all."""

    # records --------------------------------------------------------------------------
    @abstractmethod
    def get_record(self, source_id: str) -> SourceRecord | None: ...

    @abstractmethod
    def get_records(self, source_ids: Iterable[str]) -> list[SourceRecord]: ...

    @abstractmethod
    def get_features(self, source_ids: Iterable[str]) -> dict[str, PatientFeatures]:
        """Only the features: what scoring candidates needs, without the resources."""

    @abstractmethod
    def put_record(self, record: SourceRecord, keys: Sequence[str]) -> None:
        """Insert or replace a record, its blocking keys and its term counts."""

    @abstractmethod
    def candidate_ids(self, keys: Sequence[str], limit_per_key: int) -> set[str]:
        """Records filed under any of ``keys``; at most ``limit_per_key`` per key."""

    @abstractmethod
    def term_counts(self, terms: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """How many records have each (feature, value)."""

    @abstractmethod
    def count_records(self) -> int: ...

    @abstractmethod
    def sample_features(self, limit: int) -> list[PatientFeatures]:
        """Up to ``limit`` records' features (for training on what the index holds)."""

    # links ----------------------------------------------------------------------------
    @abstractmethod
    def links_of(self, source_id: str) -> list[Link]:
        """Every link of a source: its membership and any NO_MATCH links."""

    @abstractmethod
    def memberships(self, source_ids: Iterable[str]) -> dict[str, Link]:
        """The membership link (MATCH or POSSIBLE_MATCH) of each given source."""

    @abstractmethod
    def members(self, golden_id: str) -> list[Link]:
        """The membership links pointing at a golden record."""

    @abstractmethod
    def links_in_state(self, state: str) -> list[Link]: ...

    @abstractmethod
    def put_link(self, link: Link) -> None:
        """Insert or replace the link (source, golden)."""

    @abstractmethod
    def delete_link(self, source_id: str, golden_id: str) -> None: ...

    # golden records -------------------------------------------------------------------
    @abstractmethod
    def get_golden(self, golden_id: str) -> Golden | None: ...

    @abstractmethod
    def put_golden(self, golden: Golden) -> None: ...

    # duplicate flags ------------------------------------------------------------------
    @abstractmethod
    def get_duplicate(self, a: str, b: str) -> DuplicateFlag | None: ...

    @abstractmethod
    def put_duplicate(self, flag: DuplicateFlag) -> None: ...

    @abstractmethod
    def duplicates(self, status: DuplicateStatus) -> list[DuplicateFlag]: ...

    # history --------------------------------------------------------------------------
    @abstractmethod
    def add_event(self, event: LinkEvent) -> int:
        """Append to the history; returns the event's id (increasing)."""

    @abstractmethod
    def events(
        self, *, source_id: str | None = None, golden_id: str | None = None
    ) -> list[LinkEvent]:
        """History entries touching a source or a golden record (as golden or previous
        golden), oldest first."""

    @abstractmethod
    def get_event(self, event_id: int) -> LinkEvent | None: ...

    # bulk (batch linkage) -------------------------------------------------------------
    # Written once here on top of the single-row methods; a backend overrides them with
    # multi-row statements when it can (the SQL one does).
    def add_new_records(self, items: Sequence[tuple[SourceRecord, Sequence[str]]]) -> None:
        """Records known not to be in the index yet, with their blocking keys."""
        for record, keys in items:
            self.put_record(record, keys)

    def put_links(self, links: Sequence[Link]) -> None:
        for link in links:
            self.put_link(link)

    def put_goldens(self, goldens: Sequence[Golden]) -> None:
        for golden in goldens:
            self.put_golden(golden)

    def add_events(self, events: Sequence[LinkEvent]) -> None:
        for event in events:
            self.add_event(event)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Around the bulk writes of one batch: a backend may give its indexes room while
        they are filled (the SQL one, a larger SQLite page cache). Call outside a
        transaction."""
        yield

    # model ----------------------------------------------------------------------------
    @abstractmethod
    def load_model(self) -> dict[str, Any] | None: ...

    @abstractmethod
    def save_model(self, params: dict[str, Any]) -> None: ...


class MemoryRepository(LinkageRepository):
    """Everything in dicts; a transaction snapshots the state and restores it on error."""

    def __init__(self) -> None:
        self._records: dict[str, SourceRecord] = {}
        self._keys: dict[str, list[str]] = {}
        self._blocks: dict[str, dict[str, None]] = defaultdict(dict)
        self._terms: Counter[tuple[str, str]] = Counter()
        self._links: dict[tuple[str, str], Link] = {}
        self._goldens: dict[str, Golden] = {}
        self._duplicates: dict[tuple[str, str], DuplicateFlag] = {}
        self._events: list[LinkEvent] = []
        self._model: dict[str, Any] | None = None

    _STATE = (
        "_records",
        "_keys",
        "_blocks",
        "_terms",
        "_links",
        "_goldens",
        "_duplicates",
        "_events",
        "_model",
    )

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[None]:
        saved = {name: copy.copy(getattr(self, name)) for name in self._STATE}
        saved["_blocks"] = defaultdict(dict, {k: dict(v) for k, v in self._blocks.items()})
        try:
            yield
        except BaseException:
            for name, value in saved.items():
                setattr(self, name, value)
            raise

    def get_record(self, source_id: str) -> SourceRecord | None:
        return self._records.get(source_id)

    def get_records(self, source_ids: Iterable[str]) -> list[SourceRecord]:
        return [self._records[i] for i in source_ids if i in self._records]

    def get_features(self, source_ids: Iterable[str]) -> dict[str, PatientFeatures]:
        return {i: self._records[i].features for i in source_ids if i in self._records}

    def put_record(self, record: SourceRecord, keys: Sequence[str]) -> None:
        old = self._records.get(record.source_id)
        if old is not None:
            for field in TERM_FIELDS:
                value = getattr(old.features, field)
                if value:
                    self._terms[(field, value)] -= 1
            for key in self._keys.get(record.source_id, ()):
                self._blocks[key].pop(record.source_id, None)
        for field in TERM_FIELDS:
            value = getattr(record.features, field)
            if value:
                self._terms[(field, value)] += 1
        for key in keys:
            self._blocks[key][record.source_id] = None
        self._keys[record.source_id] = list(keys)
        self._records[record.source_id] = record

    def candidate_ids(self, keys: Sequence[str], limit_per_key: int) -> set[str]:
        found: set[str] = set()
        for key in keys:
            found.update(list(self._blocks.get(key, {}))[:limit_per_key])
        return found

    def term_counts(self, terms: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return {t: self._terms[t] for t in terms}

    def count_records(self) -> int:
        return len(self._records)

    def sample_features(self, limit: int) -> list[PatientFeatures]:
        return [r.features for r in list(self._records.values())[:limit]]

    def links_of(self, source_id: str) -> list[Link]:
        return [link for (s, _), link in self._links.items() if s == source_id]

    def memberships(self, source_ids: Iterable[str]) -> dict[str, Link]:
        wanted = set(source_ids)
        return {
            link.source_id: link
            for link in self._links.values()
            if link.source_id in wanted and link.is_member
        }

    def members(self, golden_id: str) -> list[Link]:
        return sorted(
            (
                link
                for link in self._links.values()
                if link.golden_id == golden_id and link.is_member
            ),
            key=lambda link: link.source_id,
        )

    def links_in_state(self, state: str) -> list[Link]:
        return sorted(
            (link for link in self._links.values() if link.state == state),
            key=lambda link: (link.golden_id, link.source_id),
        )

    def put_link(self, link: Link) -> None:
        self._links[(link.source_id, link.golden_id)] = link

    def delete_link(self, source_id: str, golden_id: str) -> None:
        self._links.pop((source_id, golden_id), None)

    def get_golden(self, golden_id: str) -> Golden | None:
        return self._goldens.get(golden_id)

    def put_golden(self, golden: Golden) -> None:
        self._goldens[golden.golden_id] = golden

    def get_duplicate(self, a: str, b: str) -> DuplicateFlag | None:
        return self._duplicates.get(duplicate_key(a, b))

    def put_duplicate(self, flag: DuplicateFlag) -> None:
        a, b = duplicate_key(flag.golden_a, flag.golden_b)
        self._duplicates[(a, b)] = replace(flag, golden_a=a, golden_b=b)

    def duplicates(self, status: DuplicateStatus) -> list[DuplicateFlag]:
        return [f for _, f in sorted(self._duplicates.items()) if f.status == status]

    def add_event(self, event: LinkEvent) -> int:
        event_id = len(self._events) + 1
        self._events.append(replace(event, event_id=event_id))
        return event_id

    def events(
        self, *, source_id: str | None = None, golden_id: str | None = None
    ) -> list[LinkEvent]:
        return [
            e
            for e in self._events
            if (source_id is None or e.source_id == source_id)
            and (golden_id is None or golden_id in (e.golden_id, e.previous_golden_id))
        ]

    def get_event(self, event_id: int) -> LinkEvent | None:
        if 1 <= event_id <= len(self._events):
            return self._events[event_id - 1]
        return None

    def load_model(self) -> dict[str, Any] | None:
        return self._model

    def save_model(self, params: dict[str, Any]) -> None:
        self._model = params
