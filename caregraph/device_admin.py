"""Registry writes: add, save, retire, attach, place, written through the store.

One facade for every writer of the registry (``caregraph device``, the demo, tests), so
the rules live in one place: a Device is validated with the FHIR models before it is
stored; a new open attachment ends the open one before it; a new placement ends the
previous one; a retired device is neither attached nor placed; ``Device.patient`` and
``Device.location`` say what holds *now*. Everything is what a FHIR client could PUT
(``adapters.registry``), so a running serial role picks changes up on its next refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.device import Device
from pydantic import ValidationError

from adapters.registry.associations import (
    AssociationIndex,
    attachment_from_statement,
    ended,
    statement_resource,
)
from adapters.registry.device import (
    Registration,
    device_resource,
    location_id,
    location_resource,
    registration_from_device,
)
from adapters.serial.observation import DEVICE_ID_SYSTEM, device_resource_id
from caregraph.device_registry import connection_of
from caregraph.errors import CaregraphError
from fhir_store.errors import ResourceGone, ResourceNotFound
from fhir_store.store import FhirStore


class RegistryRefused(CaregraphError):
    """What was asked of the registry cannot be done; the message says why and what to do."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeviceAdmin:
    """Reads and writes registrations in one store."""

    def __init__(self, store: FhirStore, clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self.clock = clock

    # -- reads ---------------------------------------------------------------------------

    def find(self, device_id: str) -> dict[str, Any] | None:
        """The Device registered as ``device_id``: at its derived id, else by identifier
        (one a client POSTed under a server-assigned id)."""
        try:
            return self.store.read("Device", device_resource_id(device_id)).resource()
        except (ResourceNotFound, ResourceGone):
            pass
        page = self.store.searching.search(
            "Device", [("identifier", f"{DEVICE_ID_SYSTEM}|{device_id}")]
        )
        return page.matches[0].resource() if page.matches else None

    def get(
        self, device_id: str, *, in_service: bool = False
    ) -> tuple[Registration, dict[str, Any]]:
        """The registration and the stored Device.

        Raises:
            RegistryRefused: not registered; or retired when ``in_service`` is asked.
            RegistryError: the stored Device is not a readable registration.
        """
        found = self.find(device_id)
        if found is None:
            raise RegistryRefused(
                f"no device {device_id!r} is registered; add it with `caregraph device add`"
            )
        reg = registration_from_device(found)
        if in_service and reg.status != "active":
            raise RegistryRefused(
                f"device {device_id!r} is {reg.status}; a retired device is not attached or"
                " placed (back in service: `caregraph device edit --status active`)"
            )
        return reg, found

    def statements(self, reg: Registration) -> list[dict[str, Any]]:
        """The DeviceUseStatements that cite the device's resource."""
        page = self.store.searching.search(
            "DeviceUseStatement", [("device", reg.reference), ("_count", "1000")]
        )
        return [s.resource() for s in page.matches]

    def patient(self, text: str) -> dict[str, Any]:
        """A Reference to ``Patient/<id>`` as stored, or to the one Patient with the
        identifier ``text`` (``system|value`` or a bare value).

        Raises:
            RegistryRefused: no such Patient, or the identifier is ambiguous.
        """
        if text.startswith("Patient/"):
            try:
                patient = self.store.read("Patient", text.removeprefix("Patient/")).resource()
            except (ResourceNotFound, ResourceGone):
                raise RegistryRefused(f"{text} is not in the store") from None
        else:
            page = self.store.searching.search("Patient", [("identifier", text), ("_count", "2")])
            if len(page.matches) != 1:
                how = "no Patient has" if not page.matches else "several Patients have"
                raise RegistryRefused(f"{how} the identifier {text!r}; give Patient/<id> instead")
            patient = page.matches[0].resource()
        ref: dict[str, Any] = {"reference": f"Patient/{patient['id']}"}
        names = patient.get("name") or []
        if names:
            n = names[0]
            display = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")])
            if display.strip():
                ref["display"] = display.strip()
        return ref

    # -- writes --------------------------------------------------------------------------

    def save(
        self,
        reg: Registration,
        base: dict[str, Any] | None = None,
        extra: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write the Device for ``reg`` (over ``base``, the stored one) with ``extra``
        resources, in one transaction.

        Raises:
            RegistryRefused: the Device would not be valid FHIR, or its active connection
                names a protocol no driver speaks.
        """
        device = device_resource(reg, self.clock(), base)
        try:
            Device.model_validate(device)
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RegistryRefused(f"the Device would not be valid FHIR: {where}") from None
        if reg.connection is not None and reg.status == "active":
            try:
                connection_of(reg)
            except ValueError as exc:
                raise RegistryRefused(str(exc)) from None
        self.store.upsert_many([*(extra or []), device])
        return device

    def add(self, reg: Registration, location: str | None = None) -> dict[str, Any]:
        """Register a new device, placed in ``location`` from now if given.

        Raises:
            RegistryRefused: the device id is registered already (or as ``save``).
        """
        if self.find(reg.device_id) is not None:
            raise RegistryRefused(
                f"device {reg.device_id!r} is already registered; use `caregraph device edit`"
            )
        extra: list[dict[str, Any]] = []
        if location:
            reg = reg.placed(f"Location/{location_id(location)}", self.clock(), location)
            extra.append(location_resource(location))
        return self.save(reg, None, extra)

    def retire(self, device_id: str, at: datetime) -> None:
        """Status inactive; the open placement and open attachments end at ``at``."""
        reg, base = self.get(device_id)
        now = self.clock()
        placements = tuple(
            replace(p, end=at) if p.end is None and p.start < at else p for p in reg.placements
        )
        closes = [
            ended(s, at, now)
            for s in self.statements(reg)
            if "end" not in s.get("timingPeriod", {})
            and s.get("status") not in ("entered-in-error", "intended")
        ]
        base = {k: v for k, v in base.items() if k != "patient"}
        self.save(replace(reg, status="inactive", placements=placements), base, closes)

    def attach(
        self, device_id: str, subject: dict[str, Any], start: datetime, end: datetime | None
    ) -> dict[str, Any]:
        """Attach the device to ``subject`` for ``[start, end)``; returns the statement.

        Without ``end``, an earlier open attachment ends at ``start`` (one patient at a
        time); with ``end``, the new one takes precedence during its period only.

        Raises:
            RegistryRefused: not registered or retired.  MappingError: an empty period.
        """
        reg, base = self.get(device_id, in_service=True)
        now = self.clock()
        new = statement_resource(reg.device_id, reg.reference, subject, start, end, now)
        writes = [new]
        statements = {s["id"]: s for s in self.statements(reg)}
        if end is None:
            for s in list(statements.values()):
                if s["id"] == new["id"] or "end" in s.get("timingPeriod", {}):
                    continue
                a = attachment_from_statement(s, {reg.reference: reg.device_id})
                if a is not None and a.start < start:
                    statements[s["id"]] = ended(s, start, now)
                    writes.append(statements[s["id"]])
        statements[new["id"]] = new
        self.save(reg, self._with_current_patient(base, reg, list(statements.values())), writes)
        return new

    def detach(self, device_id: str, at: datetime) -> list[dict[str, Any]]:
        """End every attachment of the device still open at ``at``; returns them ended.

        Raises:
            RegistryRefused: not registered, or nothing attached at ``at``.
        """
        reg, base = self.get(device_id)
        now = self.clock()
        statements = {s["id"]: s for s in self.statements(reg)}
        closes = []
        for s in list(statements.values()):
            a = attachment_from_statement(s, {reg.reference: reg.device_id})
            if a is not None and a.end is None and a.start < at:
                statements[s["id"]] = ended(s, at, now)
                closes.append(statements[s["id"]])
        if not closes:
            raise RegistryRefused(f"device {device_id!r} has no open attachment before {at}")
        self.save(reg, self._with_current_patient(base, reg, list(statements.values())), closes)
        return closes

    def place(self, device_id: str, location: str, start: datetime) -> None:
        """Place the device in the bed named ``location`` from ``start``.

        Raises:
            RegistryRefused: not registered or retired.  RegistryError: ``start`` is not
                after the open placement's start.
        """
        reg, base = self.get(device_id, in_service=True)
        reg = reg.placed(f"Location/{location_id(location)}", start, location)
        self.save(reg, base, [location_resource(location)])

    def _with_current_patient(
        self, base: dict[str, Any], reg: Registration, statements: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """``base`` with ``Device.patient`` = the patient attached now, or without it (the
        console lists a patient's devices by it)."""
        found = (attachment_from_statement(s, {reg.reference: reg.device_id}) for s in statements)
        index = AssociationIndex(a for a in found if a is not None)
        subject = index.subject_at(reg.device_id, self.clock())
        out = {k: v for k, v in base.items() if k != "patient"}
        if subject is not None:
            out["patient"] = dict(subject)
        return out
