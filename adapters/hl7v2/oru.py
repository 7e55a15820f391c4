"""ORU^R01 results: lab (LOINC) and bedside devices per IHE PCD-01.

PCD-01 rows carry an MDC code in OBX-3, the containment path ``MDS.VMD.Channel.Metric`` in
OBX-4 and the device's EUI-64 in OBX-18. Rows with a shorter path describe the hierarchy
(result status ``X``, no value) and become Devices as in the HL7 Point-of-Care Device IG:
the MDS, its VMDs (``parent`` = MDS) and channels (``parent`` = VMD); a metric row becomes
a DeviceMetric (``source`` = MDS, ``parent`` = channel) and, when it has a value, an
Observation whose ``device`` is that DeviceMetric.

Two value types are not a single FHIR value:

- NA (numeric array: numbers separated by ``^``, rows of a matrix by ``~``) becomes one
  ``Observation.component`` per element, in order, each with the row's code, a Quantity
  in the row's unit and its position (``urn:caregraph:fhir:extension:array-index``:
  ``3`` in a vector, ``2,3`` = row 2, column 3 in a matrix); an empty element is a
  component with a data-absent reason. Not ``valueSampledData``: R4 requires its
  ``period`` (milliseconds between samples), and an NA carries numbers only, no time
  axis; inventing one would turn any array into a fake waveform.
- ED (encapsulated data: a PDF report, an image, a waveform snippet) becomes an
  Attachment (content type from ED-2/ED-3, the bytes base64 whatever ED-4 encoded them
  as, their size and SHA-1) in R5's ``Observation.valueAttachment``, carried in R4 by the
  standard cross-version extension (``EXT_R5_OBSERVATION_VALUE``). The v2-to-FHIR IG maps
  an ED OBX to a DocumentReference instead; the FHIR store here does not serve
  DocumentReference, and a resource nobody stores would be a silent drop. The
  Observation keeps the row's code, subject, status and times, and is searchable now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from adapters import fhir_build as fb
from adapters.codes.loinc import LOINC
from adapters.codes.mdc import MDC, MDC_SYSTEM, MDC_UNITS, MDC_UNITS_BY_REFID
from adapters.codes.systems import UCUM_SYSTEM, is_known_system
from adapters.codes.ucum import UCUM_BY_TEXT
from adapters.hl7v2.context import Context
from adapters.hl7v2.datatypes import (
    Coded,
    coded_concept,
    cwe_concept,
    cwe_text,
    nm_decimal,
    parse_nm,
    parse_ts,
)
from adapters.hl7v2.er7 import Delimiters, Segment, unescape
from adapters.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    Hl7MappingError,
)
from adapters.ids import deterministic_id, ordered_id

Json = fb.Json

EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
MDC_UNIT_EXTENSION = "urn:caregraph:fhir:extension:mdc-unit"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_V3_INTERPRETATION_CODES = frozenset(
    {
        *("<", ">", "A", "AA", "B", "D", "DET", "H", "HH", "HU", "I", "IE", "IND", "L", "LL"),
        *("LU", "MS", "N", "ND", "NEG", "NR", "NS", "POS", "R", "RR", "S", "SDD", "U", "VS"),
        *("W", "WR"),
    }
)

# OBX-11 (table 0085) -> Observation.status, after the v2-to-FHIR mapping.
_STATUS = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "V": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
_PATH = re.compile(r"\d+(\.\d+){0,3}\Z")
_EUI64 = re.compile(r"[0-9A-Fa-f]{16}\Z")
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
ARRAY_INDEX_EXTENSION = "urn:caregraph:fhir:extension:array-index"
# R5 element Observation.value[x] (which has valueAttachment) in an R4 resource: the
# cross-version extension URL pattern of FHIR R5 section 2.1.10.
EXT_R5_OBSERVATION_VALUE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# ED-3 data subtype (HL7 table 0291, and what senders write in practice) -> MIME type.
ED_SUBTYPES = {
    "PDF": "application/pdf",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "RTF": "text/rtf",
    "HTML": "text/html",
    "XML": "text/xml",
    "SGML": "text/sgml",
    "PLAIN": "text/plain",
    "TEXT": "text/plain",
    "OCTET-STREAM": "application/octet-stream",
    "DICOM": "application/dicom",
    "X-HL7-CDA-LEVEL-ONE": "application/x-hl7-cda-level-one+xml",
    "WAV": "audio/wav",
    "BASIC": "audio/basic",
    "MPEG": "video/mpeg",
}
# ED-2 type of data (table 0191) -> MIME type when ED-3 does not say.
ED_TYPES = {
    "TEXT": "text/plain",
    "TX": "text/plain",
    "FT": "text/plain",
    "AP": "application/octet-stream",
    "IM": "application/octet-stream",
    "AU": "audio/basic",
    "SD": "application/octet-stream",
    "SI": "application/octet-stream",
    "NS": "application/octet-stream",
}


# --- codes ---------------------------------------------------------------------------


def _is_known(coded: Coded) -> bool:
    """Whether caregraph's tables know a code (unknown ones pass through, counted)."""
    name = coded.system_name.upper()
    if name == "MDC":
        return _mdc_number(coded.code) in MDC
    if name in ("LN", "LOINC"):
        return coded.code in LOINC
    return is_known_system(coded.system_name)


