"""Partner messages over HTTP, through the authorization middleware, on SQLite and PostgreSQL.

The partner authenticates as SMART Backend Services do (a registered client, a signed
assertion, ``POST /auth/token``), then sends a transfer with recent vitals; its patient
ends up in the hospital's own golden record.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from messaging.identity import local_id
from security.keys import thumbprint
from tests.unit.messaging.messages import PARTNER, transfer

from .conftest import HOSPITAL_PATIENT, Server

pytestmark = pytest.mark.integration

# Bundle.r: the security response filter treats a response message (a Bundle that is not
# a search, history or transaction response) as one resource the token must be able to read.
PARTNER_SCOPE = "system/Bundle.r system/Patient.cru system/Encounter.cru system/Observation.cru"


def backend_token(server: Server, scope: str = PARTNER_SCOPE) -> dict[str, str]:
    """A Backend Services access token for a partner client registered with ``scope``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    kid = thumbprint(jwk)
    client = server.registry.add("Hospital B", {"keys": [{**jwk, "kid": kid}]}, scope)
    endpoint = f"{server.base}/auth/token"
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": endpoint,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(claims, key, algorithm="RS384", headers={"kid": kid})
    response = httpx.post(
        endpoint,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def response_code(response: httpx.Response) -> str:
    header = response.json()["entry"][0]["resource"]
    return str(header["response"]["code"])


def test_a_partner_transfer_links_to_the_hospitals_patient_and_a_repeat_is_answered_alike(
    server: Server,
) -> None:
    auth = backend_token(server)
    first = server.process(transfer("t-1"), auth)
    assert first.status_code == 200, first.text
    assert response_code(first) == "ok"
    header = first.json()["entry"][0]["resource"]
    assert header["response"]["identifier"] == "hdr-t-1"
    assert header["destination"] == [{"endpoint": PARTNER}]

    pid = local_id(PARTNER, "Patient", "p1")
    golden = server.mpi.golden_of(HOSPITAL_PATIENT).golden_id
    assert server.mpi.golden_of(pid).golden_id == golden
    # The stored vitals are readable over the FHIR API under their local ids.
    read = httpx.get(
        f"{server.base}/fhir/Observation",
        params={"subject": f"Patient/{pid}"},
        headers=server.token("system/*.rs"),
    )
    assert read.status_code == 200
    assert sorted(e["resource"]["valueQuantity"]["value"] for e in read.json()["entry"]) == [72, 75]

    again = server.process(transfer("t-1"), auth)
    assert again.json() == first.json()
    # delivered twice, stored once: the same two vitals, each at its first version
    reread = httpx.get(
        f"{server.base}/fhir/Observation",
        params={"subject": f"Patient/{pid}"},
        headers=server.token("system/*.rs"),
    ).json()
    assert sorted(e["resource"]["valueQuantity"]["value"] for e in reread["entry"]) == [72, 75]
    assert {e["resource"]["meta"]["versionId"] for e in reread["entry"]} == {"1"}


def test_copies_of_one_message_sent_at_once_get_one_answer(server: Server) -> None:
    auth = server.token("system/*.cruds", client_id="hospital-b")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: server.process(transfer("t-2"), auth), range(4)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert response_code(answers[0]) == "ok"
    page = server.store.searching.search("Encounter", [("_count", "100")])
    assert len(page.matches) == 1


def test_tokens_are_required_and_patient_tokens_refused(server: Server) -> None:
    anonymous = server.process(transfer("t-3"), {})
    assert anonymous.status_code == 401
    patient_token = server.token("patient/*.cruds", patient=HOSPITAL_PATIENT)
    assert server.process(transfer("t-3"), patient_token).status_code == 403
    readonly = server.token("system/*.rs")
    assert server.process(transfer("t-3"), readonly).status_code == 403


def test_a_partner_missing_a_write_scope_gets_fatal_error(server: Server) -> None:
    auth = backend_token(server, "system/Bundle.r system/Patient.cru system/Encounter.cru")
    response = server.process(transfer("t-4"), auth)
    assert response.status_code == 200
    assert response_code(response) == "fatal-error"
    outcome = response.json()["entry"][1]["resource"]
    assert outcome["issue"][0]["code"] == "forbidden"


def test_a_bundle_that_is_not_a_message_gets_a_400_outcome(server: Server) -> None:
    auth = server.token("system/*.cruds")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    response = server.process(bundle, auth)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
