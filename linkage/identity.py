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
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from linkage.errors import InvalidPatient, LinkageNotFound
from linkage.features import normalize_name, normalize_text
from linkage.links import LinkState

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


@dataclass(frozen=True, slots=True)
class EntityLink:
    resource_type: str
    source_id: str
    entity_id: str
    state: LinkState
    rule: str


class IdentityRepository(ABC):
    """Storage of entity links and keys. Errors are ``caregraph.errors.StoreError``."""

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


class MemoryIdentityRepository(IdentityRepository):
    """In dicts, for tests (no rollback: the identity rules raise before they write)."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], EntityLink] = {}
        self._keys: dict[tuple[str, str], EntityKeys] = {}
        self._flags: set[tuple[str, str, str]] = set()

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


class IdentityIndex:
    """Entity resolution for Practitioner, Organization and Device."""

    def __init__(
        self,
        repository: IdentityRepository,
        new_entity_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.repository = repository
        self._new_id = new_entity_id

    def ingest(self, resource: Mapping[str, Any]) -> EntityOutcome:
        """Resolve one resource to its entity (idempotent for the same content).

        Raises InvalidPatient (a MappingError) for unsupported types or a missing id.
        """
        keys = keys_of(resource)
        kind, source_id = str(resource["resourceType"]), resource.get("id")
        if not source_id:
            raise InvalidPatient(f"a {kind} needs an id", location=f"{kind}.id")
        repo = self.repository
        with repo.transaction():
            current = repo.get_link(kind, source_id)
            strong = repo.hits(kind, keys.strong, source_id) if keys.strong else {}
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
                entity, state, rule = self._by_name(kind, keys, source_id, current)
            if entity == "" and current is not None:
                # Nothing else points anywhere: the source stays where it is.
                entity, state, rule = current.entity_id, current.state, current.rule
            created = entity == ""
            if created:
                entity, state, rule = self._new_id(), LinkState.MATCH, "new"
            link = EntityLink(kind, source_id, entity, state, rule)
            repo.put(link, keys)
            for a, b in duplicates:
                repo.flag(kind, a, b)
            return EntityOutcome(link, created, duplicates)

    def _by_name(
        self, kind: str, keys: EntityKeys, source_id: str, current: EntityLink | None
    ) -> tuple[str, LinkState, str]:
        weak = self.repository.hits(kind, keys.weak, source_id) if keys.weak else {}
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

    def entity_of(self, resource_type: str, source_id: str) -> EntityLink:
        """Raises LinkageNotFound."""
        with self.repository.transaction(write=False):
            link = self.repository.get_link(resource_type, source_id)
        if link is None:
            raise LinkageNotFound(f"{resource_type}/{source_id} is not in the identity index")
        return link

    def members(self, resource_type: str, entity_id: str) -> list[EntityLink]:
        with self.repository.transaction(write=False):
            return self.repository.members(resource_type, entity_id)

    def possible_duplicates(self, resource_type: str) -> list[tuple[str, str]]:
        with self.repository.transaction(write=False):
            return self.repository.flags(resource_type)
