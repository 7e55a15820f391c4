"""What a gateway answers to one received message, decided without I/O.

The MLLP listener calls ``judge`` for each frame: it parses, checks scope and maps the
message in full (about a millisecond for an ORU with 10 OBX), so content that cannot be
mapped is refused with AE at once, while the sender is still connected, rather than
found later by the normalizer with nobody to tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.hl7v2.ack import AckCode, AckError
from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.errors import Hl7MappingError, UnsupportedMessage
from adapters.hl7v2.header import Header, peek_header
from adapters.hl7v2.normalize import (
    DEFAULT_OPTIONS,
    MAX_MESSAGE_BYTES,
    Normalized,
    normalize_parsed,
    parse,
    patient_key,
)
from caregraph.errors import MappingError


@dataclass(frozen=True, slots=True)
class Verdict:
    """AA (publish, then acknowledge), AE or AR (answer with ``error``, publish nothing).

    ``key`` is the bus key for an accepted message: the patient key, else MSH-10;
    ``normalized`` its mapping, when the content was mapped (``handoff.Handoff``).
    """

    outcome: AckCode
    header: Header | None
    error: AckError | None = None
    key: str | None = None
    normalized: Normalized | None = None


def judge(
    raw: bytes,
    *,
    received_at: datetime,
    options: Options = DEFAULT_OPTIONS,
    max_bytes: int = MAX_MESSAGE_BYTES,
    map_content: bool = True,
    peeked: Header | None = None,
) -> Verdict:
    """Decide AA / AE / AR for ``raw`` (see the module docstring); ``peeked`` is
    ``peek_header(raw)`` when the caller has read it already.

    ``map_content=False`` checks scope and structure only (about 30 times cheaper): content
    that cannot be mapped is then accepted, and the normalizer dead-letters it with its
    location instead of the sender hearing AE. A throughput choice for the operator.
    """
    try:
        header, message = parse(raw, max_bytes=max_bytes, peeked=peeked)
        if not map_content:
            key = patient_key(message, header)
            return Verdict("AA", header, None, key or header.control_id)
        normalized = normalize_parsed(header, message, received_at=received_at, options=options)
    except UnsupportedMessage as exc:
        return Verdict("AR", peek_header(raw[:65536]), AckError.from_exception(exc))
    except (Hl7MappingError, MappingError) as exc:
        return Verdict("AE", peek_header(raw[:65536]), AckError.from_exception(exc))
    return Verdict("AA", header, None, normalized.patient_key or header.control_id, normalized)
