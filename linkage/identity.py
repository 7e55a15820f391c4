"""Identity of staff, institutions and devices: one entity per real Practitioner,
Organization or Device, however many sources describe it.

Deterministic rules, because these resources carry good identifiers and few errors:

- strong keys: any identifier (``system|value``; for a Practitioner also the licence
  numbers in ``qualification.identifier``); for a Device its UDI device identifier (or the
  human-readable carrier), and manufacturer + model + serial number together.
- weak keys: the normalized name of a Practitioner (family + given) or of an Organization
  (its name and each alias).

A strong key shared with one entity is a MATCH; shared with several, a POSSIBLE_MATCH to the
first and the entities flagged as possible duplicates. Without a strong hit, a weak hit on
one entity whose identifiers do not contradict (same system, another value) is a MATCH for
an Organization (names of institutions are specific) and a POSSIBLE_MATCH for a
Practitioner (two doctors may share a name). Otherwise a new entity.

Manual decisions, as for patients (``linkage.mpi``): a person may link a source to an entity,
unlink it (the source gets an entity of its own and a NO_MATCH to the old one), merge two
entities and undo the last merge. A manual link (origin MANUAL) is never changed by an
automatic decision, and an entity a source was declared NOT to be is never proposed to it
again. Every change, automatic or manual, is in the history with who, when and the rule.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from linkage.errors import InvalidLinkOperation, InvalidPatient, LinkageNotFound
from linkage.features import normalize_name, normalize_text
from linkage.links import LinkOrigin, LinkState

RESOURCE_TYPES = ("Practitioner", "Organization", "Device")


@dataclass(frozen=True, slots=True)
class EntityKeys:
    strong: tuple[str, ...]
    weak: tuple[str, ...]


def _spelling(text: str) -> str:
    """Folded text with the ae/oe/ue spellings of ä/ö/ü merged into the plain vowel, since
    folding turns "Müller" into "muller" but a registry wrote "Mueller" (applied to both
    sides of a comparison, so only equality matters)."""
    return text.replace("ae", "a").replace("oe", "o").replace("ue", "u")


def _identifiers(items: Sequence[Mapping[str, Any]] | None) -> list[str]:
    return [
        f"id:{i['system']}|{str(i['value']).strip()}"
        for i in items or ()
        if i.get("system") and i.get("value")
    ]


def keys_of(resource: Mapping[str, Any]) -> EntityKeys:
    """Strong and weak keys of a Practitioner, Organization or Device (as a dict).

    Raises InvalidPatient (a MappingError) for other resource types.
    """
    kind = resource.get("resourceType")
    strong = _identifiers(resource.get("identifier"))
    weak: list[str] = []
    if kind == "Practitioner":
        for q in resource.get("qualification") or ():
            strong += _identifiers(q.get("identifier"))
        for name in resource.get("name") or ():
            family = _spelling(normalize_name(name.get("family")))
            given = _spelling(normalize_name((name.get("given") or [""])[0]))
            if family and given:
                weak.append(f"name:{family}|{given}")
    elif kind == "Organization":
        for text in [resource.get("name"), *(resource.get("alias") or ())]:
            name = _spelling(normalize_text(text))
            if name:
                weak.append(f"name:{name}")
    elif kind == "Device":
        for carrier in resource.get("udiCarrier") or ():
            if carrier.get("deviceIdentifier"):
                strong.append(f"udi-di:{carrier['deviceIdentifier'].strip()}")
            if carrier.get("carrierHRF"):
                strong.append(f"udi:{carrier['carrierHRF'].strip()}")
        maker = normalize_text(resource.get("manufacturer"))
        model = normalize_text(resource.get("modelNumber"))
        serial = normalize_text(resource.get("serialNumber"))
        if maker and model and serial:
            strong.append(f"mms:{maker}|{model}|{serial}")
    else:
        raise InvalidPatient(f"no identity rules for {kind!r}", location="resourceType")
    return EntityKeys(tuple(sorted(set(strong))), tuple(sorted(set(weak))))


MANUAL_RULE = "manual"


@dataclass(frozen=True, slots=True)
class EntityLink:
    resource_type: str
    source_id: str
    entity_id: str
    state: LinkState
    rule: str
    origin: LinkOrigin = LinkOrigin.AUTO

    def to_json(self) -> dict[str, Any]:
        return {
            "resource_type": self.resource_type,
            "source_id": self.source_id,
            "entity_id": self.entity_id,
            "state": self.state.value,
            "rule": self.rule,
            "origin": self.origin.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntityLink:
        return cls(
            data["resource_type"],
            data["source_id"],
            data["entity_id"],
            LinkState(data["state"]),
            data["rule"],
            LinkOrigin(data["origin"]),
        )


@dataclass(frozen=True, slots=True)
class EntityEvent:
    """One entry of an entity's history: who or what did what, when, by which rule."""

    at: datetime
    actor: str
    action: str
    resource_type: str
    source_id: str | None = None
    entity_id: str | None = None
    previous_entity_id: str | None = None
    state: LinkState | None = None
    origin: LinkOrigin | None = None
    rule: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "resource_type": self.resource_type,
            "source_id": self.source_id,
            "entity_id": self.entity_id,
            "previous_entity_id": self.previous_entity_id,
            "state": self.state.value if self.state else None,
            "origin": self.origin.value if self.origin else None,
            "rule": self.rule,
            "detail": self.detail,
        }


