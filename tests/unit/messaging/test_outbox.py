"""The outbox and its deliverer on SQLite, the partner played by ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fhir_store.database import Database
from messaging.delivery import ClientCredentials, Deliverer, Verdict, classify
from messaging.outbox import Backoff, DeliveryStatus, Outbox
from security.keys import generate_signing_key

from .messages import transfer

PARTNER = "hospital-b"
ENDPOINT = "https://b.example/fhir/$process-message"
TOKEN_URL = "https://b.example/auth/token"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def answer(code: str) -> str:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "message",
            "entry": [{"resource": {"resourceType": "MessageHeader", "response": {"code": code}}}],
        }
    )


class Partner:
    """Answers the token endpoint, then each message with the next scripted (status, body)."""

    def __init__(self, script: list[tuple[int, str]]) -> None:
        self.script = list(script)
        self.messages: list[httpx.Request] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.tokens += 1
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            assert form["grant_type"] == "client_credentials"
            return httpx.Response(200, json={"access_token": f"t{self.tokens}", "expires_in": 300})
        self.messages.append(request)
        status, body = self.script.pop(0)
        if body == "raise":
            raise httpx.ConnectError("connection refused")
        return httpx.Response(status, text=body)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(db: Database, clock: Clock) -> Outbox:
    return Outbox.open(
        db, backoff=Backoff(base_s=2, cap_s=60, max_attempts=3, jitter=0), clock=clock
    )


def deliverer(outbox: Outbox, partner: Partner, clock: Clock) -> Deliverer:
    creds = ClientCredentials(TOKEN_URL, "caregraph-a", generate_signing_key(), clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(partner))
    return Deliverer(outbox, {PARTNER: creds}, http)


def test_a_message_is_delivered_with_a_bearer_token_and_its_status_kept(
    outbox: Outbox, clock: Clock
) -> None:
    partner = Partner([(200, answer("ok"))])
    message_id = outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    assert outbox.get(message_id).status is DeliveryStatus.PENDING  # type: ignore[union-attr]
    assert deliverer(outbox, partner, clock).run_once() == 1
    sent = partner.messages[0]
    assert sent.headers["authorization"] == "Bearer t1"
    assert json.loads(sent.content)["identifier"]["value"] == "out-1"
    done = outbox.get(message_id)
    assert done is not None and done.status is DeliveryStatus.DELIVERED
    assert done.attempts == 1 and done.response_code == "ok"
    assert deliverer(outbox, partner, clock).run_once() == 0  # nothing due any more


def test_enqueueing_one_message_twice_keeps_one_row(outbox: Outbox) -> None:
    outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    assert len(outbox.recent()) == 1
    with pytest.raises(ValueError, match="message Bundles"):
        outbox.enqueue(PARTNER, ENDPOINT, {"resourceType": "Bundle", "type": "batch"})


def test_transient_failures_back_off_then_deliver(outbox: Outbox, clock: Clock) -> None:
    partner = Partner([(0, "raise"), (503, "busy"), (200, answer("ok"))])
    sender = deliverer(outbox, partner, clock)
    message_id = outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    assert sender.run_once() == 1
    first = outbox.get(message_id)
    assert first is not None and first.status is DeliveryStatus.PENDING
    assert first.next_attempt_at == clock.now + 2 and "ConnectError" in (first.last_error or "")
    assert sender.run_once() == 0  # not due yet
    clock.now += 2
    assert sender.run_once() == 1
    second = outbox.get(message_id)
    assert second is not None and second.next_attempt_at == clock.now + 4  # doubled
    clock.now += 4
    sender.run_once()
    done = outbox.get(message_id)
    assert done is not None and done.status is DeliveryStatus.DELIVERED and done.attempts == 3


def test_attempts_run_out_and_fatal_errors_fail_at_once(outbox: Outbox, clock: Clock) -> None:
    partner = Partner([(503, "")] * 3 + [(200, answer("fatal-error"))])
    sender = deliverer(outbox, partner, clock)
    tired = outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    for _ in range(3):
        sender.run_once()
        clock.now += 100
    gave_up = outbox.get(tired)
    assert gave_up is not None and gave_up.status is DeliveryStatus.FAILED
    assert "gave up after 3 attempts" in (gave_up.last_error or "")
    fatal = outbox.enqueue(PARTNER, ENDPOINT, transfer("out-2"))
    sender.run_once()
    refused = outbox.get(fatal)
    assert refused is not None and refused.status is DeliveryStatus.FAILED
    assert refused.response_code == "fatal-error" and refused.attempts == 1


def test_a_401_drops_the_cached_token_for_the_next_attempt(outbox: Outbox, clock: Clock) -> None:
    partner = Partner([(401, "expired"), (200, answer("ok"))])
    sender = deliverer(outbox, partner, clock)
    outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    sender.run_once()
    clock.now += 2
    sender.run_once()
    assert [m.headers["authorization"] for m in partner.messages] == ["Bearer t1", "Bearer t2"]


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.enqueue(PARTNER, ENDPOINT, transfer("out-1"))
    assert len(outbox.claim_due()) == 1
    assert outbox.claim_due() == []  # another worker sees nothing to do
    clock.now += outbox.lease_s
    assert [c.attempts for c in outbox.claim_due()] == [2]  # the first worker died


def test_an_unknown_partner_fails_without_sending(outbox: Outbox, clock: Clock) -> None:
    partner = Partner([])
    message_id = outbox.enqueue("nobody", ENDPOINT, transfer("out-1"))
    deliverer(outbox, partner, clock).run_once()
    row = outbox.get(message_id)
    assert row is not None and row.status is DeliveryStatus.FAILED and not partner.messages


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, answer("ok"), Verdict.DELIVERED),
        (200, answer("transient-error"), Verdict.RETRY),
        (503, answer("transient-error"), Verdict.RETRY),
        (200, answer("fatal-error"), Verdict.FAIL),
        (200, "not a message", Verdict.FAIL),
        (400, "{}", Verdict.FAIL),
        (403, "{}", Verdict.FAIL),
        (429, "", Verdict.RETRY),
        (502, "", Verdict.RETRY),
    ],
)
def test_classify(status: int, body: str, verdict: Verdict) -> None:
    assert classify(status, body)[0] is verdict


def test_the_token_is_cached_until_near_expiry(clock: Clock) -> None:
    calls: list[dict[str, Any]] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        calls.append({})
        return httpx.Response(200, json={"access_token": f"t{len(calls)}", "expires_in": 300})

    creds = ClientCredentials(TOKEN_URL, "a", generate_signing_key(), clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(token_endpoint))
    tokens: Callable[[], str] = lambda: creds.token(http)  # noqa: E731
    assert tokens() == tokens() == "t1"
    clock.now += 280
    assert tokens() == "t2"


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"token_type": "bearer"}', '{"access_token": 7}']
)
def test_a_token_answer_without_a_token_is_retried(outbox: Outbox, clock: Clock, body: str) -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body)

    creds = ClientCredentials(TOKEN_URL, "a", generate_signing_key(), clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(token_endpoint))
    message_id = outbox.enqueue(PARTNER, ENDPOINT, transfer("out-garbled"))
    assert Deliverer(outbox, {PARTNER: creds}, http).run_once() == 1
    row = outbox.get(message_id)
    assert row is not None and row.status is DeliveryStatus.PENDING
    assert row.last_error is not None and row.last_error.startswith("TokenRefused")
    assert row.next_attempt_at == clock.now + 2  # backed off, not held for the lease