@lru_cache(maxsize=8192)
def _code_of(text: str, d: Delimiters) -> tuple[Json, tuple[Coded, ...], tuple[str, ...]]:
    """OBX-3 text -> (CodeableConcept, triplets, unknown codes); memoized, pure."""
    coded = cwe_text(text, d)
    codings = []
    unknown = []
    for c in coded:
        if not _is_known(c):
            unknown.append(f"{c.system_name}|{c.code}")
        display = c.display
        number = _mdc_number(c.code) if c.system_name.upper() == "MDC" else None
        if number in MDC:
            display = display or MDC[number].reference_id
        elif c.system_name.upper() in ("LN", "LOINC"):
            display = LOINC.get(c.code, display)
        codings.append(fb.coding(c.system, c.code, display))
    text_display = next((c.display for c in coded if c.display), None)
    return fb.codeable_concept(codings, text_display), coded, tuple(unknown)


def _mdc_number(code: str) -> int | None:
    """An MDC code's number, or None where ``code`` cannot be one: MDC codes are 32-bit (at
    most 10 digits), and ``str.isdigit`` admits what ``int`` refuses (``²``; 5,000 digits,
    beyond Python's limit for converting text to an integer), which the fuzzer sent."""
    return int(code) if code.isascii() and code.isdigit() and len(code) <= 10 else None


@lru_cache(maxsize=4096)
def _unit_of(text: str, d: Delimiters) -> tuple[dict[str, Any], str | None]:
    """OBX-6 text -> (quantity unit fields, the unknown unit or None); memoized, pure.
    UCUM beside the MDC unit when the sender used MDC."""
    coded = cwe_text(text, d)
    if not coded:
        return {}, None
    unit = coded[0]
    name = unit.system_name.upper()
    if name == "MDC":
        code = _mdc_number(unit.code)
        if code is None:
            code = MDC_UNITS_BY_REFID.get(unit.display)
        mdc = MDC_UNITS.get(code) if code is not None else None
        mdc_coding = fb.coding(MDC_SYSTEM, unit.code, unit.display)
        ext = [fb.extension(MDC_UNIT_EXTENSION, "valueCoding", mdc_coding)]
        if mdc is None:
            return {"unit": unit.display or unit.code, "extensions": ext}, f"MDC|{unit.code}"
        return {
            "unit": unit.display or mdc.reference_id,
            "system": UCUM_SYSTEM,
            "code": mdc.ucum,
            "extensions": ext,
        }, None
    if name in ("UCUM", "ISO+"):
        return {"unit": unit.display or unit.code, "system": UCUM_SYSTEM, "code": unit.code}, None
    text = unit.code or unit.display
    ucum = UCUM_BY_TEXT.get(text)
    if ucum is None:
        return {"unit": unit.display or text}, f"{unit.system_name}|{text}"
    return {"unit": text, "system": UCUM_SYSTEM, "code": ucum}, None


def _nm_quantity(obx: Segment, text: str, unit_text: str) -> Json:
    """The valueQuantity of an NM row whose OBX-5 first repetition is ``text`` (as
    ``_value`` makes it, a new dict each time: only the extensions inside are shared).

    Raises:
        Hl7MappingError: not a number (AE at OBX-5).
    """
    d = obx.delimiters
    known = _nm_quantity_of(text, unit_text, d)
    if known is None:
        parse_nm(unescape(text, d), obx, 5)  # raises, with the row's location
        raise AssertionError("parse_nm accepted what nm_decimal refused")  # pragma: no cover
    out = dict(known)
    if "extension" in out:
        out["extension"] = list(out["extension"])
    return out


