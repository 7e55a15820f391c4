"""A registered device as a FHIR R4 ``Device`` and back (pure).

What a biomedical engineer registers lives in standard elements where R4 has one:

| registration | Device element |
| --- | --- |
| device id (what the driver reports) | ``identifier`` with system ``urn:caregraph:device`` |
| FHIR id | ``device_resource_id(device id)``, the id every Observation of the device cites |
| name | ``deviceName`` of type ``user-friendly-name`` |
| manufacturer, model, serial number | ``manufacturer``, ``modelNumber``, ``serialNumber`` |
| UDI | ``udiCarrier`` (``carrierHRF``; ``deviceIdentifier`` from a GS1 ``(01)`` DI) |
| type | ``type.text`` (or the first coding a client sent) |
| active / retired | ``status`` ``active`` / ``inactive`` |
| bed now | ``location`` (the placement open at the time of writing) |

R4 has no element for two things, so caregraph defines two extensions:

``urn:caregraph:fhir:extension:serial-connection`` (once), how the serial gateway reaches
the device. Sub-extensions: ``protocol`` (valueCode: astm, intellivue, datex, medibus),
``port`` (valueString, e.g. ``/dev/ttyUSB0``), optional line settings overriding the
protocol's default ``baudrate`` (valueInteger), ``bytesize`` (valueInteger 5-8),
``parity`` (valueCode N/E/O/M/S), ``stopbits`` (valueDecimal 1, 1.5, 2), ``rtscts``
(valueBoolean), and any number of ``option`` (nested ``name`` valueString + ``value``
valueDecimal: driver tuning such as ``poll_interval_s``; whole numbers are read as
integers), and optional ``patient-id-system`` (valueUri): the identifier system of the
patient ids the device reports itself (an analyzer's ASTM P record), e.g. the hospital's
MRN system ``urn:oid:1.2.3``. With it, such an id names only a Patient with an identifier
of that system; without it, an identifier of any system (see ``caregraph.patient_hints``).

``urn:caregraph:fhir:extension:placement`` (repeating), the placement history: ``location``
(valueReference to a ``Location``, a bed) and ``period`` (valuePeriod; no end = still
there). ``Device.location`` is kept equal to the placement valid when the resource is
written, so ``Device?location=...`` finds what is in a bed now.

A client may POST or PUT a Device with these elements through ``/fhir`` directly;
``registration_from_device`` reads exactly that. A Device whose id is not
``device_resource_id(device id)`` is still served by the gateway, but its Observations
cite the derived id: PUT to ``Device/{device_resource_id}`` (as the console and the CLI do).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from adapters.ids import deterministic_id
from adapters.registry.timing import instant, parse_instant
from adapters.serial.observation import DEVICE_ID_SYSTEM, device_resource_id
from caregraph.errors import MappingError

CONNECTION_URL = "urn:caregraph:fhir:extension:serial-connection"
PLACEMENT_URL = "urn:caregraph:fhir:extension:placement"
LOCATION_ID_SYSTEM = "urn:caregraph:location"
PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
DEVICE_STATUSES = ("active", "inactive", "entered-in-error", "unknown")
PARITIES = ("N", "E", "O", "M", "S")
# An absolute URI (RFC 3986 scheme, then no white space): what Identifier.system must be.
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_GS1_DI = re.compile(r"^\(01\)(\d{14})")


class RegistryError(MappingError):
    """A Device (or a registration) that cannot be a serial registration; says where."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    """Line settings that override the protocol's documented default (``None`` = default)."""

    baudrate: int | None = None
    bytesize: int | None = None
    parity: str | None = None
    stopbits: float | None = None
    rtscts: bool | None = None


@dataclass(frozen=True, slots=True)
class SerialConnection:
    """How the gateway reaches the device; ``options`` are numeric driver settings;
    ``patient_id_system`` is the identifier system of the patient ids the device reports
    (``None``: any system).

    Raises:
        RegistryError: ``patient_id_system`` is not an absolute URI.
    """

    protocol: str
    port: str
    line: LineSpec = LineSpec()
    options: tuple[tuple[str, int | float], ...] = ()
    patient_id_system: str | None = None

    def __post_init__(self) -> None:
        if self.patient_id_system is not None:
            check_identifier_system(self.patient_id_system, "Device.extension")


