"""Typed builders of plain FHIR R4 resources (dicts ready for ``json.dumps``).

caregraph validates what comes from outside with the ``fhir.resources`` models, but what it
builds itself comes from here, and ``tests/unit/hl7v2/test_fhir_build.py`` proves with
generated inputs that every builder's output validates against ``fhir.resources.R4B``. The
hot path therefore never pays for model validation (about 90 us per Observation).

Every builder drops empty values (FHIR forbids ``""``, ``[]`` and ``{}``), collapses the
whitespace of codes and strips strings, so callers may pass what a message held verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

Json = dict[str, Any]

ValueKey = Literal[
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueDateTime",
    "valuePeriod",
]

_WS = re.compile(r"\s+")
_ID_OK = re.compile(r"[A-Za-z0-9\-.]{1,64}\Z")


# --- primitives -------------------------------------------------------------------------


_ODD_WS = re.compile(r"[^\S \r\n\t]")


def fhir_string(value: str | None) -> str | None:
    """``value`` stripped, or None when nothing is left.

    FHIR strings allow only space, CR, LF and tab as whitespace: other whitespace a message
    may carry (form feed, vertical tab, Unicode separators) becomes a space.
    """
    if not value:
        return None
    value = _ODD_WS.sub(" ", value).strip()
    return value or None


_CODE_OK = re.compile(r"\S+( \S+)*\Z")


def fhir_code(value: str | None) -> str | None:
    """A FHIR ``code``: no leading/trailing whitespace and single inner spaces."""
    if not value:
        return None
    if _CODE_OK.match(value):
        return value
    value = _WS.sub(" ", value).strip()
    return value or None


_URI_SAFE = "".join(chr(c) for c in range(33, 127))
_URI_OK = re.compile(r"[!-~]+\Z")


def fhir_uri(value: str | None) -> str | None:
    """A FHIR ``uri`` (no whitespace): whitespace is percent-encoded, not dropped."""
    if value is None:
        return None
    if _URI_OK.match(value):
        return value
    value = value.strip()
    return quote(value, safe=_URI_SAFE) if value else None


def fhir_id(value: str) -> str:
    """A FHIR ``id`` (``[A-Za-z0-9\\-.]{1,64}``); raises ValueError when ``value`` is not one."""
    if not _ID_OK.match(value):
        raise ValueError(f"not a FHIR id: {value!r}")
    return value


def fhir_datetime(value: datetime | str) -> str:
    """A FHIR ``dateTime``. A ``datetime`` must be timezone-aware (FHIR requires the zone
    whenever a time is given); strings are passed on as already formatted."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a FHIR dateTime with a time needs a timezone")
    return value.isoformat()


def fhir_instant(value: datetime) -> str:
    """A FHIR ``instant``: seconds and zone always present."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a FHIR instant needs a timezone")
    return _instant_text(value, offset)


@lru_cache(maxsize=256)
def _instant_text(value: datetime, offset: timedelta) -> str:
    """Memoized: every Observation of a message is issued when the message was received.
    Keyed on the offset too: equal instants in two zones are equal datetimes."""
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")


def fhir_decimal(value: Decimal) -> float | int:
    """A JSON number for a FHIR ``decimal``, or raises ValueError for NaN/infinity."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    if value.as_tuple().exponent == 0:  # written without a point or exponent: integral
        return int(value)
    return float(value)


def compact(value: Json) -> Json:
    """``value`` without empty members, recursively (see ``clean``)."""
    out: Json = clean(value)
    return out


