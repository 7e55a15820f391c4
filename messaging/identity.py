"""Partner resources in caregraph's id space: deterministic ids, references rewritten.

A partner's ``Patient/123`` is not caregraph's ``Patient/123``; it becomes
``Patient/msg-<sha256(partner, type, id)>``, so the same partner resource always lands on
the same stored resource (a resent or corrected message updates instead of duplicating),
and two partners never collide. Pure: no store, no clock.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from messaging.envelope import InboundMessage

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?$")


def local_id(partner: str, type_name: str, partner_id: str) -> str:
    """The id caregraph stores the partner's ``type_name/partner_id`` under (<= 64 chars)."""
    digest = hashlib.sha256(f"{partner}\x1f{type_name}\x1f{partner_id}".encode()).hexdigest()
    return f"msg-{digest[:40]}"


@dataclass(frozen=True, slots=True)
class Localized:
    """The message's resources ready to store, and its header's focus in local references."""

    resources: tuple[dict[str, Any], ...]
    focus: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Space:
    """How references are read: the message's own resources, the partner, and caregraph's
    own FHIR base (a reference under it names one of the hospital's resources)."""

    refs: Mapping[str, str]
    partner: str
    own_base: str | None

    def rewrite(self, value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: self.rewrite(v) for k, v in value.items() if k != "contained"}
            if "contained" in value:
                out["contained"] = value["contained"]  # '#x' references stay inside it
            ref = value.get("reference")
            if isinstance(ref, str):
                out["reference"] = self.local(ref)
            return out
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        return value

    def local(self, ref: str) -> str:
        if self.own_base and ref.startswith(self.own_base + "/"):
            own = ref[len(self.own_base) + 1 :]
            if _RELATIVE.match(own):
                return own.split("/_history/")[0]  # one of the hospital's own resources
        return _local_reference(ref, self.refs, self.partner)


def _local_reference(ref: str, refs: Mapping[str, str], partner: str) -> str:
    if ref in refs:
        return refs[ref]
    match = _RELATIVE.match(ref)
    if match:  # a resource the partner sent earlier, in its own id space
        return f"{match[1]}/{local_id(partner, match[1], match[2])}"
    return ref  # '#contained', absolute URLs of third parties, conditional references


def localize(message: InboundMessage, own_base: str | None = None) -> Localized:
    """Every non-header resource under its local id, tagged with the partner as
    ``meta.source``, with references (relative, fullUrl) rewritten to local ones.

    ``own_base``: caregraph's FHIR base URL as partners see it; an absolute reference below
    it (``<own_base>/Patient/h1``) stays the hospital's own ``Patient/h1``."""
    partner = message.source
    refs: dict[str, str] = {}
    keyed: list[tuple[str, dict[str, Any]]] = []
    for position, entry in enumerate(message.entries, start=1):
        resource = entry.resource
        kind = str(resource["resourceType"])
        # No id of its own: its fullUrl, else its place in this message, names it.
        own = resource.get("id") or entry.full_url or f"{message.identifier}#{position}"
        new_id = local_id(partner, kind, str(own))
        local = f"{kind}/{new_id}"
        refs[f"{kind}/{own}"] = local
        if entry.full_url:
            refs[entry.full_url] = local
        keyed.append((new_id, resource))
    space = _Space(refs, partner, own_base.rstrip("/") if own_base else None)
    resources = []
    for new_id, resource in keyed:
        body = space.rewrite(copy.deepcopy(resource))
        meta = dict(body.get("meta") or {})
        meta.pop("versionId", None)
        meta["source"] = partner
        body.update(id=new_id, meta=meta)
        resources.append(body)
    focus = tuple(
        space.local(f["reference"])
        for f in message.header.get("focus") or ()
        if isinstance(f, dict) and isinstance(f.get("reference"), str)
    )
    return Localized(tuple(resources), focus)
