"""The message Bundle on the wire: parsing a partner's request, building caregraph's answer.

Pure: a decoded JSON value in, an :class:`InboundMessage` out (or a ``MessagingError``
saying what is wrong and where), and response Bundles built from plain values. The
envelope is checked by hand first, because without a MessageHeader id and a source endpoint
there is nobody to address a response message to (``NotAMessage``: HTTP 400); the content
is then checked by :func:`validate` with the fhir.resources R4B models (``InvalidContent``:
a fatal-error response message).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from fhir_store.errors import FhirError
from fhir_store.validation import check_depth, validate_resource
from messaging.errors import InvalidContent, NotAMessage

#: Where a response message says it comes from, below the FHIR base.
OPERATION = "$process-message"

Issue = tuple[str | None, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource of the message besides the MessageHeader, as the partner sent it."""

    full_url: str | None
    resource: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message Bundle whose envelope and content are valid.

    ``identifier``: ``system|value`` of ``Bundle.identifier``, the idempotency key (with
    ``source``). ``event``: ``(system, code)`` of ``eventCoding``, or ``("", uri)``.
    """

    identifier: str
    header: dict[str, Any]
    event: tuple[str, str]
    source: str
    entries: tuple[Entry, ...]

    @property
    def header_id(self) -> str:
        return str(self.header["id"])


def _envelope(data: Any) -> tuple[str, dict[str, Any], str]:
    """Identifier, header and source endpoint, or ``NotAMessage``."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise NotAMessage("the body must be a FHIR Bundle", location="Bundle")
    if data.get("type") != "message":
        raise NotAMessage(
            f"Bundle.type is {data.get('type')!r}; $process-message takes 'message'",
            location="Bundle.type",
        )
    ident = data.get("identifier")
    if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
        raise NotAMessage(
            "a message needs Bundle.identifier.value (it makes a repeat recognisable)",
            location="Bundle.identifier",
        )
    entries = data.get("entry")
    first = entries[0] if isinstance(entries, list) and entries else None
    header = first.get("resource") if isinstance(first, dict) else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise NotAMessage(
            "the first entry of a message must be its MessageHeader",
            location="Bundle.entry[0].resource",
        )
    if not isinstance(header.get("id"), str):
        raise NotAMessage(
            "the MessageHeader needs an id (the response names it)",
            location="Bundle.entry[0].resource.id",
        )
    source = header.get("source")
    endpoint = source.get("endpoint") if isinstance(source, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        raise NotAMessage(
            "MessageHeader.source.endpoint names the partner and is required",
            location="MessageHeader.source.endpoint",
        )
    system = ident.get("system")
    key = f"{system}|{ident['value']}" if isinstance(system, str) else ident["value"]
    return key, header, endpoint


def _event(header: dict[str, Any]) -> tuple[str, str]:
    coding = header.get("eventCoding")
    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
        return str(coding.get("system") or ""), coding["code"]
    uri = header.get("eventUri")
    if isinstance(uri, str):
        return "", uri
    raise NotAMessage(
        "MessageHeader needs eventCoding or eventUri", location="MessageHeader.event[x]"
    )


def _model_issues(data: dict[str, Any]) -> list[Issue]:
    """The Bundle's own problems; those inside an entry's resource are left to
    ``validate_resource``, which names the element within the resource."""
    try:
        Bundle.model_validate(data)
    except ValidationError as exc:
        return [
            (
                "Bundle" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]),
                e["msg"],
            )
            for e in exc.errors(include_url=False)
            if not (len(e["loc"]) > 2 and e["loc"][0] == "entry" and e["loc"][2] == "resource")
        ]
    return []


def parse(data: Any) -> InboundMessage:
    """The message in ``data`` (decoded JSON) if its envelope can be answered.

    Raises:
        NotAMessage: no Bundle of type message with identifier, MessageHeader (with an id,
            an event and a source endpoint) first. Nothing about the content is checked:
            :func:`validate` does, so that invalid content still gets a response message.
    """
    check_depth(data)
    identifier, header, source = _envelope(data)
    entries = tuple(
        Entry(
            entry["fullUrl"] if isinstance(entry.get("fullUrl"), str) else None,
            entry["resource"],
        )
        for entry in data["entry"][1:]
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    )
    return InboundMessage(identifier, header, _event(header), source, entries)


def validate(data: dict[str, Any], served: Sequence[str]) -> None:
    """Check the message's content: FHIR R4 (fhir.resources R4B), stored types only.

    Raises:
        InvalidContent: ``issues`` lists each element at fault and why.
    """
    issues = _model_issues(data)
    for position, entry in enumerate(data["entry"][1:], start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            issues.append((f"Bundle.entry[{position}]", "a message entry needs a resource"))
            continue
        try:
            validate_resource(resource, tuple(served))
        except FhirError as exc:
            issues.extend(
                (f"Bundle.entry[{position}].resource" + (f" {e}" if e else ""), m)
                for e, m in exc.issues
            )
    if issues:
        where, why = issues[0]
        raise InvalidContent(f"invalid message: {where}: {why}", location=where, issues=issues)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def response(
    request: InboundMessage,
    code: str,
    outcome: dict[str, Any],
    *,
    endpoint: str,
    focus: Sequence[str] = (),
) -> dict[str, Any]:
    """caregraph's response message to ``request``: a MessageHeader whose ``response`` has
    ``code`` (ok, transient-error, fatal-error) and details in ``outcome``, addressed back
    to the partner's source endpoint. ``focus``: references to what the message stored."""
    outcome_id = str(uuid.uuid4())
    outcome_url = f"urn:uuid:{outcome_id}"
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": str(uuid.uuid4()),
        "destination": [{"endpoint": request.source}],
        "source": {"name": "caregraph", "endpoint": endpoint},
        "response": {
            "identifier": request.header_id,
            "code": code,
            "details": {"reference": outcome_url},
        },
    }
    system, event = request.event
    if system:
        header["eventCoding"] = {"system": system, "code": event}
    else:
        header["eventUri"] = event
    if focus:
        header["focus"] = [{"reference": ref} for ref in focus]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "timestamp": _now(),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            {"fullUrl": outcome_url, "resource": {**outcome, "id": outcome_id}},
        ],
    }


def request(
    event: tuple[str, str],
    resources: Sequence[dict[str, Any]],
    *,
    source: str,
    destination: str,
    focus: Sequence[str] = (),
) -> dict[str, Any]:
    """A message Bundle caregraph sends a partner: a MessageHeader for ``event`` (system,
    code) from ``source`` to ``destination``, then ``resources`` with their ``Type/id``
    as fullUrl (so the partner's reference rewriting finds them)."""
    system, code = event
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": str(uuid.uuid4()),
        "eventCoding": {"system": system, "code": code},
        "source": {"name": "caregraph", "endpoint": source},
        "destination": [{"endpoint": destination}],
    }
    if focus:
        header["focus"] = [{"reference": ref} for ref in focus]
    base = source.rsplit("/", 1)[0]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "timestamp": _now(),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            *(
                {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in resources
            ),
        ],
    }
