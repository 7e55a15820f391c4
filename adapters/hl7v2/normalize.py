"""HL7 v2 bytes -> FHIR resources. Pure: no clock, no I/O; the caller passes the receipt
time and gets everything back as values.

    normalize(raw, received_at=...) -> Normalized
        resources       plain FHIR R4 dicts with deterministic ids
        merges          A40 merge instructions for linkage (never applied here)
        patient_key     the bus key: the patient's identifier within its authority
        counters        unknown codes and units (passed through, counted)

Raises ``UnsupportedMessage`` (ACK AR) for types, events, versions, character sets out of
scope, ``Hl7MappingError`` (ACK AE) with a segment/field location for content that cannot
be mapped. Both are ``caregraph.errors.MappingError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from adapters import fhir_build as fb
from adapters.hl7v2 import oru, parties
from adapters.hl7v2.context import MESSAGE_SYSTEM, Context
from adapters.hl7v2.datatypes import Options, cx_identifiers, parse_ts
from adapters.hl7v2.er7 import Er7Message, Segment, tokenize, unescape
from adapters.hl7v2.errors import (
    APPLICATION_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    Hl7MappingError,
    Hl7ParseError,
    Location,
    UnsupportedMessage,
)
from adapters.hl7v2.header import Header, check_supported, decode, header_of, peek_header
from adapters.ids import deterministic_id

Json = fb.Json

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Larger messages are refused before any parsing: HL7 results and ADT are kilobytes; a
limit keeps every parse bounded in time and memory."""

DEFAULT_OPTIONS = Options()


@dataclass(frozen=True, slots=True)
class PatientMerge:
    """An A40: ``merged`` (MRG-1's identifiers) is the same person as ``surviving`` (PID-3's).

    Linkage decides what to do; nothing here overwrites a Patient. ``as_parameters`` gives
    the FHIR form, modelled on the Patient ``$merge`` operation's inputs.
    """

    surviving: Json
    surviving_identifiers: tuple[Json, ...]
    merged: Json
    merged_identifiers: tuple[Json, ...]
    source_message: str

    def as_parameters(self) -> Json:
        params: list[Json] = [{"name": "target-patient", "valueReference": self.surviving}]
        params += [
            {"name": "target-patient-identifier", "valueIdentifier": i}
            for i in self.surviving_identifiers
        ]
        params.append({"name": "source-patient", "valueReference": self.merged})
        params += [
            {"name": "source-patient-identifier", "valueIdentifier": i}
            for i in self.merged_identifiers
        ]
        params.append({"name": "source-message", "valueString": self.source_message})
        return {
            "resourceType": "Parameters",
            "id": deterministic_id(
                "Parameters", "merge", self.source_message, self.merged["reference"]
            ),
            "parameter": params,
        }


@dataclass(frozen=True, slots=True)
class Normalized:
    """What one message became."""

    header: Header
    received_at: datetime
    resources: list[Json]
    merges: list[PatientMerge] = field(default_factory=list)
    patient_key: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    unknown_codes: tuple[str, ...] = ()
    unmatched: dict[tuple[str, str], int] = field(default_factory=dict)
    """(code system, kind) -> count of the unknown codes and units, for the metrics."""


def parse(
    raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, peeked: Header | None = None
) -> tuple[Header, Er7Message]:
    """Check scope, decode and tokenize: everything a gateway needs to decide AR or go on.
    ``peeked`` is ``peek_header(raw)`` when the caller has read it already.

    Raises:
        UnsupportedMessage: too large, or type/event/version/charset out of scope (AR).
        Hl7ParseError: no MSH, bad delimiters, broken segments (AE).
    """
    if len(raw) > max_bytes:
        raise UnsupportedMessage(
            f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit",
            Location("MSH"),
            APPLICATION_ERROR,
        )
    if peeked is None:
        peeked = peek_header(raw)
    if peeked is None:
        raise Hl7ParseError("not an HL7 v2 message: no MSH segment", Location("MSH"), "100")
    check_supported(peeked)
    message = tokenize(decode(raw, peeked))
    msh = message.msh
    if msh.delimiters == peeked.delimiters and tuple(msh.fields) == peeked.raw_fields:
        # the same delimiters and fields make the same header (the usual case: MSH-18
        # names no character set that reads the first line differently)
        return peeked, message
    return header_of(message, peeked.text_codec), message