@lru_cache(maxsize=8192)
def _nm_quantity_of(text: str, unit_text: str, d: Delimiters) -> Json | None:
    """``_nm_quantity`` memoized on the value and unit texts (vital signs repeat their
    values); None when ``text`` is not a number. Callers copy the result."""
    number = nm_decimal(unescape(text, d))
    if number is None:
        return None
    unit = _unit_of(unit_text, d)[0]
    return fb.quantity(
        number,
        unit=unit.get("unit"),
        system=unit.get("system"),
        code=unit.get("code"),
        extensions=unit.get("extensions", ()),
    )


def _simple_quantity(value: Decimal, unit: dict[str, Any]) -> Json:
    return fb.quantity(
        value, unit=unit.get("unit"), system=unit.get("system"), code=unit.get("code")
    )


# --- values --------------------------------------------------------------------------


def _value(ctx: Context, obx: Segment, unit: dict[str, Any]) -> tuple[fb.ValueKey | None, Any]:
    """The value[x] of an OBX by its value type (OBX-2): NM, SN, ST/TX/FT, CWE/CE/CNE,
    TS/DTM/DT (NA and ED are not one value: ``numeric_array``, ``encapsulated``). Other
    types are refused rather than guessed (AE at OBX-2)."""
    vtype = obx.component(2).strip().upper()
    d = obx.delimiters
    reps = obx.reps(5)
    if not any(r.strip() for r in reps):
        return None, None
    if vtype == "NM":
        return "valueQuantity", fb.quantity(
            parse_nm(unescape(reps[0], d), obx, 5),
            unit=unit.get("unit"),
            system=unit.get("system"),
            code=unit.get("code"),
            extensions=unit.get("extensions", ()),
        )
    if vtype == "SN":
        return _structured_numeric(obx, unit)
    if vtype in ("ST", "TX", "FT"):
        return "valueString", "\n".join(unescape(r, d) for r in reps)
    if vtype in ("CWE", "CE", "CNE", "CF"):
        return "valueCodeableConcept", cwe_concept(obx, 5)
    if vtype in ("TS", "DTM", "DT"):
        return "valueDateTime", parse_ts(obx, 5, ctx.options)
    raise Hl7MappingError(
        f"value type {vtype or '(empty)'} is not mapped"
        " (NM, SN, NA, ED, ST, TX, FT, CWE, CE, TS, DT)",
        obx.where(2),
        DATA_TYPE_ERROR,
    )


def _structured_numeric(obx: Segment, unit: dict[str, Any]) -> tuple[fb.ValueKey, Any]:
    d = obx.delimiters
    c = [unescape(x, d).strip() for x in obx.components(5)] + ["", "", "", ""]
    comparator, num1, sep, num2 = c[0], c[1], c[2], c[3]
    if comparator not in ("", "=") and comparator not in _COMPARATORS:
        raise Hl7MappingError(f"SN comparator {comparator!r}", obx.where(5, 1), DATA_TYPE_ERROR)
    if not sep and not num2:
        value = fb.quantity(
            parse_nm(num1, obx, 5),
            unit=unit.get("unit"),
            system=unit.get("system"),
            code=unit.get("code"),
            comparator=_COMPARATORS.get(comparator),
            extensions=unit.get("extensions", ()),
        )
        return "valueQuantity", value
    if comparator not in ("", "="):
        raise Hl7MappingError(
            "SN with both a comparator and a range", obx.where(5), DATA_TYPE_ERROR
        )
    low, high = parse_nm(num1, obx, 5), parse_nm(num2, obx, 5)
    if sep == "-":
        return "valueRange", {
            "low": _simple_quantity(low, unit),
            "high": _simple_quantity(high, unit),
        }
    if sep in (":", "/"):
        return "valueRatio", {"numerator": fb.quantity(low), "denominator": fb.quantity(high)}
    raise Hl7MappingError(f"SN separator {sep!r}", obx.where(5, 3), DATA_TYPE_ERROR)


