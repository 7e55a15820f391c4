"""HL7 v2 data types (TS/DTM, DT, NM, CX, XPN, XAD, XTN, XCN, HD, CWE, EI) to FHIR pieces.

Functions take a ``Segment`` and a field position so errors can name where they happened;
values are unescaped here, once, at the edge of the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final
from urllib.parse import quote

from adapters import fhir_build as fb
from adapters.codes.systems import coding_system_uri
from adapters.hl7v2.er7 import Delimiters, Segment, unescape
from adapters.hl7v2.errors import DATA_TYPE_ERROR, Hl7MappingError

Json = fb.Json

V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
AUTHORITY_PREFIX: Final = "urn:caregraph:hl7v2:authority:"


@dataclass(frozen=True, slots=True)
class Options:
    """Site choices the mapping cannot guess.

    ``default_tz``: the zone of timestamps sent without an offset (the hospital's).
    ``authority_systems``: assigning-authority namespace -> ``identifier.system`` URI, for
    authorities that send no universal id (e.g. ``{"HOSP": "urn:oid:1.2.3"}``).
    """

    default_tz: tzinfo = UTC
    authority_systems: dict[str, str] = field(default_factory=dict)


# --- time ------------------------------------------------------------------------------

_TS = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?\Z"
)


def parse_ts(
    seg: Segment, n: int, options: Options, *, component: int = 1, rep: int = 0
) -> str | None:
    """A TS/DTM (first component of field ``n``) as a FHIR dateTime keeping its precision;
    None when empty. A time without an offset is taken in ``options.default_tz``.

    Raises:
        Hl7MappingError: not a valid timestamp (code 102).
    """
    raw = seg.component(n, component, rep).strip()
    if not raw:
        return None
    try:
        return _ts_to_fhir(raw, options.default_tz)
    except ValueError as exc:
        raise Hl7MappingError(str(exc), seg.where(n), DATA_TYPE_ERROR) from exc


@lru_cache(maxsize=4096)
def _ts_to_fhir(raw: str, default_tz: tzinfo) -> str:
    """The conversion behind ``parse_ts``, memoized: a PCD-01 message repeats one device
    time on every row, and a feed repeats it across messages. Raises ValueError."""
    m = _TS.match(raw)
    if m is None:
        raise ValueError(f"not an HL7 timestamp: {raw[:40]!r}")
    g = m.groupdict()
    try:
        if g["h"] is None:
            # Date precision: FHIR allows YYYY, YYYY-MM, YYYY-MM-DD without a zone.
            datetime(int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1))
            out = g["y"]
            if g["mo"]:
                out += f"-{g['mo']}"
                if g["d"]:
                    out += f"-{g['d']}"
            return out
        tz = default_tz
        if g["tz"]:
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][3:5])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        frac = g["f"] or ""
        value = datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"]),
            int(g["mi"] or 0),
            int(g["s"] or 0),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=tz,
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid time: {raw[:40]!r}") from exc
    if value.utcoffset() is None:  # a zone without a fixed offset at this moment
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="milliseconds" if frac else "seconds")


def parse_date(seg: Segment, n: int, options: Options) -> str | None:
    """A DT/TS reduced to a FHIR date (birth dates)."""
    value = parse_ts(seg, n, options)
    return value[:10] if value else None


# --- numbers ---------------------------------------------------------------------------

_NM = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)\Z")


def nm_decimal(text: str) -> Decimal | None:
    """An HL7 NM as a Decimal, or None when ``text`` is not one (``parse_nm`` says where)."""
    text = text.strip()
    return Decimal(text) if _NM.match(text) else None


def parse_nm(text: str, seg: Segment, n: int) -> Decimal:
    """An HL7 NM as a Decimal.

    Raises:
        Hl7MappingError: not a number (code 102).
    """
    text = text.strip()
    if not _NM.match(text):
        raise Hl7MappingError(f"not a number: {text[:40]!r}", seg.where(n), DATA_TYPE_ERROR)
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise Hl7MappingError(f"not a number: {text!r}", seg.where(n)) from exc


# --- codes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coded:
    """One CWE triplet, unescaped: code, display, coding-system name."""

    code: str
    display: str
    system_name: str

    @property
    def system(self) -> str | None:
        return coding_system_uri(self.system_name)

    def coding(self) -> Json:
        return fb.coding(self.system, self.code, self.display)


def cwe(seg: Segment, n: int, rep: int = 0) -> list[Coded]:
    """The primary and alternate triplets of a CE/CWE/CNE field (components 1-3, 4-6)."""
    reps = seg.reps(n)
    return list(cwe_text(reps[rep], seg.delimiters)) if rep < len(reps) else []


@lru_cache(maxsize=8192)
def cwe_text(text: str, d: Delimiters) -> tuple[Coded, ...]:
    """``cwe`` of one repetition's text, memoized: feeds repeat the same codes endlessly."""
    comps = [unescape(c, d) for c in text.split(d.component)] + [""] * 6
    out = []
    for start in (0, 3):
        code, display, system = comps[start], comps[start + 1], comps[start + 2]
        if code.strip() or display.strip():
            out.append(Coded(code.strip(), display.strip(), system.strip()))
    return tuple(out)


def cwe_concept(seg: Segment, n: int, rep: int = 0) -> Json:
    """A CodeableConcept from a CWE field; text from the first display."""
    return coded_concept(cwe(seg, n, rep))


def coded_concept(coded: Sequence[Coded]) -> Json:
    """The CodeableConcept of CWE triplets (``cwe_concept`` of text already split)."""
    text = next((c.display for c in coded if c.display), None)
    return fb.codeable_concept([c.coding() for c in coded if c.code], text)


# --- identifiers -----------------------------------------------------------------------


def hd_system(namespace: str, universal_id: str, uid_type: str, options: Options) -> str | None:
    """The URI naming an assigning authority (HD): the configured one for its namespace,
    else its universal id (ISO -> urn:oid, UUID -> urn:uuid, URI as is), else a caregraph
    URN built from the namespace; None when the HD is empty."""
    namespace, universal_id, uid_type = namespace.strip(), universal_id.strip(), uid_type.strip()
    configured = options.authority_systems.get(namespace) if namespace else None
    if configured:
        return configured
    if universal_id:
        kind = uid_type.upper()
        if kind == "ISO" and re.fullmatch(r"[0-2](\.\d+)+", universal_id):
            return f"urn:oid:{universal_id}"
        if kind == "UUID":
            return f"urn:uuid:{universal_id.lower()}"
        if kind in ("URI", "URL"):
            return fb.fhir_uri(universal_id)
        return AUTHORITY_PREFIX + quote(universal_id, safe="")
    if namespace:
        return AUTHORITY_PREFIX + quote(namespace, safe="")
    return None


def hd_text(seg: Segment, n: int, component: int = 1) -> tuple[str, str, str]:
    """An HD held in a whole field (MSH-4) or, when ``component`` > 1 or the field has
    components, as subcomponents of one component (CX.4): namespace, universal id, type."""
    d = seg.delimiters
    if component == 0:
        parts = [unescape(p, d) for p in seg.components(n)]
    else:
        parts = [unescape(p, d) for p in seg.subcomponents(n, component)]
    parts += ["", "", ""]
    return parts[0], parts[1], parts[2]


def cx_identifiers(seg: Segment, n: int, options: Options, fallback_system: str) -> list[Json]:
    """Identifiers from a repeating CX field (PID-3, MRG-1, PV1-19): system from the
    assigning authority (CX.4), type from CX.5 (table 0203). Without an authority the
    identifier is taken as the sender's own (``fallback_system``)."""
    d = seg.delimiters
    out = []
    for rep in range(len(seg.reps(n))):
        value = unescape(seg.component(n, 1, rep), d).strip()
        if not value:
            continue
        ns, uid, kind = (unescape(p, d) for p in ([*seg.subcomponents(n, 4, rep), "", "", ""][:3]))
        system = hd_system(ns, uid, kind, options) or fallback_system
        type_code = unescape(seg.component(n, 5, rep), d).strip()
        out.append(
            fb.identifier(
                system,
                value,
                type_code=fb.codeable_concept([fb.coding(V2_0203, type_code)])
                if type_code
                else None,
                use="official" if type_code == "MR" else None,
            )
        )
    return out


_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "T": "temp"}


