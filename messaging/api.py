"""``POST /fhir/$process-message``: the edge where partner messages get their answer.

The one place messaging errors become what a partner understands (table below). The route
uses the store's :class:`~fhir_store.api.FhirRoute`, so authorization failures (401/403 from
the ``authorize`` dependency) and unreadable bodies leave as OperationOutcomes too.

    what happened                      HTTP  answer                             kept for a repeat
    envelope unusable (NotAMessage)    400   OperationOutcome                   no
    caller not that partner            403   OperationOutcome (speaks_for)      no
    processed                          200   response message: ok               yes
    refused (other MessagingError)     200   response message: fatal-error      yes
    database unavailable or raced      503   response message: transient-error  no
    anything else (a bug)              500   response message: fatal-error      no

The partner reads each answer message's ``MessageHeader.response.code``. A refused message
is still a message processed (its answer is the response message), hence 200.
Only synchronous processing exists (``?async`` is not offered).
"""

# No ``from __future__ import annotations``: FastAPI must see the real annotation objects
# of the handler defined inside build_router (the Body alias is local to it).
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response

from caregraph.errors import StoreUnavailable
from fhir_store.api import DEFAULT_MAX_BODY, FhirRoute, fhir_response
from fhir_store.capability import capability_statement
from fhir_store.errors import FhirError, StoreConflict
from fhir_store.outcome import dumps, outcome
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from messaging.envelope import OPERATION, InboundMessage, parse, response, validate
from messaging.errors import MessagingError, NotAMessage
from messaging.events import EVENTS, MessageProcessor, Processed
from messaging.ledger import Ledger
from messaging.outbox import Delivery, DeliveryStatus, Outbox
from messaging.partners import PartnerRefused
from messaging.transfer import Sender, UnknownPatient
from security.scopes import Context
from security.tokens import Principal

log = logging.getLogger(__name__)

#: Where a partner's write permission may come from: its own (system) or a user's scopes;
#: a patient-scoped token never reaches here (the guard refuses system operations to it).
_WRITERS = frozenset({Context.SYSTEM, Context.USER})
RETRY_AFTER_S = 5


def may_write(principal: Principal) -> Callable[[str], bool]:
    """Whether the token lets its holder create and update a resource type (a message's
    resources are upserts under deterministic ids: new the first time, updates after)."""

    def check(resource_type: str) -> bool:
        scopes = principal.scopes
        return scopes.allows(resource_type, "c", _WRITERS) and scopes.allows(
            resource_type, "u", _WRITERS
        )

    return check


def ok_outcome(done: Processed) -> dict[str, Any]:
    """What the message did, one informational issue per stored resource and link."""
    issues = [(None, f"stored {ref}") for ref in done.stored]
    issues += [
        (None, f"{ref} is in golden record Patient/{golden}")
        for ref, golden in done.goldens.items()
    ]
    issues += [(None, f"{ref}: link changed as asked") for ref in done.linked]
    return outcome(issues or [(None, "nothing to store")], "informational", "information")