def numeric_array(obx: Segment, unit: dict[str, Any], code: Json) -> list[Json]:
    """The components of an NA value (module docstring); AE at OBX-5 for a non-number."""
    d = obx.delimiters
    rows = list(obx.reps(5))
    while rows and not rows[-1].strip():
        rows.pop()
    matrix = len(rows) > 1
    out: list[Json] = []
    for r, row in enumerate(rows, 1):
        for c, raw in enumerate(row.split(d.component), 1):
            text = unescape(raw, d).strip()
            index = f"{r},{c}" if matrix else str(c)
            component: Json = {
                "extension": [fb.extension(ARRAY_INDEX_EXTENSION, "valueString", index)],
                "code": code,
            }
            if text:
                try:
                    number = Decimal(text)
                except InvalidOperation:
                    number = None
                if number is None or not number.is_finite():
                    raise Hl7MappingError(
                        f"NA element {index} is not a number: {text[:40]!r}",
                        obx.where(5, c),
                        DATA_TYPE_ERROR,
                    )
                component["valueQuantity"] = _simple_quantity(number, unit)
            else:
                component["dataAbsentReason"] = fb.codeable_concept(
                    [fb.coding(DATA_ABSENT_REASON, "unknown")]
                )
            out.append(component)
    return out


def encapsulated(ctx: Context, obx: Segment, title: str | None) -> Json:
    """The Attachment of an ED value, in its R4 cross-version extension (module docstring).

    ED: 1 source application, 2 type of data (table 0191), 3 data subtype (table 0291),
    4 encoding (A = ASCII text, Hex, Base64; NONE as A), 5 the data. The data are
    decoded and re-encoded as base64 (what Attachment.data holds), so a broken payload is
    refused with AE at OBX-5.5 rather than stored unreadable.
    """
    d = obx.delimiters
    c = [unescape(x, d) for x in obx.components(5)] + ["", "", "", "", ""]
    kind, subtype, encoding, text = c[1].strip(), c[2].strip(), c[3].strip().upper(), c[4]
    if not text.strip():
        raise Hl7MappingError("ED without data (OBX-5.5)", obx.where(5, 5), REQUIRED_FIELD_MISSING)
    try:
        if encoding in ("BASE64", "B64"):
            data = base64.b64decode("".join(text.split()), validate=True)
        elif encoding == "HEX":
            data = bytes.fromhex("".join(text.split()))
        elif encoding in ("A", "NONE", ""):
            data = text.encode("utf-8")
        else:
            raise Hl7MappingError(
                f"ED encoding {encoding!r} is not A, Hex or Base64 (table 0299)",
                obx.where(5, 4),
                TABLE_VALUE_NOT_FOUND,
            )
    except (binascii.Error, ValueError) as exc:
        raise Hl7MappingError(
            f"ED data is not valid {encoding.lower()}: {exc}", obx.where(5, 5), DATA_TYPE_ERROR
        ) from exc
    if "/" in subtype:
        content_type = subtype.lower()
    elif subtype.upper() in ED_SUBTYPES:
        content_type = ED_SUBTYPES[subtype.upper()]
    else:
        if subtype:
            ctx.unknown("unknown_code", f"HL70291|{subtype}")
        content_type = ED_TYPES.get(kind.upper(), "application/octet-stream")
    attachment = {
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
        "title": fb.fhir_string(title),
    }
    return fb.extension(EXT_R5_OBSERVATION_VALUE, "valueAttachment", fb.compact(attachment))


_RANGE = re.compile(r"\s*(?P<low>[+-]?[\d.]+)\s*-\s*(?P<high>[+-]?[\d.]+)\s*\Z")
_BOUND = re.compile(r"\s*(?P<op>[<>]=?)\s*(?P<num>[+-]?[\d.]+)\s*\Z")


def _reference_range(field: str, d: Delimiters, unit: dict[str, Any]) -> list[Json]:
    """OBX-7 (``field``, as written): ``low-high``, ``<x``/``<=x`` (high only), ``>x``/``>=x``
    (low only), else text."""
    text = unescape(field, d).strip()
    if not text:
        return []
    try:
        m = _RANGE.match(text)
        if m:
            return [
                fb.reference_range(
                    low=_simple_quantity(Decimal(m["low"]), unit),
                    high=_simple_quantity(Decimal(m["high"]), unit),
                    text=text,
                )
            ]
        m = _BOUND.match(text)
        if m:
            q = _simple_quantity(Decimal(m["num"]), unit)
            if m["op"].startswith("<"):
                return [fb.reference_range(high=q, text=text)]
            return [fb.reference_range(low=q, text=text)]
    except ArithmeticError:
        pass
    return [fb.reference_range(text=text)]