class IdentityRepository(ABC):
    """Storage of entity links and keys, NO_MATCH decisions, merges and the history.
    Errors are ``caregraph.errors.StoreError``."""

    @abstractmethod
    def transaction(self, write: bool = True) -> AbstractContextManager[None]: ...

    @abstractmethod
    def get_link(self, resource_type: str, source_id: str) -> EntityLink | None: ...

    @abstractmethod
    def put(self, link: EntityLink, keys: EntityKeys) -> None:
        """Insert or replace the link and the keys of a source."""

    @abstractmethod
    def hits(
        self, resource_type: str, keys: Sequence[str], exclude_source: str
    ) -> dict[str, set[str]]:
        """Entity ids of the other sources filed under each key."""

    @abstractmethod
    def keys_of_entity(self, resource_type: str, entity_id: str) -> set[str]: ...

    @abstractmethod
    def members(self, resource_type: str, entity_id: str) -> list[EntityLink]: ...

    @abstractmethod
    def flag(self, resource_type: str, a: str, b: str) -> None:
        """Two entities that are possibly one."""

    @abstractmethod
    def flags(self, resource_type: str) -> list[tuple[str, str]]: ...

    @abstractmethod
    def unflag(self, resource_type: str, a: str, b: str) -> None: ...

    @abstractmethod
    def put_link(self, link: EntityLink) -> None:
        """Replace the link of a source that is in the index (its keys stay)."""

    @abstractmethod
    def no_match(self, resource_type: str, source_id: str) -> set[str]:
        """The entities a person declared this source NOT to be."""

    @abstractmethod
    def put_no_match(self, resource_type: str, source_id: str, entity_id: str) -> None: ...

    @abstractmethod
    def delete_no_match(self, resource_type: str, source_id: str, entity_id: str) -> None: ...

    @abstractmethod
    def no_match_to(self, resource_type: str, entity_id: str) -> list[str]:
        """The sources declared NOT to be this entity."""

    @abstractmethod
    def merged_into(self, resource_type: str, entity_id: str) -> tuple[str, int] | None:
        """(entity it was merged into, the merge event's id), or None when not merged."""

    @abstractmethod
    def put_merged(self, resource_type: str, entity_id: str, into: str, event_id: int) -> None: ...

    @abstractmethod
    def delete_merged(self, resource_type: str, entity_id: str) -> None: ...

    @abstractmethod
    def add_event(self, event: EntityEvent) -> int:
        """Append to the history; returns the event id."""

    @abstractmethod
    def events(
        self, resource_type: str, *, source_id: str | None = None, entity_id: str | None = None
    ) -> list[EntityEvent]:
        """Oldest first; ``entity_id`` also finds events that moved sources away from it."""

    @abstractmethod
    def get_event(self, event_id: int) -> EntityEvent | None: ...