def clean(value: Any) -> Any:
    """Drop None, empty strings, lists and dicts, recursively."""
    if isinstance(value, dict):
        out = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [clean(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


# --- data types -------------------------------------------------------------------------


def coding(system: str | None, code: str | None, display: str | None = None) -> Json:
    """A Coding; empty when neither code nor display is present."""
    out: Json = {}
    system = fhir_uri(system)
    if system:
        out["system"] = system
    code = fhir_code(code)
    if code:
        out["code"] = code
    display = fhir_string(display)
    if display:
        out["display"] = display
    return out


def codeable_concept(codings: Iterable[Json] = (), text: str | None = None) -> Json:
    """A CodeableConcept from codings (empty ones are dropped) and text."""
    out: Json = {}
    kept = [c for c in codings if c]
    if kept:
        out["coding"] = kept
    text = fhir_string(text)
    if text:
        out["text"] = text
    return out


def reference(resource_type: str, resource_id: str, display: str | None = None) -> Json:
    """A literal reference ``Type/id``."""
    out: Json = {"reference": f"{resource_type}/{fhir_id(resource_id)}"}
    display = fhir_string(display)
    if display:
        out["display"] = display
    return out


def identifier(
    system: str | None,
    value: str | None,
    *,
    type_code: Json | None = None,
    use: str | None = None,
    assigner: Json | None = None,
) -> Json:
    """An Identifier; ``type_code`` is a CodeableConcept (e.g. v2-0203 ``MR``)."""
    return compact(
        {
            "use": use,
            "type": type_code,
            "system": fhir_uri(system),
            "value": fhir_string(value),
            "assigner": assigner,
        }
    )


def human_name(
    *,
    family: str | None = None,
    given: Sequence[str] = (),
    prefix: Sequence[str] = (),
    suffix: Sequence[str] = (),
    use: str | None = None,
    text: str | None = None,
) -> Json:
    """A HumanName."""
    return compact(
        {
            "use": fhir_code(use),
            "text": fhir_string(text),
            "family": fhir_string(family),
            "given": [fhir_string(g) for g in given],
            "prefix": [fhir_string(p) for p in prefix],
            "suffix": [fhir_string(s) for s in suffix],
        }
    )


def address(
    *,
    lines: Sequence[str] = (),
    city: str | None = None,
    state: str | None = None,
    postal_code: str | None = None,
    country: str | None = None,
    district: str | None = None,
    use: str | None = None,
    address_type: str | None = None,
) -> Json:
    """An Address."""
    return compact(
        {
            "use": fhir_code(use),
            "type": fhir_code(address_type),
            "line": [fhir_string(line) for line in lines],
            "city": fhir_string(city),
            "district": fhir_string(district),
            "state": fhir_string(state),
            "postalCode": fhir_string(postal_code),
            "country": fhir_string(country),
        }
    )


def contact_point(system: str | None, value: str | None, use: str | None = None) -> Json:
    """A ContactPoint (``system``: phone, fax, email, pager, url, sms, other)."""
    return compact(
        {"system": fhir_code(system), "value": fhir_string(value), "use": fhir_code(use)}
    )


def quantity(
    value: Decimal | None,
    *,
    unit: str | None = None,
    system: str | None = None,
    code: str | None = None,
    comparator: str | None = None,
    extensions: Sequence[Json] = (),
) -> Json:
    """A Quantity. ``system`` and ``code`` go together (FHIR qty-3): a code without a system
    is kept only as ``unit`` text."""
    out: Json = {}
    if extensions:
        out["extension"] = list(extensions)
    if value is not None:
        out["value"] = fhir_decimal(value)
    if comparator:
        out["comparator"] = comparator
    out.update(_quantity_units(unit, system, code))
    return out


@lru_cache(maxsize=1024)
def _quantity_units(unit: str | None, system: str | None, code: str | None) -> Json:
    """The unit members of a Quantity, memoized (a feed sends a few units again and again);
    callers copy them into their own dict."""
    code = fhir_code(code)
    system = fhir_uri(system)
    if system is None or code is None:
        unit = unit or code
        system = code = None
    out: Json = {}
    unit = fhir_string(unit)
    if unit:
        out["unit"] = unit
    if system and code:
        out["system"] = system
        out["code"] = code
    return out


def period(start: datetime | str | None = None, end: datetime | str | None = None) -> Json:
    """A Period."""
    return compact(
        {
            "start": fhir_datetime(start) if start is not None else None,
            "end": fhir_datetime(end) if end is not None else None,
        }
    )


_EMPTY: tuple[Any, ...] = (None, "", [], {})
_COMPOSITE_VALUES = frozenset({"valueRange", "valueRatio", "valuePeriod"})


def _shallow(body: Json) -> Json:
    """Drop empty members and empty list items one level deep: the nested values come from
    the builders here, which never return empty members."""
    out: Json = {}
    for key, value in body.items():
        # by exact type first: most members are None, empty lists or plain values
        kind = type(value)
        if kind is str or kind is dict:
            if not value:
                continue
        elif kind is list:
            if not value:
                continue
            value = [v for v in value if v not in _EMPTY]
            if not value:
                continue
        elif value is None or value == "":
            continue
        out[key] = value
    return out


def _resource(resource_type: str, resource_id: str, source: str | None, body: Json) -> Json:
    out: Json = {"resourceType": resource_type, "id": fhir_id(resource_id)}
    if source:
        out["meta"] = {"source": fhir_uri(source)}
    out.update(_shallow(body))
    return out


# --- resources --------------------------------------------------------------------------

GENDERS = frozenset({"male", "female", "other", "unknown"})


def patient(
    resource_id: str,
    *,
    identifiers: Sequence[Json] = (),
    names: Sequence[Json] = (),
    gender: str | None = None,
    birth_date: str | None = None,
    addresses: Sequence[Json] = (),
    telecom: Sequence[Json] = (),
    managing_organization: Json | None = None,
    deceased: bool | str | None = None,
    source: str | None = None,
) -> Json:
    """A Patient. ``gender`` is one of male/female/other/unknown; ``birth_date`` a FHIR date;
    ``deceased`` a boolean or a FHIR dateTime."""
    if gender is not None and gender not in GENDERS:
        raise ValueError(f"not a FHIR administrative gender: {gender!r}")
    body: Json = {
        "identifier": list(identifiers),
        "name": list(names),
        "telecom": list(telecom),
        "gender": gender,
        "birthDate": birth_date,
        "address": list(addresses),
        "managingOrganization": managing_organization,
    }
    if isinstance(deceased, bool):
        body["deceasedBoolean"] = deceased
    elif deceased is not None:
        body["deceasedDateTime"] = deceased
    return _resource("Patient", resource_id, source, body)


ENCOUNTER_STATUSES = frozenset(
    {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def encounter(
    resource_id: str,
    *,
    status: str,
    class_code: Json,
    identifiers: Sequence[Json] = (),
    subject: Json | None = None,
    period_: Json | None = None,
    locations: Sequence[tuple[Json, str | None]] = (),
    participants: Sequence[tuple[str, Json]] = (),
    service_provider: Json | None = None,
    encounter_type: Sequence[Json] = (),
    source: str | None = None,
) -> Json:
    """An Encounter. ``class_code`` is a Coding (v3 ActCode: IMP, AMB, EMER, PRENC...);
    ``locations`` pairs a Location reference with its status (active, completed...);
    ``participants`` pairs a v3 ParticipationType code (ATND, ADM, REF) with a reference."""
    if status not in ENCOUNTER_STATUSES:
        raise ValueError(f"not an Encounter status: {status!r}")
    return _resource(
        "Encounter",
        resource_id,
        source,
        {
            "identifier": list(identifiers),
            "status": status,
            "class": class_code,
            "type": list(encounter_type),
            "subject": subject,
            "participant": [
                {
                    "type": [codeable_concept([coding(PARTICIPATION_SYSTEM, code)])],
                    "individual": who,
                }
                for code, who in participants
            ],
            "period": period_,
            "location": [{"location": ref, "status": st} for ref, st in locations],
            "serviceProvider": service_provider,
        },
    )


LOCATION_PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
_PHYSICAL = {
    "si": "Site",
    "bu": "Building",
    "lvl": "Level",
    "wa": "Ward",
    "ro": "Room",
    "bd": "Bed",
}


def location(
    resource_id: str,
    *,
    name: str | None = None,
    physical_type: str | None = None,
    identifiers: Sequence[Json] = (),
    part_of: Json | None = None,
    managing_organization: Json | None = None,
    status: str | None = "active",
    source: str | None = None,
) -> Json:
    """A Location; ``physical_type`` is a location-physical-type code (si, bu, lvl, wa, ro, bd)."""
    ptype = None
    if physical_type is not None:
        ptype = codeable_concept(
            [coding(LOCATION_PHYSICAL_TYPE_SYSTEM, physical_type, _PHYSICAL.get(physical_type))]
        )
    return _resource(
        "Location",
        resource_id,
        source,
        {
            "identifier": list(identifiers),
            "status": status,
            "name": fhir_string(name),
            "mode": "instance",
            "physicalType": ptype,
            "managingOrganization": managing_organization,
            "partOf": part_of,
        },
    )


def practitioner(
    resource_id: str,
    *,
    identifiers: Sequence[Json] = (),
    names: Sequence[Json] = (),
    telecom: Sequence[Json] = (),
    source: str | None = None,
) -> Json:
    """A Practitioner."""
    return _resource(
        "Practitioner",
        resource_id,
        source,
        {"identifier": list(identifiers), "name": list(names), "telecom": list(telecom)},
    )


def organization(
    resource_id: str,
    *,
    name: str | None = None,
    identifiers: Sequence[Json] = (),
    part_of: Json | None = None,
    source: str | None = None,
) -> Json:
    """An Organization (FHIR org-1: an identifier or a name; ValueError when neither)."""
    if fhir_string(name) is None and not any(identifiers):
        raise ValueError("an Organization needs a name or an identifier")
    return _resource(
        "Organization",
        resource_id,
        source,
        {"identifier": list(identifiers), "name": fhir_string(name), "partOf": part_of},
    )


OBSERVATION_STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


@lru_cache(maxsize=64)
def _category_coding(code: str) -> Json:
    return coding(OBSERVATION_CATEGORY_SYSTEM, code)


def _category(code: str) -> Json:
    """An observation-category CodeableConcept (a new dict: callers may change theirs)."""
    cc = _category_coding(code)
    return {"coding": [dict(cc)]} if cc else {}


def reference_range(
    *, low: Json | None = None, high: Json | None = None, text: str | None = None
) -> Json:
    """An Observation.referenceRange (low/high are simple Quantities)."""
    return compact({"low": low, "high": high, "text": fhir_string(text)})


def observation_component(code: Json, value_key: ValueKey | None = None, value: Any = None) -> Json:
    """An Observation.component (e.g. systolic and diastolic of one blood pressure)."""
    body: Json = {"code": code}
    if value_key is not None and value not in (None, "", {}, []):
        body[value_key] = value
    return compact(body)


def observation(
    resource_id: str,
    *,
    status: str,
    code: Json,
    value_key: ValueKey | None = None,
    value: Any = None,
    categories: Sequence[str] = (),
    subject: Json | None = None,
    encounter_: Json | None = None,
    effective: datetime | str | None = None,
    issued: datetime | None = None,
    interpretation: Sequence[Json] = (),
    reference_ranges: Sequence[Json] = (),
    device: Json | None = None,
    identifiers: Sequence[Json] = (),
    method: Json | None = None,
    components: Sequence[Json] = (),
    data_absent_reason: str | None = None,
    extensions: Sequence[Json] = (),
    source: str | None = None,
) -> Json:
    """An Observation. ``value_key`` names the choice (``valueQuantity``...) and ``value`` its
    content; ``categories`` are observation-category codes (vital-signs, laboratory);
    ``device`` references a Device or DeviceMetric; ``effective`` is the time the device or
    lab says the value holds for, ``issued`` when it was made available."""
    if status not in OBSERVATION_STATUSES:
        raise ValueError(f"not an Observation status: {status!r}")
    if not code:
        raise ValueError("an Observation needs a code")
    body: Json = {
        "extension": list(extensions),
        "identifier": list(identifiers),
        "status": status,
        "category": [_category(c) for c in categories],
        "code": code,
        "subject": subject,
        "encounter": encounter_,
        "effectiveDateTime": fhir_datetime(effective) if effective is not None else None,
        "issued": fhir_instant(issued) if issued is not None else None,
    }
    if value_key in _COMPOSITE_VALUES and isinstance(value, dict):
        value = compact(value)  # callers assemble these from parts that may be empty
    elif value_key == "valueString" and isinstance(value, str):
        value = fhir_string(value)
    has_value = value_key is not None and value not in _EMPTY
    if has_value:
        assert value_key is not None
        body[value_key] = value
    elif data_absent_reason is not None:
        body["dataAbsentReason"] = codeable_concept(
            [coding("http://terminology.hl7.org/CodeSystem/data-absent-reason", data_absent_reason)]
        )
    body["interpretation"] = list(interpretation)
    body["method"] = method
    body["device"] = device
    body["referenceRange"] = list(reference_ranges)
    body["component"] = list(components)
    return _resource("Observation", resource_id, source, body)


DEVICE_STATUSES = frozenset({"active", "inactive", "entered-in-error", "unknown"})


def device(
    resource_id: str,
    *,
    identifiers: Sequence[Json] = (),
    device_type: Json | None = None,
    parent: Json | None = None,
    status: str | None = "active",
    manufacturer: str | None = None,
    model_number: str | None = None,
    serial_number: str | None = None,
    names: Sequence[tuple[str, str]] = (),
    patient_: Json | None = None,
    location_: Json | None = None,
    owner: Json | None = None,
    source: str | None = None,
) -> Json:
    """A Device. ``names`` pairs a name with its type (user-friendly-name, model-name...)."""
    if status is not None and status not in DEVICE_STATUSES:
        raise ValueError(f"not a Device status: {status!r}")
    return _resource(
        "Device",
        resource_id,
        source,
        {
            "identifier": list(identifiers),
            "status": status,
            "manufacturer": fhir_string(manufacturer),
            "serialNumber": fhir_string(serial_number),
            "deviceName": [{"name": fhir_string(n), "type": t} for n, t in names if fhir_string(n)],
            "modelNumber": fhir_string(model_number),
            "type": device_type,
            "patient": patient_,
            "owner": owner,
            "location": location_,
            "parent": parent,
        },
    )


METRIC_CATEGORIES = frozenset({"measurement", "setting", "calculation", "unspecified"})


def device_metric(
    resource_id: str,
    *,
    metric_type: Json,
    category: str = "measurement",
    unit: Json | None = None,
    source_device: Json | None = None,
    parent: Json | None = None,
    operational_status: str | None = None,
    identifiers: Sequence[Json] = (),
    source: str | None = None,
) -> Json:
    """A DeviceMetric. ``source_device`` is the Device holding the administrative facts
    (the MDS); ``parent`` the Device placing it in the containment tree (the channel)."""
    if category not in METRIC_CATEGORIES:
        raise ValueError(f"not a DeviceMetric category: {category!r}")
    if not metric_type:
        raise ValueError("a DeviceMetric needs a type")
    return _resource(
        "DeviceMetric",
        resource_id,
        source,
        {
            "identifier": list(identifiers),
            "type": metric_type,
            "unit": unit,
            "source": source_device,
            "parent": parent,
            "operationalStatus": operational_status,
            "category": category,
        },
    )


PROVENANCE_AGENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def provenance(
    resource_id: str,
    *,
    targets: Sequence[Json],
    recorded: datetime,
    occurred: datetime | str | None = None,
    agents: Sequence[tuple[str, Json]] = (),
    entities: Sequence[tuple[str, Json]] = (),
    activity: Json | None = None,
    source: str | None = None,
) -> Json:
    """A Provenance: ``recorded`` is when caregraph received the data, ``occurred`` when the
    source says it happened; ``agents`` pair a provenance-participant-type code (author,
    assembler...) with a reference; ``entities`` pair a role (source, derivation...) with
    a reference (which may be identifier-only)."""
    if not targets:
        raise ValueError("a Provenance needs at least one target")
    if not agents:
        raise ValueError("a Provenance needs at least one agent")
    return _resource(
        "Provenance",
        resource_id,
        source,
        {
            "target": list(targets),
            "occurredDateTime": fhir_datetime(occurred) if occurred is not None else None,
            "recorded": fhir_instant(recorded),
            "activity": activity,
            "agent": [
                {
                    "type": codeable_concept([coding(PROVENANCE_AGENT_SYSTEM, code)]),
                    "who": who,
                }
                for code, who in agents
            ],
            "entity": [{"role": role, "what": what} for role, what in entities],
        },
    )


def extension(url: str, value_key: str, value: Any) -> Json:
    """An Extension with one value."""
    return {"url": url, value_key: value}