def _interpretation(field: str, d: Delimiters) -> tuple[list[Json], list[str]]:
    """OBX-8 (``field``, as written) -> (interpretations, the unknown codes)."""
    out = []
    unknown = []
    for rep in field.split(d.repetition) if field else []:
        code = unescape(rep.split(d.component, 1)[0], d).strip()
        if not code:
            continue
        if code in _V3_INTERPRETATION_CODES:
            out.append(fb.codeable_concept([fb.coding(V3_INTERPRETATION, code)]))
        else:
            unknown.append(f"HL70078|{code}")
            out.append(fb.codeable_concept([fb.coding(V2_0078, code)]))
    return out, unknown


# --- devices -------------------------------------------------------------------------


#: Entries of the memos keyed by a monitor (its equipment, devices, metrics): a hospital's
#: fleet cycles through all its monitors every second, so a memo smaller than the fleet
#: misses on every message (least recently used is then always the next one asked for).
#: Sized for 6,000 monitors of ten metrics; an entry is a few hundred bytes to ~1 KiB.
_FLEET = 65_536


@lru_cache(maxsize=_FLEET)
def _equipment(field: str, d: Delimiters) -> tuple[str, str] | None:
    """(system, value) of the equipment identifier in OBX-18 (``field``, as written): an
    EUI-64 when one is marked or looks like one (written with hyphens, as the PoCD IG
    does), else the first entity identifier with its namespace."""
    candidates = []
    for rep in field.split(d.repetition) if field else []:
        c = [unescape(x, d).strip() for x in rep.split(d.component)] + ["", "", "", ""]
        if c[0]:
            candidates.append(c)
    for c in candidates:
        marked = any("EUI-64" in x.upper() for x in c[1:4])
        if marked or _EUI64.match(c[0]):
            value = c[0].replace("-", "").replace(":", "")
            if _EUI64.match(value):
                value = "-".join(value[i : i + 2] for i in range(0, 16, 2)).upper()
                return EUI64_SYSTEM, value
            return EUI64_SYSTEM, c[0]
    if candidates:
        c = candidates[0]
        return f"urn:caregraph:hl7v2:equipment:{c[1] or 'local'}", c[0]
    return None


class DeviceTree:
    """The Devices of one PCD-01 message, built as rows arrive (hierarchy rows may come
    before or not at all: missing levels are created without a type)."""

    def __init__(self, ctx: Context, subject: Json | None, bed: Json | None) -> None:
        self.ctx = ctx
        self.subject = subject
        self.bed = bed
        self._equipment: dict[str, tuple[str, str]] = {}
        self.seen_results: dict[tuple[str, str, str], int] = {}
        self.pcd01 = ctx.header.is_pcd01  # asked by every row
        self._refs: dict[tuple[tuple[str, str], str], Json] = {}

    def equipment(self, path: str, given: tuple[str, str] | None) -> tuple[str, str]:
        """The equipment a row belongs to: its own OBX-18, else the one an earlier row of
        the same MDS named (many gateways send OBX-18 on the MDS row only), else the
        sending system itself."""
        mds = path.split(".", 1)[0]
        if given is not None:
            self._equipment.setdefault(mds, given)
            return given
        return self._equipment.get(mds) or (
            "urn:caregraph:hl7v2:sender",
            f"{self.ctx.facility}/{self.ctx.header.sending_application}",
        )

    def device_id(self, equipment: tuple[str, str], path: str) -> str:
        return _device_id(equipment, path)

    def node(self, equipment: tuple[str, str], path: str, kind: Json | None) -> Json:
        """The Device at ``path`` (``1``, ``1.2``, ``1.2.3``); parents made as needed."""
        known = self._refs.get((equipment, path))
        if known is not None and kind is None:
            return known  # every metric row of a channel asks for it again
        parts = path.split(".")
        parent: Json | None = None
        for depth in range(1, len(parts) + 1):
            sub = ".".join(parts[:depth])
            resource_id = self.device_id(equipment, sub)
            key = ("Device", resource_id)
            if key in self.ctx.resources:
                existing = self.ctx.resources[key]
                if depth == len(parts) and kind and "type" not in existing:
                    existing["type"] = kind
                parent = fb.reference("Device", resource_id)
                continue
            is_mds = depth == 1
            resource = fb.device(
                resource_id,
                identifiers=[fb.identifier(equipment[0], equipment[1])] if is_mds else [],
                device_type=kind if depth == len(parts) else None,
                parent=parent,
                patient_=self.subject if is_mds else None,
                location_=self.bed if is_mds else None,
                source=None,  # entities: the Provenance names the message
            )
            parent = self.ctx.add(resource)
        assert parent is not None
        self._refs[(equipment, path)] = parent
        return parent

    def metric(
        self,
        equipment: tuple[str, str],
        path: str,
        device_path: str,
        code_text: str,
        unit_text: str,
        d: Delimiters,
    ) -> Json:
        """The DeviceMetric of a metric row (path with four levels, or fewer when a
        sender flattens the tree: the metric then hangs under ``device_path``, its
        deepest device, ``_device_path(path)``); ``code_text`` and ``unit_text`` are the
        first repetitions of OBX-3 and OBX-6."""
        channel = self.node(equipment, device_path, None)
        mds = path.split(".", 1)[0]
        resource = _metric_resource(
            equipment,
            path,
            self.device_id(equipment, mds),
            channel["reference"] if device_path != mds else None,
            code_text,
            unit_text,
            d,
        )
        return self.ctx.add(dict(resource))