def check_identifier_system(value: str, where: str) -> str:
    """``value`` if it can be an ``Identifier.system`` (an absolute URI such as
    ``urn:oid:1.2.3`` or ``http://hospital.example/mrn``).

    Raises:
        RegistryError: it is not.
    """
    if not _ABSOLUTE_URI.match(value):
        raise RegistryError(
            f"patient id system {value!r} is not an absolute URI"
            " (e.g. urn:oid:1.2.3 or https://hospital.example/mrn)",
            where,
        )
    return value


@dataclass(frozen=True, slots=True)
class Placement:
    """The device stood at ``location`` (``Location/<id>``) from ``start`` until ``end``."""

    location: str
    start: datetime
    end: datetime | None = None
    display: str | None = None

    def __post_init__(self) -> None:
        if self.display is not None:  # normalized as ``Registration``'s labels are
            object.__setattr__(self, "display", " ".join(self.display.split()) or None)

    def valid_at(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when < self.end)


@dataclass(frozen=True, slots=True)
class Registration:
    """One device as registered; ``resource_id`` is the Device's FHIR id."""

    device_id: str
    status: str = "active"
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    udi: str | None = None
    type_text: str | None = None
    connection: SerialConnection | None = None
    placements: tuple[Placement, ...] = ()
    resource_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.device_id.strip():
            raise RegistryError("a device id cannot be empty", "Device.identifier")
        if self.device_id != self.device_id.strip() or any(
            c.isspace() and c != " " for c in self.device_id
        ):
            raise RegistryError(
                f"device id {self.device_id!r} has leading, trailing or special white space",
                "Device.identifier",
            )
        # FHIR strings allow no white space but space, tab and newlines (a pasted no-break
        # space would make the Device invalid): labels are normalized, blank ones dropped.
        for name in ("name", "manufacturer", "model", "serial_number", "udi", "type_text"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, " ".join(value.split()) or None)
        if self.status not in DEVICE_STATUSES:
            raise RegistryError(
                f"status {self.status!r} is not one of {', '.join(DEVICE_STATUSES)}",
                "Device.status",
            )
        if not self.resource_id:
            object.__setattr__(self, "resource_id", device_resource_id(self.device_id))

    @property
    def reference(self) -> str:
        return f"Device/{self.resource_id}"

    def placement_at(self, when: datetime) -> Placement | None:
        """The placement valid at ``when`` (the latest-started, if several overlap)."""
        valid = [p for p in self.placements if p.valid_at(when)]
        return max(valid, key=lambda p: p.start) if valid else None

    def placed(self, location: str, start: datetime, display: str | None = None) -> Registration:
        """This registration with a new placement from ``start``; the open one before it
        ends at ``start`` (a device stands in one place at a time).

        Raises:
            RegistryError: ``start`` is not after the start of the open placement.
        """
        kept: list[Placement] = []
        for p in self.placements:
            if p.end is None or p.end > start:
                if p.start >= start:
                    raise RegistryError(
                        f"a placement at {p.location} starts at {instant(p.start)}, not before"
                        f" {instant(start)}; a new placement must start after it",
                        "Device.extension",
                    )
                p = replace(p, end=start)
            kept.append(p)
        kept.append(Placement(location, start, None, display))
        return replace(self, placements=tuple(kept))


# -- Registration -> Device ---------------------------------------------------------------


