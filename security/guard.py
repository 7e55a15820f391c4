"""The access policy: one token, one request -> allowed (with what it may see) or refused.

Pure of HTTP: ``security.middleware`` feeds it headers and bodies and turns its errors into
responses. The store is reached through ``Lookup`` (current version of a resource, or None),
linked identities through ``Identities``.

A token with a ``patient`` claim is restricted to that patient's compartment across the
patient's linked identities, whatever its scopes say; ``patient/`` scopes count only with
such a claim. A clinician (``user/`` scopes, ``fhirUser`` not a Patient) may lift the
restriction for one request with a break-glass reason; then only ``user/`` and ``system/``
scopes count, and the access is audited (or refused if it cannot be).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from security.audit import AccessRecord, Auditor
from security.compartment import in_compartment
from security.errors import Forbidden
from security.filter import View
from security.identities import Identities
from security.interactions import Access, Area, classify_entry
from security.scopes import Context
from security.tokens import Principal, TokenValidator, bearer_token

Lookup = Callable[[str, str], dict[str, Any] | None]

_NOT_PATIENT = frozenset({Context.USER, Context.SYSTEM})
MAX_REASON = 500


@dataclass(frozen=True)
class Decision:
    """An allowed request: who, what it may see, and the break-glass reason if one was used."""

    principal: Principal
    view: View
    break_glass: str | None = None
    #: the scope contexts that count (None: all, because a patient restriction is in force)
    contexts: frozenset[Context] | None = None

    @property
    def restricted(self) -> bool:
        return self.view.patients is not None

    @property
    def sees_everything(self) -> bool:
        return self.view.patients is None and self.view.readable("*")


class Guard:
    """Authenticates tokens and decides requests."""

    def __init__(
        self,
        validator: TokenValidator,
        identities: Identities,
        lookup: Lookup,
        auditor: Auditor,
    ) -> None:
        self.validator = validator
        self._identities = identities
        self._lookup = lookup
        self.auditor = auditor

    def authenticate(self, authorization: str | None) -> Principal:
        """Raises: Unauthenticated (no token, or it does not validate)."""
        return self.validator.validate(bearer_token(authorization))

    def decide(self, principal: Principal, access: Access, break_glass: str | None) -> Decision:
        """Whether the scopes allow the request's interaction, and the view it gets.

        Raises:
            Forbidden: the scopes do not allow it, or break-glass is not allowed.
        """
        reason = (break_glass or "").strip() or None
        if reason is not None:
            if principal.patient is None:
                raise Forbidden("break-glass needs a token with a patient context to lift")
            if not principal.is_clinician:
                raise Forbidden("only a clinician's token (user/ scopes) may break the glass")
            if len(reason) > MAX_REASON:
                raise Forbidden(f"the break-glass reason is longer than {MAX_REASON} characters")
        restricted = principal.patient is not None and reason is None
        contexts = None if restricted else _NOT_PATIENT

        def permitted(resource_type: str, permission: str) -> bool:
            return principal.scopes.allows(resource_type, permission, contexts)

        def readable(resource_type: str) -> bool:
            return permitted(resource_type, "r") or permitted(resource_type, "s")

        patients = (
            self._identities.linked(principal.patient) if restricted and principal.patient else None
        )
        decision = Decision(principal, View(readable, patients), reason, contexts)
        if access.area is Area.LINKAGE and restricted:
            own_graph = access.interaction == "graph-patient" and access.resource_id in (
                patients or frozenset()
            )
            if not own_graph:
                raise Forbidden(
                    "of the linkage and graph routes, a patient-scoped token may only read its"
                    " own patient's graph (/graph/patients/{id}/...)"
                )
        check_scopes(decision, access)
        return decision

    def needs_body(self, decision: Decision, access: Access) -> bool:
        """Transactions are always checked entry by entry; writes when restricted."""
        if access.area is not Area.FHIR:
            return False
        return access.transaction or (
            decision.restricted
            and access.permission in ("c", "u")
            and access.interaction in ("create", "update")
        )

    def check_request(self, decision: Decision, access: Access, body: bytes | None) -> None:
        """The checks that need the store: the target and the body, when restricted.

        Raises:
            Forbidden: the request would touch data outside the view.
        """
        if access.area is not Area.FHIR:
            return
        if access.transaction:
            self._check_transaction(decision, body)
            return
        self._check_one(decision, access, _resource_of(body))

    def _check_one(
        self, decision: Decision, access: Access, resource: dict[str, Any] | None
    ) -> None:
        if not decision.restricted:
            return
        patients = decision.view.patients or frozenset()
        if access.interaction == "operation-system":
            raise Forbidden(f"{access.interaction} is not open to a patient-scoped token")
        if access.interaction == "patch":
            raise Forbidden("PATCH is not open to a patient-scoped token; use PUT")
        if access.conditional and access.interaction != "create":
            raise Forbidden(
                f"conditional {access.interaction} is not open to a patient-scoped token"
            )
        if (
            access.resource_type == "Patient"
            and access.interaction == "operation"
            and access.resource_id not in patients
        ):
            raise Forbidden(f"Patient/{access.resource_id} is not this token's patient")
        if access.resource_type and access.resource_id:
            current = self._lookup(access.resource_type, access.resource_id)
            if current is not None and not in_compartment(current, patients):
                raise Forbidden(
                    f"{access.resource_type}/{access.resource_id} is not in this token's"
                    " patient compartment"
                )
        if access.interaction in ("create", "update"):
            if resource is None:
                return  # not a resource: the handler answers 400
            # The id the store will use: a create gets a new one whatever the body says (so a
            # body claiming "id": "<my patient>" proves nothing); an update keeps the URL's.
            resource = {k: v for k, v in resource.items() if k != "id"}
            if access.interaction == "update" and access.resource_id:
                resource["id"] = access.resource_id
            if not in_compartment(resource, patients):
                raise Forbidden("the resource is not in this token's patient compartment")

    def _check_transaction(self, decision: Decision, body: bytes | None) -> None:
        bundle = _resource_of(body)
        if bundle is None:
            return  # not JSON: the handler answers 400 without touching data
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise Forbidden("cannot authorize a Bundle whose entry is not a list")
        for position, entry in enumerate(entries):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("url"), str):
                raise Forbidden(f"cannot authorize entry {position}: no request.url")
            access = classify_entry(str(request.get("method", "")), request["url"])
            if access.resource_type is None or access.permission is None:
                raise Forbidden(f"entry {position}: {request['url']!r} is not an interaction")
            try:
                check_scopes(decision, access)
                resource = entry.get("resource")
                self._check_one(decision, access, resource if isinstance(resource, dict) else None)
            except Forbidden as exc:
                raise Forbidden(f"entry {position}: {exc}") from None

    def audit(self, record: AccessRecord, *, required: bool = False) -> None:
        self.auditor.record(record, required=required)


def check_scopes(decision: Decision, access: Access) -> None:
    """Whether some scope in force grants the access's permission on its type.

    Raises:
        Forbidden: none does.
    """
    if access.permission is None:
        return
    scopes = decision.principal.scopes
    if access.resource_type is None:
        in_force = frozenset(Context) if decision.contexts is None else decision.contexts
        if not any(
            s.context in in_force and access.permission in s.permissions for s in scopes.scopes
        ):
            raise Forbidden(f"no scope grants '{access.permission}' on any resource type")
        return
    if not scopes.allows(access.resource_type, access.permission, decision.contexts):
        raise Forbidden(
            f"no scope grants '{access.permission}' on {access.resource_type}"
            f" ({access.interaction})"
        )


def _resource_of(body: bytes | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