class MemoryIdentityRepository(IdentityRepository):
    """In dicts, for tests (no rollback: the identity rules raise before they write)."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], EntityLink] = {}
        self._keys: dict[tuple[str, str], EntityKeys] = {}
        self._flags: set[tuple[str, str, str]] = set()
        self._no_match: set[tuple[str, str, str]] = set()
        self._merged: dict[tuple[str, str], tuple[str, int]] = {}
        self._events: list[EntityEvent] = []

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[None]:
        yield

    def get_link(self, resource_type: str, source_id: str) -> EntityLink | None:
        return self._links.get((resource_type, source_id))

    def put(self, link: EntityLink, keys: EntityKeys) -> None:
        self._links[(link.resource_type, link.source_id)] = link
        self._keys[(link.resource_type, link.source_id)] = keys

    def hits(
        self, resource_type: str, keys: Sequence[str], exclude_source: str
    ) -> dict[str, set[str]]:
        wanted = set(keys)
        found: dict[str, set[str]] = {}
        for (kind, source_id), k in self._keys.items():
            if kind != resource_type or source_id == exclude_source:
                continue
            for key in wanted.intersection(k.strong + k.weak):
                found.setdefault(key, set()).add(self._links[(kind, source_id)].entity_id)
        return found

    def keys_of_entity(self, resource_type: str, entity_id: str) -> set[str]:
        out: set[str] = set()
        for (kind, source_id), link in self._links.items():
            if kind == resource_type and link.entity_id == entity_id:
                out.update(self._keys[(kind, source_id)].strong)
        return out

    def members(self, resource_type: str, entity_id: str) -> list[EntityLink]:
        return sorted(
            (
                x
                for x in self._links.values()
                if (x.resource_type, x.entity_id) == (resource_type, entity_id)
            ),
            key=lambda x: x.source_id,
        )

    def flag(self, resource_type: str, a: str, b: str) -> None:
        self._flags.add((resource_type, *sorted((a, b))))  # type: ignore[arg-type]

    def flags(self, resource_type: str) -> list[tuple[str, str]]:
        return sorted((a, b) for kind, a, b in self._flags if kind == resource_type)

    def unflag(self, resource_type: str, a: str, b: str) -> None:
        x, y = sorted((a, b))
        self._flags.discard((resource_type, x, y))

    def put_link(self, link: EntityLink) -> None:
        self._links[(link.resource_type, link.source_id)] = link

    def no_match(self, resource_type: str, source_id: str) -> set[str]:
        return {e for kind, s, e in self._no_match if (kind, s) == (resource_type, source_id)}

    def put_no_match(self, resource_type: str, source_id: str, entity_id: str) -> None:
        self._no_match.add((resource_type, source_id, entity_id))

    def delete_no_match(self, resource_type: str, source_id: str, entity_id: str) -> None:
        self._no_match.discard((resource_type, source_id, entity_id))

    def no_match_to(self, resource_type: str, entity_id: str) -> list[str]:
        return sorted(s for kind, s, e in self._no_match if (kind, e) == (resource_type, entity_id))

    def merged_into(self, resource_type: str, entity_id: str) -> tuple[str, int] | None:
        return self._merged.get((resource_type, entity_id))

    def put_merged(self, resource_type: str, entity_id: str, into: str, event_id: int) -> None:
        self._merged[(resource_type, entity_id)] = (into, event_id)

    def delete_merged(self, resource_type: str, entity_id: str) -> None:
        self._merged.pop((resource_type, entity_id), None)

    def add_event(self, event: EntityEvent) -> int:
        event_id = len(self._events) + 1
        self._events.append(replace(event, event_id=event_id))
        return event_id

    def events(
        self, resource_type: str, *, source_id: str | None = None, entity_id: str | None = None
    ) -> list[EntityEvent]:
        return [
            e
            for e in self._events
            if e.resource_type == resource_type
            and (source_id is None or e.source_id == source_id)
            and (entity_id is None or entity_id in (e.entity_id, e.previous_entity_id))
        ]

    def get_event(self, event_id: int) -> EntityEvent | None:
        return self._events[event_id - 1] if 0 < event_id <= len(self._events) else None


@dataclass(frozen=True, slots=True)
class EntityOutcome:
    link: EntityLink
    created: bool
    duplicates: tuple[tuple[str, str], ...] = ()


def _systems(strong: Sequence[str]) -> dict[str, str]:
    """``id:system|value`` keys by system (only identifiers have systems)."""
    out: dict[str, str] = {}
    for key in strong:
        if key.startswith("id:"):
            system, _, value = key[3:].partition("|")
            out[system] = value
    return out


def _contradicts(mine: Sequence[str], theirs: set[str]) -> bool:
    """Both carry an identifier of one system, with different values: not the same one."""
    a, b = _systems(mine), _systems(sorted(theirs))
    return any(a[s] != b[s] for s in a.keys() & b.keys())


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IdentityIndex:
    """Entity resolution for Practitioner, Organization and Device, with manual decisions."""

    def __init__(
        self,
        repository: IdentityRepository,
        new_entity_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.repository = repository
        self._new_id = new_entity_id
        self._clock = clock

    def batch(self) -> AbstractContextManager[None]:
        """One write transaction for several ``ingest`` calls of this thread: they see each
        other's writes and commit together; a failure rolls back them all."""
        return self.repository.transaction()

    def ingest(self, resource: Mapping[str, Any], actor: str = "identity") -> EntityOutcome:
        """Resolve one resource to its entity (idempotent for the same content).

        A source a person linked (origin MANUAL) stays where that person put it; entities
        the source was declared not to be are never proposed.
        Raises InvalidPatient (a MappingError) for unsupported types or a missing id.
        """
        keys = keys_of(resource)
        kind, source_id = str(resource["resourceType"]), resource.get("id")
        if not source_id:
            raise InvalidPatient(f"a {kind} needs an id", location=f"{kind}.id")
        repo = self.repository
        with repo.transaction():
            current = repo.get_link(kind, source_id)
            if current is not None and current.origin == LinkOrigin.MANUAL:
                repo.put(current, keys)  # new keys, same decision
                return EntityOutcome(current, False)
            excluded = repo.no_match(kind, source_id)
            strong = self._hits(kind, keys.strong, source_id, excluded)
            strong_entities = sorted({e for es in strong.values() for e in es})
            duplicates: tuple[tuple[str, str], ...] = ()
            if current is not None and current.entity_id in strong_entities:
                strong_entities.remove(current.entity_id)
                strong_entities.insert(0, current.entity_id)
            if len(strong_entities) == 1:
                entity, state = strong_entities[0], LinkState.MATCH
                rule = next(k for k, es in sorted(strong.items()) if entity in es)
            elif strong_entities:
                entity, state, rule = strong_entities[0], LinkState.POSSIBLE_MATCH, "shared keys"
                duplicates = tuple(
                    (min(entity, other), max(entity, other)) for other in strong_entities[1:]
                )
            else:
                entity, state, rule = self._by_name(kind, keys, source_id, current, excluded)
            if entity == "" and current is not None and current.entity_id not in excluded:
                # Nothing else points anywhere: the source stays where it is.
                entity, state, rule = current.entity_id, current.state, current.rule
            created = entity == ""
            if created:
                entity, state, rule = self._new_id(), LinkState.MATCH, "new"
            link = EntityLink(kind, source_id, entity, state, rule)
            repo.put(link, keys)
            for a, b in duplicates:
                repo.flag(kind, a, b)
            if link != current:
                if current is None:
                    action = "auto-link"
                elif current.entity_id != entity:
                    action = "auto-relink"
                else:
                    action = "update"
                previous = current.entity_id if current and current.entity_id != entity else None
                self._event(
                    actor,
                    action,
                    link,
                    previous=previous,
                    detail={"new_entity": created, "duplicates": [list(d) for d in duplicates]},
                )
            return EntityOutcome(link, created, duplicates)

    def _hits(
        self, kind: str, keys: Sequence[str], source_id: str, excluded: set[str]
    ) -> dict[str, set[str]]:
        if not keys:
            return {}
        hits = self.repository.hits(kind, keys, source_id)
        if excluded:
            hits = {k: es - excluded for k, es in hits.items() if es - excluded}
        return hits

    def _by_name(
        self,
        kind: str,
        keys: EntityKeys,
        source_id: str,
        current: EntityLink | None,
        excluded: set[str],
    ) -> tuple[str, LinkState, str]:
        weak = self._hits(kind, keys.weak, source_id, excluded)
        entities = sorted({e for es in weak.values() for e in es})
        fitting = [
            e
            for e in entities
            if not _contradicts(keys.strong, self.repository.keys_of_entity(kind, e))
        ]
        if current is not None and current.entity_id in fitting:
            fitting = [current.entity_id]
        if len(fitting) != 1:
            return "", LinkState.MATCH, ""
        rule = next(k for k, es in sorted(weak.items()) if fitting[0] in es)
        state = LinkState.MATCH if kind == "Organization" else LinkState.POSSIBLE_MATCH
        return fitting[0], state, rule

    # manual decisions ----------------------------------------------------------------
    def link(
        self,
        resource_type: str,
        source_id: str,
        entity_id: str,
        actor: str,
        reason: str | None = None,
    ) -> EntityLink:
        """A person says: this source is that entity (MATCH, MANUAL). Also confirms a
        POSSIBLE_MATCH, and overrules a NO_MATCH to that entity.

        Raises LinkageNotFound (no such source or entity), InvalidLinkOperation (the entity
        was merged into another: link to that one).
        """
        repo = self.repository
        with repo.transaction():
            current = self._source(resource_type, source_id)
            self._active_entity(resource_type, entity_id)
            repo.delete_no_match(resource_type, source_id, entity_id)
            link = EntityLink(
                resource_type, source_id, entity_id, LinkState.MATCH, MANUAL_RULE, LinkOrigin.MANUAL
            )
            repo.put_link(link)
            previous = current.entity_id if current.entity_id != entity_id else None
            self._event(actor, "link", link, previous=previous, detail={"reason": reason})
            return link

    def unlink(
        self,
        resource_type: str,
        source_id: str,
        entity_id: str,
        actor: str,
        reason: str | None = None,
    ) -> EntityLink:
        """A person says: this source is not that entity. The source gets an entity of its
        own (MATCH, MANUAL) and a NO_MATCH to the old one, so no automatic decision puts it
        back. Raises LinkageNotFound, InvalidLinkOperation (not linked to that entity)."""
        repo = self.repository
        with repo.transaction():
            current = self._source(resource_type, source_id)
            if current.entity_id != entity_id:
                raise InvalidLinkOperation(
                    f"{resource_type}/{source_id} is linked to {current.entity_id}, not {entity_id}"
                )
            repo.put_no_match(resource_type, source_id, entity_id)
            link = EntityLink(
                resource_type,
                source_id,
                self._new_id(),
                LinkState.MATCH,
                MANUAL_RULE,
                LinkOrigin.MANUAL,
            )
            repo.put_link(link)
            self._event(actor, "unlink", link, previous=entity_id, detail={"reason": reason})
            return link

    def merge(
        self,
        resource_type: str,
        from_entity: str,
        into_entity: str,
        actor: str,
        reason: str | None = None,
    ) -> int:
        """Merge one entity into another; returns the event id that ``unmerge`` undoes.

        Every member moves (confirmed members become MANUAL), the old links are kept in the
        event, a NO_MATCH to ``from_entity`` now means one to ``into_entity``, and a
        possible-duplicate flag between the two is resolved.
        Raises LinkageNotFound, InvalidLinkOperation (the same entity, or merged already).
        """
        repo = self.repository
        with repo.transaction():
            if from_entity == into_entity:
                raise InvalidLinkOperation("cannot merge an entity into itself")
            moved = self._active_entity(resource_type, from_entity)
            into_members = {m.source_id for m in self._active_entity(resource_type, into_entity)}
            for link in moved:
                confirmed = link.state == LinkState.MATCH
                repo.put_link(
                    replace(
                        link,
                        entity_id=into_entity,
                        origin=LinkOrigin.MANUAL if confirmed else link.origin,
                    )
                )
            carried = []
            for source_id in repo.no_match_to(resource_type, from_entity):
                if source_id in into_members:
                    continue
                if into_entity not in repo.no_match(resource_type, source_id):
                    repo.put_no_match(resource_type, source_id, into_entity)
                    carried.append(source_id)
            flagged = (min(from_entity, into_entity), max(from_entity, into_entity)) in set(
                repo.flags(resource_type)
            )
            repo.unflag(resource_type, from_entity, into_entity)
            event_id = self._event(
                actor,
                "merge",
                None,
                resource_type=resource_type,
                entity_id=into_entity,
                previous=from_entity,
                detail={
                    "reason": reason,
                    "moved": [m.to_json() for m in moved],
                    "carried_no_match": carried,
                    "was_flagged": flagged,
                },
            )
            repo.put_merged(resource_type, from_entity, into_entity, event_id)
            return event_id

    def unmerge(
        self, resource_type: str, from_entity: str, actor: str, reason: str | None = None
    ) -> int:
        """Undo the last merge of ``from_entity``: its members' links come back exactly as
        they were, and both sides get NO_MATCH decisions so nothing re-merges them
        automatically. A member a person relinked since stays put (``skipped``).
        Returns the event id. Raises InvalidLinkOperation (not merged)."""
        repo = self.repository
        with repo.transaction():
            merged = repo.merged_into(resource_type, from_entity)
            merge_event = repo.get_event(merged[1]) if merged else None
            if merged is None or merge_event is None:
                raise InvalidLinkOperation(f"{resource_type} entity {from_entity} is not merged")
            into = merged[0]
            restored, skipped = [], []
            for data in merge_event.detail["moved"]:
                before = EntityLink.from_json(data)
                now = repo.get_link(resource_type, before.source_id)
                if now is None or now.entity_id != into:
                    skipped.append(before.source_id)
                    continue
                repo.put_link(before)
                repo.put_no_match(resource_type, before.source_id, into)
                restored.append(before.source_id)
            for source_id in merge_event.detail["carried_no_match"]:
                repo.delete_no_match(resource_type, source_id, into)
            for member in repo.members(resource_type, into):
                repo.put_no_match(resource_type, member.source_id, from_entity)
            repo.delete_merged(resource_type, from_entity)
            return self._event(
                actor,
                "unmerge",
                None,
                resource_type=resource_type,
                entity_id=from_entity,
                previous=into,
                detail={
                    "reason": reason,
                    "merge_event": merge_event.event_id,
                    "restored": restored,
                    "skipped": skipped,
                },
            )

    # reading -------------------------------------------------------------------------
    def entity_of(self, resource_type: str, source_id: str) -> EntityLink:
        """Raises LinkageNotFound."""
        with self.repository.transaction(write=False):
            return self._source(resource_type, source_id)

    def members(self, resource_type: str, entity_id: str) -> list[EntityLink]:
        with self.repository.transaction(write=False):
            return self.repository.members(resource_type, entity_id)

    def no_match(self, resource_type: str, source_id: str) -> list[str]:
        """The entities a person declared this source not to be."""
        with self.repository.transaction(write=False):
            return sorted(self.repository.no_match(resource_type, source_id))

    def merged_into(self, resource_type: str, entity_id: str) -> str | None:
        with self.repository.transaction(write=False):
            merged = self.repository.merged_into(resource_type, entity_id)
        return merged[0] if merged else None

    def possible_duplicates(self, resource_type: str) -> list[tuple[str, str]]:
        with self.repository.transaction(write=False):
            return self.repository.flags(resource_type)

    def history(
        self, resource_type: str, *, source_id: str | None = None, entity_id: str | None = None
    ) -> list[EntityEvent]:
        """The history of a source or of an entity (also merges into and away from it)."""
        with self.repository.transaction(write=False):
            return self.repository.events(resource_type, source_id=source_id, entity_id=entity_id)

    # internals -----------------------------------------------------------------------
    def _source(self, resource_type: str, source_id: str) -> EntityLink:
        link = self.repository.get_link(resource_type, source_id)
        if link is None:
            raise LinkageNotFound(f"{resource_type}/{source_id} is not in the identity index")
        return link

    def _active_entity(self, resource_type: str, entity_id: str) -> list[EntityLink]:
        """The members of an entity that exists and was not merged away."""
        merged = self.repository.merged_into(resource_type, entity_id)
        if merged is not None:
            raise InvalidLinkOperation(
                f"{resource_type} entity {entity_id} was merged into {merged[0]}"
            )
        members = self.repository.members(resource_type, entity_id)
        if not members:
            raise LinkageNotFound(f"no {resource_type} entity {entity_id}")
        return members

    def _event(
        self,
        actor: str,
        action: str,
        link: EntityLink | None,
        *,
        resource_type: str = "",
        entity_id: str | None = None,
        previous: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        return self.repository.add_event(
            EntityEvent(
                self._clock(),
                actor,
                action,
                link.resource_type if link else resource_type,
                link.source_id if link else None,
                link.entity_id if link else entity_id,
                previous,
                link.state if link else None,
                link.origin if link else None,
                link.rule if link else None,
                dict(detail or {}),
            )
        )