def device_resource(
    reg: Registration, now: datetime, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Device for ``reg``; ``base`` (the stored Device) keeps what caregraph does not
    manage (notes, contacts, other identifiers and extensions, ``patient``).

    ``now`` decides which placement is ``Device.location``.
    """
    out: dict[str, Any] = copy.deepcopy(dict(base)) if base else {}
    out.pop("meta", None)
    out["resourceType"] = "Device"
    out["id"] = reg.resource_id
    others = [i for i in out.get("identifier", []) if i.get("system") != DEVICE_ID_SYSTEM]
    out["identifier"] = [{"system": DEVICE_ID_SYSTEM, "value": reg.device_id}, *others]
    out["status"] = reg.status
    names = [n for n in out.get("deviceName", []) if n.get("type") != "user-friendly-name"]
    if reg.name:
        names.insert(0, {"name": reg.name, "type": "user-friendly-name"})
    _set(out, "deviceName", names or None)
    _set(out, "manufacturer", reg.manufacturer)
    _set(out, "modelNumber", reg.model)
    _set(out, "serialNumber", reg.serial_number)
    _set(out, "udiCarrier", [udi_carrier(reg.udi)] if reg.udi else None)
    if reg.type_text is not None:
        kept_type = out.get("type") or {}
        out["type"] = {**kept_type, "text": reg.type_text}
    ours = (CONNECTION_URL, PLACEMENT_URL)
    extensions = [e for e in out.get("extension", []) if e.get("url") not in ours]
    if reg.connection is not None:
        extensions.append(connection_extension(reg.connection))
    extensions.extend(placement_extension(p) for p in reg.placements)
    _set(out, "extension", extensions or None)
    if reg.placements:
        here = reg.placement_at(now)
        _set(out, "location", _location_ref(here) if here else None)
    # Without placements, a ``location`` a client set is theirs to keep.
    return out


def _set(out: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        out.pop(key, None)
    else:
        out[key] = value


def _location_ref(p: Placement) -> dict[str, str]:
    ref = {"reference": p.location}
    if p.display:
        ref["display"] = p.display
    return ref


def udi_carrier(text: str) -> dict[str, str]:
    """``udiCarrier`` from the human-readable UDI; a GS1 ``(01)`` DI becomes the
    ``deviceIdentifier``, anything else is kept whole in both."""
    found = _GS1_DI.match(text)
    return {"deviceIdentifier": found.group(1) if found else text, "carrierHRF": text}


def connection_extension(c: SerialConnection) -> dict[str, Any]:
    subs: list[dict[str, Any]] = [
        {"url": "protocol", "valueCode": c.protocol},
        {"url": "port", "valueString": c.port},
    ]
    line = c.line
    if line.baudrate is not None:
        subs.append({"url": "baudrate", "valueInteger": line.baudrate})
    if line.bytesize is not None:
        subs.append({"url": "bytesize", "valueInteger": line.bytesize})
    if line.parity is not None:
        subs.append({"url": "parity", "valueCode": line.parity})
    if line.stopbits is not None:
        subs.append({"url": "stopbits", "valueDecimal": line.stopbits})
    if line.rtscts is not None:
        subs.append({"url": "rtscts", "valueBoolean": line.rtscts})
    if c.patient_id_system is not None:
        subs.append({"url": "patient-id-system", "valueUri": c.patient_id_system})
    for name, value in c.options:
        subs.append(
            {
                "url": "option",
                "extension": [
                    {"url": "name", "valueString": name},
                    {"url": "value", "valueDecimal": value},
                ],
            }
        )
    return {"url": CONNECTION_URL, "extension": subs}


def placement_extension(p: Placement) -> dict[str, Any]:
    period = {"start": instant(p.start)}
    if p.end is not None:
        period["end"] = instant(p.end)
    return {
        "url": PLACEMENT_URL,
        "extension": [
            {"url": "location", "valueReference": _location_ref(p)},
            {"url": "period", "valuePeriod": period},
        ],
    }


def location_resource(name: str) -> dict[str, Any]:
    """A bed as a ``Location`` with a deterministic id, so placing twice in the same bed
    names the same resource."""
    return {
        "resourceType": "Location",
        "id": location_id(name),
        "identifier": [{"system": LOCATION_ID_SYSTEM, "value": name}],
        "status": "active",
        "name": name,
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE_SYSTEM, "code": "bd"}]},
    }


def location_id(name: str) -> str:
    return deterministic_id("Location", name)


# -- Device -> Registration ---------------------------------------------------------------


def registration_from_device(resource: Mapping[str, Any]) -> Registration:
    """Read a stored (or client-sent) Device.

    Raises:
        RegistryError: no ``urn:caregraph:device`` identifier, or a caregraph extension
            that is malformed; ``location`` names the element.
    """
    device_id = next(
        (
            str(i.get("value", ""))
            for i in resource.get("identifier", [])
            if i.get("system") == DEVICE_ID_SYSTEM
        ),
        "",
    )
    if not device_id.strip():
        raise RegistryError(
            f"Device/{resource.get('id')} has no identifier with system {DEVICE_ID_SYSTEM}",
            "Device.identifier",
        )
    connection = None
    placements: list[Placement] = []
    for i, ext in enumerate(resource.get("extension", [])):
        where = f"Device.extension[{i}]"
        if ext.get("url") == CONNECTION_URL:
            if connection is not None:
                raise RegistryError("two serial connections on one device", where)
            connection = _connection(ext, where)
        elif ext.get("url") == PLACEMENT_URL:
            placements.append(_placement(ext, where))
    udi = next(
        (u.get("carrierHRF") or u.get("deviceIdentifier") for u in resource.get("udiCarrier", [])),
        None,
    )
    dtype = resource.get("type") or {}
    coding = (dtype.get("coding") or [{}])[0]
    status = resource.get("status", "unknown")
    return Registration(
        device_id=device_id,
        status=status if status in DEVICE_STATUSES else "unknown",
        name=next(
            (
                n.get("name")
                for n in resource.get("deviceName", [])
                if n.get("type") == "user-friendly-name"
            ),
            None,
        ),
        manufacturer=resource.get("manufacturer"),
        model=resource.get("modelNumber"),
        serial_number=resource.get("serialNumber"),
        udi=udi,
        type_text=dtype.get("text") or coding.get("display") or coding.get("code"),
        connection=connection,
        placements=tuple(sorted(placements, key=lambda p: p.start)),
        resource_id=str(resource.get("id") or device_resource_id(device_id)),
        extra={"patient": resource.get("patient")} if resource.get("patient") else {},
    )


def _subs(ext: Mapping[str, Any], where: str) -> list[tuple[str, Mapping[str, Any]]]:
    subs = ext.get("extension")
    if not isinstance(subs, list):
        raise RegistryError("a complex extension without sub-extensions", where)
    return [(str(s.get("url")), s) for s in subs]


def _one(subs: Sequence[tuple[str, Mapping[str, Any]]], url: str, key: str, where: str) -> Any:
    values = [s.get(key) for u, s in subs if u == url]
    if len(values) > 1:
        raise RegistryError(f"{url} is given {len(values)} times", where)
    if values and values[0] is None:
        raise RegistryError(f"{url} has no {key}", where)
    return values[0] if values else None


def _connection(ext: Mapping[str, Any], where: str) -> SerialConnection:
    subs = _subs(ext, where)
    protocol = _one(subs, "protocol", "valueCode", where)
    port = _one(subs, "port", "valueString", where)
    if not protocol or not port:
        raise RegistryError("a serial connection needs a protocol and a port", where)
    parity = _one(subs, "parity", "valueCode", where)
    if parity is not None and parity not in PARITIES:
        raise RegistryError(f"parity {parity!r} is not one of {', '.join(PARITIES)}", where)
    bytesize = _one(subs, "bytesize", "valueInteger", where)
    if bytesize is not None and bytesize not in (5, 6, 7, 8):
        raise RegistryError(f"bytesize {bytesize!r} is not 5, 6, 7 or 8", where)
    stopbits = _one(subs, "stopbits", "valueDecimal", where)
    if stopbits is not None and float(stopbits) not in (1.0, 1.5, 2.0):
        raise RegistryError(f"stopbits {stopbits!r} is not 1, 1.5 or 2", where)
    baudrate = _one(subs, "baudrate", "valueInteger", where)
    if baudrate is not None and (not isinstance(baudrate, int) or baudrate <= 0):
        raise RegistryError(f"baudrate {baudrate!r} is not a positive integer", where)
    options: dict[str, int | float] = {}
    for url, sub in subs:
        if url != "option":
            continue
        pair = _subs(sub, where)
        name = _one(pair, "name", "valueString", where)
        value = _one(pair, "value", "valueDecimal", where)
        if not name or not isinstance(value, int | float) or isinstance(value, bool):
            raise RegistryError("an option needs a name and a numeric value", where)
        # Whole numbers stay integers: some settings are counts or whole seconds on the wire.
        options[str(name)] = int(value) if float(value).is_integer() else float(value)
    rtscts = _one(subs, "rtscts", "valueBoolean", where)
    system = _one(subs, "patient-id-system", "valueUri", where)
    if system is not None:
        check_identifier_system(str(system), where)
    return SerialConnection(
        protocol=str(protocol),
        port=str(port),
        line=LineSpec(
            baudrate,
            bytesize,
            parity,
            None if stopbits is None else float(stopbits),
            None if rtscts is None else bool(rtscts),
        ),
        options=tuple(sorted(options.items())),
        patient_id_system=None if system is None else str(system),
    )


def _placement(ext: Mapping[str, Any], where: str) -> Placement:
    subs = _subs(ext, where)
    ref = _one(subs, "location", "valueReference", where) or {}
    period = _one(subs, "period", "valuePeriod", where) or {}
    location = ref.get("reference")
    if not location or not period.get("start"):
        raise RegistryError("a placement needs a location reference and a period start", where)
    start = parse_instant(period["start"], where)
    end = parse_instant(period["end"], where) if period.get("end") else None
    return Placement(str(location), start, end, ref.get("display"))