def xpn_names(seg: Segment, n: int) -> list[Json]:
    """HumanNames from a repeating XPN field (PID-5)."""
    d = seg.delimiters
    out = []
    for rep in range(len(seg.reps(n))):
        c = [unescape(x, d) for x in seg.components(n, rep)] + [""] * 7
        family = unescape(seg.subcomponents(n, 1, rep)[0], d) if c[0] else ""
        name = fb.human_name(
            family=family,
            given=[g for g in (c[1], c[2]) if g.strip()],
            suffix=[s for s in (c[3], c[5]) if s.strip()],
            prefix=[c[4]] if c[4].strip() else [],
            use=_NAME_USE.get(c[6].strip()),
        )
        if name:
            out.append(name)
    return out


def xcn_name(seg: Segment, n: int, rep: int = 0) -> tuple[str, str, str, Json]:
    """An XCN (PV1-7, PV1-17): id, its authority (namespace, universal id), the name."""
    d = seg.delimiters
    c = [unescape(x, d) for x in seg.components(n, rep)] + [""] * 13
    family = unescape(seg.subcomponents(n, 2, rep)[0], d) if c[1] else ""
    name = fb.human_name(
        family=family,
        given=[g for g in (c[2], c[3]) if g.strip()],
        suffix=[s for s in (c[4], c[6]) if s.strip()],
        prefix=[c[5]] if c[5].strip() else [],
    )
    ns, uid, _ = [*seg.subcomponents(n, 9, rep), "", "", ""][:3]
    return c[0].strip(), unescape(ns, d), unescape(uid, d), name


_ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old"}
_ADDRESS_TYPE = {"M": "postal"}


def xad_addresses(seg: Segment, n: int) -> list[Json]:
    """Addresses from a repeating XAD field (PID-11)."""
    d = seg.delimiters
    out = []
    for rep in range(len(seg.reps(n))):
        c = [unescape(x, d) for x in seg.components(n, rep)] + [""] * 9
        street = unescape(seg.subcomponents(n, 1, rep)[0], d) if c[0] else ""
        kind = c[6].strip()
        addr = fb.address(
            lines=[x for x in (street, c[1]) if x.strip()],
            city=c[2],
            state=c[3],
            postal_code=c[4],
            country=c[5],
            district=c[8],
            use=_ADDRESS_USE.get(kind),
            address_type=_ADDRESS_TYPE.get(kind),
        )
        if addr:
            out.append(addr)
    return out


_TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "EMR": None}
_EQUIPMENT = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}


def xtn_telecom(seg: Segment, n: int, default_use: str | None) -> list[Json]:
    """ContactPoints from a repeating XTN field (PID-13 home, PID-14 business). The number
    is XTN.1 (v2.3 style) or else the unformatted XTN.12 or area code + local number;
    e-mail addresses are in XTN.4."""
    d = seg.delimiters
    out = []
    for rep in range(len(seg.reps(n))):
        c = [unescape(x, d).strip() for x in seg.components(n, rep)] + [""] * 12
        equipment = c[2].upper()
        system = _EQUIPMENT.get(equipment, "phone")
        if c[1] == "NET" or equipment in ("INTERNET", "X.400") or (c[3] and not c[0]):
            system, value = "email", c[3] or c[0]
        else:
            value = c[0] or c[11] or (f"({c[5]}) {c[6]}" if c[5] else c[6])
        use = _TELECOM_USE.get(c[1], default_use) if c[1] else default_use
        if equipment == "CP":
            use = "mobile"
        point = fb.contact_point(system, value, use)
        if point.get("value"):
            out.append(point)
    return out