def _device_path(path: str) -> str:
    """The path of the device a metric at ``path`` hangs under: its channel, or the deepest
    device above it when a sender flattens the tree."""
    parts = path.split(".")
    return containment_path(".".join(parts[:-1])) if len(parts) > 1 else parts[0]


@lru_cache(maxsize=_FLEET)
def _device_id(equipment: tuple[str, str], path: str) -> str:
    """A Device's id: its equipment and containment path (a monitor's in every message)."""
    return deterministic_id("Device", *equipment, path)


@lru_cache(maxsize=_FLEET)
def _metric_resource(
    equipment: tuple[str, str],
    path: str,
    mds_id: str,
    channel: str | None,
    code_text: str,
    unit_text: str,
    d: Delimiters,
) -> Json:
    """A DeviceMetric from its row's OBX-3/OBX-6 text, memoized: a monitor sends the same
    metrics in every message. Callers get a copy of the top level; nested values are
    shared and never mutated."""
    code = _code_of(code_text, d)[0]
    unit = _unit_of(unit_text, d)[0]
    ext = unit.get("extensions") or []
    mdc_unit = ext[0]["valueCoding"] if ext else None
    if mdc_unit:
        unit_concept: Json | None = fb.codeable_concept([mdc_unit])
    elif unit.get("unit"):
        unit_concept = fb.codeable_concept([], unit["unit"])
    else:
        unit_concept = None
    code_key = code.get("coding", [{}])[0].get("code", "")
    return fb.device_metric(
        deterministic_id("DeviceMetric", *equipment, path, code_key),
        metric_type=code,
        unit=unit_concept,
        source_device=fb.reference("Device", mds_id),
        parent={"reference": channel} if channel else None,
        operational_status="on",
        source=None,
    )


# --- rows ----------------------------------------------------------------------------


def results(
    ctx: Context,
    segments: list[Segment],
    subject: Json | None,
    encounter: Json | None,
    bed: Json | None,
) -> None:
    """Map the OBR/OBX rows of one patient group."""
    obr: Segment | None = None
    tree = DeviceTree(ctx, subject, bed)
    for seg in segments:
        if seg.name == "OBR":
            obr = seg
        elif seg.name == "OBX":
            _row(ctx, seg, obr, subject, encounter, tree)


def _observation_id(
    ctx: Context,
    obx: Segment,
    obr: Segment | None,
    pcd: bool,
    tree: DeviceTree,
    effective: str | None,
) -> str:
    """A lab result's id is its natural key, the filler order number (OBR-3) + OBX-3 code
    + OBX-4 sub-id, so a correction (OBX-11 ``C``) sent later under a new MSH-10 updates
    the result it corrects. Device readings, and results without a filler number, are new
    facts in every message: sending facility + MSH-10 + position, after the observation
    time (OBX-14, else OBR-7) when it is an instant, so the store's indexes grow at their
    end (``adapters.ids.ordered_id``). Not MSH-7: some senders stamp a retransmission
    anew, and its readings must keep their ids."""
    filler = obr.field(3).strip() if obr is not None else ""
    if pcd or not filler:
        when = _instant(effective) if effective and "T" in effective else None
        if when is None:
            return ctx.message_scoped_id("Observation", "OBX", obx.occurrence)
        if ctx.first_reading_at is None:
            ctx.first_reading_at = when
        return ordered_id(
            when, "Observation", ctx.facility, ctx.header.control_id, "OBX", obx.occurrence
        )
    reps3 = obx.reps(3)
    code = reps3[0].split(obx.delimiters.component, 1)[0] if reps3 else ""
    natural = (filler, code, obx.field(4).strip())
    # the same key twice in one message (repeated rows): both kept, in order
    seen = tree.seen_results
    seen[natural] = nth = seen.get(natural, 0) + 1
    return deterministic_id("Observation", ctx.facility, *natural, nth)