def patient_key(message: Er7Message, header: Header | None = None) -> str | None:
    """The bus key of a message: ``authority|id`` of the first PID-3 identifier (the MR one
    when typed), so all messages of one patient share a partition and keep their order.
    Independent of site options, so the gateway and the normalizer agree."""
    pid = message.first("PID")
    if pid is None:
        return None
    d = pid.delimiters
    best: tuple[str, str] | None = None
    for rep in range(len(pid.reps(3))):
        value = unescape(pid.component(3, 1, rep), d).strip()
        if not value:
            continue
        subs = pid.subcomponents(3, 4, rep)
        authority = unescape("&".join(s for s in subs if s), d).strip()
        if not authority:
            hdr = header or header_of(message)
            authority = hdr.sending_facility or hdr.sending_application
        if best is None or pid.component(3, 5, rep).strip() == "MR":
            best = (authority, value)
            if pid.component(3, 5, rep).strip() == "MR":
                break
    return f"{best[0]}|{best[1]}" if best else None


def normalize(
    raw: bytes, *, received_at: datetime, options: Options = DEFAULT_OPTIONS
) -> Normalized:
    """Map one HL7 v2 message to FHIR resources (see the module docstring)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    header, message = parse(raw)
    return normalize_parsed(header, message, received_at=received_at, options=options)


def normalize_parsed(
    header: Header,
    message: Er7Message,
    *,
    received_at: datetime,
    options: Options = DEFAULT_OPTIONS,
) -> Normalized:
    """``normalize`` for a message already through ``parse``."""
    ctx = Context(message, header, received_at, options)
    org = parties.organization(ctx)
    merges: list[PatientMerge] = []
    if header.message_type == "ADT":
        if header.trigger_event == "A40":
            merges = _merge(ctx, org)
        else:
            _adt(ctx, org)
    else:
        _oru(ctx, org)
    _provenance(ctx, org)
    return Normalized(
        header=header,
        received_at=received_at,
        resources=list(ctx.resources.values()),
        merges=merges,
        patient_key=patient_key(message, header),
        counters=dict(ctx.counters),
        unknown_codes=tuple(ctx.unknown_codes),
        unmatched=dict(ctx.unmatched),
    )


def _required(ctx: Context, name: str) -> Segment:
    seg = ctx.message.first(name)
    if seg is None:
        raise Hl7MappingError(
            f"{ctx.header.message_type}^{ctx.header.trigger_event} needs a {name} segment",
            Location(name),
            SEGMENT_SEQUENCE_ERROR,
        )
    return seg


def _adt(ctx: Context, org: Json) -> None:
    pid = _required(ctx, "PID")
    subject = parties.patient(ctx, pid, org)
    if subject is None:
        raise Hl7MappingError(
            "PID-3 holds no patient identifier", pid.where(3), REQUIRED_FIELD_MISSING
        )
    if ctx.header.trigger_event in ("A28", "A31"):
        return  # person information only: no visit
    pv1 = ctx.message.first("PV1")
    if pv1 is None:
        raise Hl7MappingError(
            f"ADT^{ctx.header.trigger_event} needs a PV1 segment",
            Location("PV1"),
            SEGMENT_SEQUENCE_ERROR,
        )
    parties.encounter(ctx, pv1, subject, org)


def _merge(ctx: Context, org: Json) -> list[PatientMerge]:
    merges = []
    pid: Segment | None = None
    for seg in ctx.message.segments:
        if seg.name == "PID":
            pid = seg
        elif seg.name == "MRG":
            if pid is None:
                raise Hl7MappingError("MRG before any PID", seg.where(), SEGMENT_SEQUENCE_ERROR)
            surviving = parties.patient(ctx, pid, org)
            if surviving is None:
                raise Hl7MappingError("PID-3 holds no patient identifier", pid.where(3), "101")
            merged_ids = cx_identifiers(seg, 1, ctx.options, ctx.sender_system)
            merged_id = parties.patient_id_for(merged_ids)
            if merged_id is None:
                raise Hl7MappingError("MRG-1 holds no prior identifier", seg.where(1), "101")
            merges.append(
                PatientMerge(
                    surviving=surviving,
                    surviving_identifiers=tuple(parties.patient_identifiers(ctx, pid)),
                    merged=fb.reference("Patient", merged_id),
                    merged_identifiers=tuple(merged_ids),
                    source_message=f"{ctx.facility}|{ctx.header.control_id}",
                )
            )
            pid = None
    if not merges:
        raise Hl7MappingError(
            "ADT^A40 without a PID/MRG pair", Location("MRG"), SEGMENT_SEQUENCE_ERROR
        )
    return merges


def _oru(ctx: Context, org: Json) -> None:
    groups: list[tuple[Segment | None, list[Segment]]] = [(None, [])]
    for seg in ctx.message.segments[1:]:
        if seg.name == "PID":
            groups.append((seg, []))
        else:
            groups[-1][1].append(seg)
    if not any(s.name == "OBX" for _, segs in groups for s in segs):
        raise Hl7MappingError("ORU^R01 without any OBX", Location("OBX"), SEGMENT_SEQUENCE_ERROR)
    for pid, segs in groups:
        subject = None
        if pid is not None:
            subject = parties.patient(ctx, pid, org, scope=parties.RESULTS_SCOPE)
        pv1 = next((s for s in segs if s.name == "PV1"), None)
        encounter, bed = (None, None)
        if pv1 is not None:
            encounter = parties.encounter_reference(ctx, pv1)
            bed = parties.location(ctx, pv1, 3, org)
        oru.results(ctx, segs, subject, encounter, bed)


#: The targets of a results message's Provenance: what it reports and about whom. The
#: monitor, its channels, the bed and the facility are the setting of every reading a
#: device sends, once a second: as targets they were two thirds of the Provenance's
#: ~30 references (that Provenance was nearly half the store writer's work on a PCD-01
#: message, measured; a quarter with them gone), and a care-graph edge each per
#: message, none saying what the first message had not.
RESULT_TARGETS = frozenset({"Observation", "Patient", "Encounter"})


def _provenance(ctx: Context, org: Json) -> None:
    # the references fb.reference gives; the ids were checked when the resources were built
    built = list(ctx.resources)
    chosen = (
        [k for k in built if k[0] in RESULT_TARGETS] if ctx.header.message_type == "ORU" else built
    )
    if not chosen:  # an ORU of device description rows alone: no reading, no patient
        chosen = [k for k in built if k[0] != "Organization"] or built
    targets = [{"reference": f"{rt}/{rid}"} for rt, rid in chosen]
    evn = ctx.message.first("EVN")
    occurred = None
    if evn is not None:
        occurred = parse_ts(evn, 6, ctx.options) or parse_ts(evn, 2, ctx.options)
    occurred = occurred or parse_ts(ctx.message.msh, 7, ctx.options)
    kind = f"{ctx.header.message_type}^{ctx.header.trigger_event}"
    ctx.add(
        fb.provenance(
            ctx.provenance_id(),
            targets=targets,
            recorded=ctx.received_at,
            occurred=occurred,
            agents=[("author", org)],
            entities=[
                (
                    "source",
                    {
                        "identifier": fb.identifier(
                            MESSAGE_SYSTEM, f"{ctx.facility}|{ctx.header.control_id}"
                        ),
                        "display": f"HL7 v2 {kind} {ctx.header.control_id}",
                    },
                )
            ],
            activity=fb.codeable_concept([], f"HL7 v2 {kind}"),
            source=ctx.source,
        )
    )