def build_router(
    store: FhirStore,
    mpi: Mpi,
    authorize: Callable[..., Principal],
    *,
    prefix: str = "/fhir",
    max_body_bytes: int = DEFAULT_MAX_BODY,
    outbox: Outbox | None = None,
    speaks_for: Callable[[Principal, str], bool] | None = None,
    sender: Sender | None = None,
) -> APIRouter:
    """The messaging router; include it before the FHIR store's router (whose catch-all
    would otherwise answer ``$process-message``). Creates the ``messaging_*`` tables.

    With ``outbox``, ``GET {prefix}/$outbox-status[?id=...][&status=...]`` reports delivery
    status as a Parameters resource (one ``delivery`` per outgoing message; with ``id``, the
    partner's response message too, as the part ``response``).

    ``speaks_for(principal, endpoint)``: whether the caller may send as the partner at
    ``MessageHeader.source.endpoint``; the partner namespaces ids and idempotency, so without
    this check any writer could send in another partner's name. A refusal is a 403 (nothing
    processed, nothing kept). None trusts every authorised writer.

    With ``sender``, ``POST {prefix}/$send-transfer`` and ``{prefix}/$send-observations``
    queue a message about a patient for a partner (see :func:`_serve_sending`)."""
    router = APIRouter(prefix=prefix, route_class=FhirRoute)
    processor = MessageProcessor(store, mpi)
    ledger = Ledger.open(store.db)
    served = store.registry.types

    async def read_body(request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise FhirError(f"body larger than {max_body_bytes} bytes", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    Body = Annotated[bytes, Depends(read_body)]
    Caller = Annotated[Principal, Depends(authorize)]

    @router.post(f"/{OPERATION}")
    def process_message(request: Request, body: Body, principal: Caller) -> Response:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return fhir_response(400, outcome([(None, "the body is not JSON")], "structure"))
        try:
            message = parse(data)
        except NotAMessage as exc:
            return fhir_response(400, outcome(exc.issues, exc.issue_code))
        if speaks_for is not None and not speaks_for(principal, message.source):
            why = f"this client may not send messages as {message.source}"
            return fhir_response(
                403, outcome([("MessageHeader.source.endpoint", why)], "forbidden")
            )
        answered = ledger.find(message.source, message.identifier)
        if answered is not None:
            return fhir_response(200, answered.response)
        own_base = str(request.base_url).rstrip("/") + prefix
        return answer(message, data, own_base, principal)

    def answer(
        message: InboundMessage, data: dict[str, Any], own_base: str, principal: Principal
    ) -> Response:
        endpoint = f"{own_base}/{OPERATION}"
        actor = f"partner:{principal.client_id or principal.subject}"
        try:
            validate(data, served)
            done = processor.process(message, may_write(principal), actor, own_base)
        except MessagingError as exc:
            body = response(
                message, "fatal-error", outcome(exc.issues, exc.issue_code), endpoint=endpoint
            )
            return keep(message, "fatal-error", body)
        except (StoreUnavailable, StoreConflict) as exc:
            log.warning("message %s from %s: %s", message.identifier, message.source, exc)
            body = response(
                message,
                "transient-error",
                outcome([(None, str(exc))], "transient"),
                endpoint=endpoint,
            )
            return fhir_response(503, body, {"Retry-After": str(RETRY_AFTER_S)})
        except Exception as exc:
            log.exception("message %s from %s failed", message.identifier, message.source)
            issue = (None, f"internal error: {type(exc).__name__}")
            body = response(
                message, "fatal-error", outcome([issue], "exception"), endpoint=endpoint
            )
            return fhir_response(500, body)
        body = response(message, "ok", ok_outcome(done), endpoint=endpoint, focus=done.stored)
        return keep(message, "ok", body)

    def keep(message: InboundMessage, code: str, body: dict[str, Any]) -> Response:
        event = "|".join(message.event)
        kept = ledger.record(message.source, message.identifier, event, code, dumps(body))
        return fhir_response(200, kept.response)

    # Out of the OpenAPI schema: the store's router declares this very operation (GET
    # /fhir/metadata, a CapabilityStatement), and two routes of one path and method would
    # give the schema one operation under two colliding operationIds.
    @router.get("/metadata", include_in_schema=False)
    def metadata(request: Request, principal: Caller) -> Response:
        # Served here, before the store's router answers the same path: the store's
        # CapabilityStatement plus what this router adds (see with_messaging).
        base = str(request.base_url).rstrip("/") + prefix
        statement = with_messaging(capability_statement(store.registry, base), base)
        return fhir_response(200, statement)

    if outbox is not None:
        _serve_status(router, outbox, authorize)
    if sender is not None:
        _serve_sending(router, sender, authorize, Body, prefix)
    return router


#: What sending a patient's record out reads; the caller must be allowed to read it all.
_SENT_TYPES = ("Patient", "Encounter", "Observation")


def _sending_parameters(data: Any) -> tuple[str, str, float]:
    """(patient id, partner name, hours) from the operation's Parameters.

    Raises:
        FhirError: 400, not Parameters with ``patient`` and ``partner``.
    """
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise FhirError("the body must be a Parameters resource", status=400)
    values: dict[str, Any] = {}
    for parameter in data.get("parameter") or []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            value = next((v for k, v in parameter.items() if k.startswith("value")), None)
            values[parameter["name"]] = value
    patient = values.get("patient")
    if isinstance(patient, dict):
        patient = patient.get("reference")
    if isinstance(patient, str) and patient.startswith("Patient/"):
        patient = patient.removeprefix("Patient/")
    partner = values.get("partner")
    hours = values.get("hours", 24)
    if not isinstance(patient, str) or not patient or "/" in patient:
        raise FhirError("parameter patient: a Patient id or Patient/id reference", status=400)
    if not isinstance(partner, str) or not partner:
        raise FhirError("parameter partner: the partner's name (valueString)", status=400)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= 24 * 90:
        raise FhirError("parameter hours: a number of hours, 0 to 2160", status=400)
    return patient, partner, float(hours)


def _serve_sending(
    router: APIRouter,
    sender: Sender,
    authorize: Callable[..., Principal],
    body_dep: Any,
    prefix: str,
) -> None:
    """``POST $send-transfer`` / ``$send-observations`` with Parameters ``patient``
    (reference or id), ``partner`` (name) and optional ``hours`` (default 24): queue the
    message and answer 202 with its delivery status (``Content-Location``: its
    ``$outbox-status``). A system operation: the guard refuses patient-scoped tokens; the
    caller must also be allowed to read Patient, Encounter and Observation (403 otherwise).

        no such partner, or it takes no such event   422 business-rule
        no such patient                              404 not-found
    """
    Caller = Annotated[Principal, Depends(authorize)]

    def queue(request: Request, body: bytes, principal: Principal, event: str) -> Response:
        refused = [t for t in _SENT_TYPES if not principal.scopes.allows(t, "r", _WRITERS)]
        if refused:
            why = f"sending a patient's record needs read access to {', '.join(refused)}"
            return fhir_response(403, outcome([(None, why)], "forbidden"))
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return fhir_response(400, outcome([(None, "the body is not JSON")], "structure"))
        patient, partner, hours = _sending_parameters(data)
        send = sender.transfer if event == "transfer" else sender.observations
        try:
            message_id = send(patient, partner, hours=hours)
        except UnknownPatient as exc:
            return fhir_response(404, outcome([("patient", str(exc))], "not-found"))
        except PartnerRefused as exc:
            return fhir_response(422, outcome([("partner", str(exc))], "business-rule"))
        row = sender.outbox.get(message_id)
        base = str(request.base_url).rstrip("/") + prefix
        status_url = f"{base}/$outbox-status?{urlencode({'id': message_id})}"
        parameters = [delivery_parameter(row)] if row is not None else []
        body_out = {"resourceType": "Parameters", "parameter": parameters}
        return fhir_response(202, body_out, {"Content-Location": status_url})

    @router.post("/$send-transfer")
    def send_transfer(request: Request, body: body_dep, principal: Caller) -> Response:
        return queue(request, body, principal, "transfer")

    @router.post("/$send-observations")
    def send_observations(request: Request, body: body_dep, principal: Caller) -> Response:
        return queue(request, body, principal, "observations")


PROCESS_MESSAGE = "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"


def with_messaging(statement: dict[str, Any], base: str) -> dict[str, Any]:
    """The store's CapabilityStatement with FHIR messaging: the ``$process-message``
    operation, and a ``messaging`` entry with its endpoint and the events processed."""
    rest = [dict(r) for r in statement.get("rest") or [{"mode": "server"}]]
    server = rest[0]
    operations = [o for o in server.get("operation") or [] if o.get("name") != "process-message"]
    server["operation"] = [*operations, {"name": "process-message", "definition": PROCESS_MESSAGE}]
    events = ", ".join(f"{system}|{code}" for system, code in EVENTS)
    messaging = {
        "endpoint": [
            {
                "protocol": {
                    "system": "http://terminology.hl7.org/CodeSystem/message-transport",
                    "code": "http",
                },
                "address": f"{base}/{OPERATION}",
            }
        ],
        "documentation": (
            f"Synchronous $process-message, idempotent by Bundle.identifier. Events: {events}."
        ),
    }
    return {**statement, "rest": rest, "messaging": [messaging]}


def _part(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, f"value{kind}": value}


def delivery_parameter(row: Delivery) -> dict[str, Any]:
    """One outgoing message's delivery status as a ``Parameters.parameter`` with parts."""
    parts = [
        _part("id", "String", row.id),
        _part("partner", "String", row.partner),
        _part("endpoint", "Url", row.endpoint),
        _part("status", "Code", row.status.value),
        _part("attempts", "Integer", row.attempts),
        _part("created", "Instant", _instant(row.created_at)),
    ]
    if row.status is DeliveryStatus.PENDING:
        parts.append(_part("nextAttempt", "Instant", _instant(row.next_attempt_at)))
    if row.finished_at is not None:
        parts.append(_part("finished", "Instant", _instant(row.finished_at)))
    if row.response_code:
        parts.append(_part("responseCode", "Code", row.response_code))
    if row.last_error:
        parts.append(_part("lastError", "String", row.last_error))
    return {"name": "delivery", "part": parts}


def _instant(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _serve_status(router: APIRouter, outbox: Outbox, authorize: Callable[..., Principal]) -> None:
    Caller = Annotated[Principal, Depends(authorize)]

    @router.get("/$outbox-status")
    def outbox_status(
        principal: Caller, id: str | None = None, status: str | None = None
    ) -> Response:
        if id is not None:
            row = outbox.get(id)
            if row is None:
                return fhir_response(
                    404, outcome([("id", f"no outgoing message {id!r}")], "not-found")
                )
            rows = [row]
            answer = outbox.response(id)
            parameter = delivery_parameter(row)
            if answer:
                try:
                    parameter["part"].append({"name": "response", "resource": json.loads(answer)})
                except ValueError:  # a partner's answer that is not JSON: shown as text
                    parameter["part"].append(_part("response", "String", answer[:2000]))
            body = {"resourceType": "Parameters", "parameter": [parameter]}
            return fhir_response(200, body)
        else:
            try:
                wanted = DeliveryStatus(status) if status else None
            except ValueError:
                known = ", ".join(s.value for s in DeliveryStatus)
                return fhir_response(
                    400, outcome([("status", f"status is one of {known}")], "invalid")
                )
            rows = outbox.recent(wanted)
        body = {"resourceType": "Parameters", "parameter": [delivery_parameter(r) for r in rows]}
        return fhir_response(200, body)


__all__ = ["build_router"]