@lru_cache(maxsize=1024)
def _instant(effective: str) -> datetime:
    """``datetime.fromisoformat``, memoized: every reading of a message has one time."""
    return datetime.fromisoformat(effective)


def containment_path(raw: str) -> str:
    """OBX-4 without its unused levels: PCD-01 senders write ``1.0.0.0`` for the MDS,
    ``1.5.0.0`` for a VMD, ``1.5.1.0`` for a channel and ``1.5.1.1`` for a metric (0 = no
    such level); others write ``1``, ``1.5``... Both give ``1``, ``1.5``, ``1.5.1``."""
    parts = raw.strip().split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts)


def _is_pcd_row(pcd01: bool, path_field: str, coded: tuple[Coded, ...]) -> bool:
    """``pcd01``: the message declares the IHE PCD-01 profile; ``path_field``: OBX-4."""
    path = path_field.strip()
    return (
        bool(path)
        and bool(_PATH.match(path))
        and (pcd01 or any(c.system_name.upper() == "MDC" for c in coded))
    )


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A row ``_row`` refuses whatever its value: text, OBX field, table 0357 code."""

    text: str
    field: int
    code: str


@dataclass(frozen=True, slots=True)
class _RowPlan:
    """What the unchanging fields of an OBX row say: OBX-2 value type, OBX-3 code, OBX-4
    containment path, OBX-6 unit, OBX-11 status. A monitor sends the
    same rows in every message, only OBX-5 (value) and OBX-14 (time) change, so this is
    worked out once per distinct text (``_row_plan``) rather than once per row."""

    code: Json
    unknown_codes: tuple[str, ...]
    status_code: str
    pcd: bool
    path: str
    device_path: str
    unit: dict[str, Any]
    unknown_unit: str | None
    vtype: str
    code_text: str
    unit_text: str
    vital: bool
    """A vital sign (category): a device row, or an MDC code."""


@lru_cache(maxsize=4096)
def _row_plan(
    pcd01: bool,
    d: Delimiters,
    vtype_field: str,
    code_field: str,
    path_field: str,
    unit_field: str,
    status_field: str,
) -> _RowPlan | _Refusal:
    """The ``_RowPlan`` of a row's fields as written (OBX-2, 3, 4, 6, 11), or why the
    row is refused (an empty OBX-3 first, then a status outside table 0085: the order in
    which ``_row`` checks them). Memoized, pure; its values are shared, never mutated.
    OBX-18, the equipment, is not part of it: every monitor has its own, and with it in
    the key a fleet of 1,000 monitors made 13,000 plans, more than the memo holds, so
    it missed on every row (see ``_FLEET``; ``bench/hl7.py`` [1], 1,000 monitors)."""
    code_text = code_field.split(d.repetition, 1)[0]
    concept, coded, unknown = _code_of(code_text, d)
    if not coded:
        return _Refusal("OBX-3 (observation identifier) is empty", 3, "101")
    status_code = status_field.split(d.repetition, 1)[0].split(d.component, 1)[0]
    status_code = status_code.strip().upper()
    if status_code and status_code not in _STATUS:
        return _Refusal(
            f"result status {status_code!r} is not in table 0085", 11, TABLE_VALUE_NOT_FOUND
        )
    pcd = _is_pcd_row(pcd01, path_field, coded)
    unit_text = unit_field.split(d.repetition, 1)[0]
    unit, unknown_unit = _unit_of(unit_text, d)
    path = containment_path(path_field) if pcd else ""
    vtype = vtype_field.split(d.repetition, 1)[0].split(d.component, 1)[0]
    return _RowPlan(
        code=concept,
        unknown_codes=unknown,
        status_code=status_code,
        pcd=pcd,
        path=path,
        device_path=_device_path(path) if pcd else "",
        unit=unit,
        unknown_unit=unknown_unit,
        vtype=vtype.strip().upper(),
        code_text=code_text,
        unit_text=unit_text,
        vital=pcd or any(c.system_name.upper() == "MDC" for c in coded),
    )


@lru_cache(maxsize=4096)
def _row_details(
    range_field: str, interpretation_field: str, method_field: str, unit_text: str, d: Delimiters
) -> tuple[tuple[Json, ...], tuple[Json, ...], tuple[str, ...], Json | None]:
    """(reference ranges, interpretations, their unknown codes, method) of a row from
    OBX-7, OBX-8, OBX-17 and its unit; memoized like ``_row_plan`` (its values are
    shared, never mutated)."""
    unit = _unit_of(unit_text, d)[0]
    interpretation, unknown = _interpretation(interpretation_field, d)
    method = (
        coded_concept(cwe_text(method_field.split(d.repetition, 1)[0], d)) if method_field else {}
    )
    return (
        tuple(_reference_range(range_field, d, unit)),
        tuple(interpretation),
        tuple(unknown),
        method or None,
    )


_OBX_FIELDS = 19  # OBX-18 (equipment) is the last field a row reads


def _row(
    ctx: Context,
    obx: Segment,
    obr: Segment | None,
    subject: Json | None,
    encounter: Json | None,
    tree: DeviceTree,
) -> None:
    d = obx.delimiters
    fields = obx.fields
    if len(fields) < _OBX_FIELDS:
        fields = fields + [""] * (_OBX_FIELDS - len(fields))
    plan = _row_plan(tree.pcd01, d, fields[2], fields[3], fields[4], fields[6], fields[11])
    if isinstance(plan, _Refusal):
        raise Hl7MappingError(plan.text, obx.where(plan.field), plan.code)
    code = plan.code
    for what in plan.unknown_codes:
        ctx.unknown("unknown_code", what)
    status_code = plan.status_code
    value_field = fields[5]
    has_value = any(r.strip() for r in value_field.split(d.repetition))
    device_ref: Json | None = None
    unit = plan.unit
    if plan.unknown_unit:
        ctx.unknown("unknown_unit", plan.unknown_unit)
    if plan.pcd:
        path = plan.path
        equipment = tree.equipment(path, _equipment(fields[18], d))
        depth = path.count(".") + 1
        if depth < 4 and not has_value:
            tree.node(equipment, path, code)  # MDS / VMD / channel description row
            return
        device_ref = tree.metric(
            equipment, path, plan.device_path, plan.code_text, plan.unit_text, d
        )
        if not has_value and status_code == "X":
            return
    if not has_value and not status_code:
        raise Hl7MappingError(
            "OBX has neither a value nor a status", obx.where(5), REQUIRED_FIELD_MISSING
        )
    vtype = plan.vtype
    components: list[Json] = []
    extensions: list[Json] = []
    value_key: fb.ValueKey | None = None
    value: Any = None
    if not has_value:
        pass  # no value[x]: a status-only row
    elif vtype == "NM":
        value_key = "valueQuantity"
        value = _nm_quantity(obx, value_field.split(d.repetition, 1)[0], plan.unit_text)
    elif vtype == "NA":
        components = numeric_array(obx, unit, code)
    elif vtype == "ED":
        extensions = [encapsulated(ctx, obx, code.get("text"))]
    else:
        value_key, value = _value(ctx, obx, unit)
    effective = parse_ts(obx, 14, ctx.options)
    if effective is None and obr is not None:
        effective = parse_ts(obr, 7, ctx.options)
    resource_id = _observation_id(ctx, obx, obr, plan.pcd, tree, effective)
    ranges, interpretation, unknown, method = _row_details(
        fields[7], fields[8], fields[17], plan.unit_text, d
    )
    for what in unknown:
        ctx.unknown("unknown_code", what)
    observation = fb.observation(
        resource_id,
        status=_STATUS.get(status_code, "unknown"),
        code=code,
        value_key=value_key,
        value=value,
        categories=["vital-signs" if plan.vital else "laboratory"],
        subject=subject,
        encounter_=encounter,
        effective=effective,
        issued=ctx.received_at,
        interpretation=interpretation,
        reference_ranges=ranges,
        device=device_ref,
        method=method,
        components=components,
        extensions=extensions,
        data_absent_reason=None if value_key or components or extensions else "unknown",
        source=ctx.source,
    )
    ctx.add(observation)


__all__ = [
    "ARRAY_INDEX_EXTENSION",
    "EUI64_SYSTEM",
    "EXT_R5_OBSERVATION_VALUE",
    "MDC_UNIT_EXTENSION",
    "DeviceTree",
    "containment_path",
    "encapsulated",
    "numeric_array",
    "results",
]
