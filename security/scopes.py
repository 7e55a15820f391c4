"""SMART App Launch scopes (v2 ``patient/Observation.rs``, v1 ``user/*.read``) as sets.

A scope grants permissions (``c``reate, ``r``ead, ``u``pdate, ``d``elete, ``s``earch) on a
resource type, or every type (``*``), in a context: ``patient`` (only the token's patient),
``user`` (what the user may see) or ``system`` (a backend service). v1 scopes are aliases:
``read`` = ``rs``, ``write`` = ``cud``, ``*`` = ``cruds``.

Granular v2 scopes (``patient/Observation.rs?category=...``) grant a subset of a type that
caregraph does not evaluate; rather than grant the whole type they grant nothing (fail
closed). Unknown scopes (``openid``, ``fhirUser``, ``launch/patient``) grant no data access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/([A-Z][A-Za-z]*|\*)\.([a-z*]+)$")


class Context(StrEnum):
    PATIENT = "patient"
    USER = "user"
    SYSTEM = "system"


class Interaction(StrEnum):
    """FHIR interactions, each needing one permission letter."""

    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    SEARCH = "search"

    @property
    def permission(self) -> str:
        return {"create": "c", "read": "r", "update": "u", "delete": "d", "search": "s"}[self]


@dataclass(frozen=True, slots=True)
class Scope:
    """One parsed resource scope."""

    context: Context
    resource_type: str  # a type name, or "*"
    permissions: frozenset[str]

    def allows(self, resource_type: str, permission: str) -> bool:
        return permission in self.permissions and self.resource_type in ("*", resource_type)


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None for one that grants no resource access.

    v2 permissions must be a subset of ``cruds`` in that order (``rs``, not ``sr``); a
    malformed one grants nothing instead of being guessed at.
    """
    match = _SCOPE.match(text)
    if match is None:
        return None
    context, resource_type, perms = match.groups()
    if perms in _V1:
        letters = _V1[perms]
    else:
        order = [PERMISSIONS.find(p) for p in perms]
        if -1 in order or order != sorted(set(order)):
            return None
        letters = perms
    return Scope(Context(context), resource_type, frozenset(letters))


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The resource scopes of a token; ``raw`` keeps every scope string as granted."""

    scopes: tuple[Scope, ...]
    raw: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ScopeSet:
        raw = tuple(s for s in text.split() if s)
        return cls(tuple(p for p in map(parse_scope, raw) if p is not None), raw)

    def allows(
        self, resource_type: str, permission: str, contexts: frozenset[Context] | None = None
    ) -> bool:
        """Whether some scope (in one of ``contexts``, default any) grants the permission."""
        return any(
            s.allows(resource_type, permission) and (contexts is None or s.context in contexts)
            for s in self.scopes
        )

    def contexts(self) -> frozenset[Context]:
        return frozenset(s.context for s in self.scopes)

    @property
    def patient_only(self) -> bool:
        """True when every resource scope is a ``patient/`` scope: the token can only ever
        see its patient's compartment, whatever else it carries."""
        return bool(self.scopes) and self.contexts() == {Context.PATIENT}

    def has(self, scope: str) -> bool:
        return scope in self.raw

    def __str__(self) -> str:
        return " ".join(self.raw)
