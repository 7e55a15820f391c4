from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from caregraph.errors import ConfigError
from fhir_store.database import Database
from fhir_store.searchparams import default_registry
from messaging.envelope import parse, request, validate
from messaging.events import V2_EVENTS
from messaging.identity import local_id, localize
from messaging.outbox import DeliveryStatus, Outbox
from messaging.partners import Partners, load_partners, parse_partners
from security.keys import generate_signing_key

from .messages import encounter, patient

B = {
    "name": "hospital-b",
    "endpoint": "https://b.example/fhir/$process-message",
    "token_url": "https://b.example/auth/token",
    "client_id": "cg-a",
    "scope": "system/Patient.cru",
}


def test_partners_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "partners.json"
    path.write_text(json.dumps({"partners": [B]}))
    (partner,) = load_partners(path)
    assert partner.name == "hospital-b" and partner.scope == "system/Patient.cru"
    with pytest.raises(ConfigError, match="cannot read"):
        load_partners(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"partners": {}},
        {"partners": [{**B, "client_id": None}]},
        {"partners": [{**B, "endpoint": "ftp://b.example/x"}]},
        {"partners": [{**B, "token_url": "b.example"}]},
        {"partners": [B, B]},
    ],
)
def test_bad_partner_files_are_refused(data: Any) -> None:
    with pytest.raises(ConfigError):
        parse_partners(data)


def test_send_queues_for_the_partners_endpoint(db: Database) -> None:
    outbox = Outbox.open(db)
    partners = Partners(parse_partners({"partners": [B]}), generate_signing_key())
    assert partners.credentials["hospital-b"].client_id == "cg-a"
    bundle = request(
        (V2_EVENTS, "A02"),
        [patient("p1", "A", "B", "1970-01-01", "1"), encounter("e1", "p1")],
        source="https://a.example/fhir/$process-message",
        destination=B["endpoint"],
    )
    message_id = partners.send(outbox, "hospital-b", bundle)
    row = outbox.get(message_id)
    assert row is not None and row.endpoint == B["endpoint"]
    assert row.status is DeliveryStatus.PENDING
    with pytest.raises(KeyError):
        partners.send(outbox, "nobody", bundle)


def test_a_built_request_is_a_valid_message_a_partner_can_localize() -> None:
    source = "https://a.example/fhir/$process-message"
    bundle = request(
        (V2_EVENTS, "A02"),
        [patient("p1", "A", "B", "1970-01-01", "1"), encounter("e1", "p1")],
        source=source,
        destination=B["endpoint"],
        focus=["Encounter/e1"],
    )
    validate(bundle, default_registry().types)
    local = localize(parse(bundle))
    pid = local_id(source, "Patient", "p1")
    assert local.resources[1]["subject"]["reference"] == f"Patient/{pid}"
    assert local.focus == (f"Encounter/{local_id(source, 'Encounter', 'e1')}",)
