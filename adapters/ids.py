"""Deterministic resource ids, so a redelivered message upserts instead of duplicating."""

from __future__ import annotations

import uuid

# A fixed namespace for caregraph's uuid5 ids; never change it, or every id changes.
_NAMESPACE = uuid.UUID("6f1c2a5e-4b8d-5c3a-9e2f-0d7b1a4c8e60")


def deterministic_id(*parts: str | int) -> str:
    """A FHIR id (a UUID, 36 chars) derived from the parts, e.g. source, message id, position.

    The parts are joined unambiguously (length-prefixed), so ("a|b", "c") and ("a", "b|c")
    give different ids.
    """
    key = "".join(f"{len(s)}:{s};" for s in map(str, parts))
    return str(uuid.uuid5(_NAMESPACE, key))
