from __future__ import annotations

import copy
import re
from typing import Any

from messaging.envelope import parse
from messaging.identity import local_id, localize

from .messages import PARTNER, transfer

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def test_local_ids_are_deterministic_valid_and_separate_partners_and_types() -> None:
    one = local_id(PARTNER, "Patient", "p1")
    assert one == local_id(PARTNER, "Patient", "p1")
    assert FHIR_ID.match(one)
    assert one != local_id("https://other.example/fhir", "Patient", "p1")
    assert one != local_id(PARTNER, "Encounter", "p1")
    assert one != local_id(PARTNER, "Patient", "p2")


def test_localize_rewrites_ids_references_focus_and_marks_the_source() -> None:
    data = transfer("m1")
    before = copy.deepcopy(data)
    local = localize(parse(data))
    pid = local_id(PARTNER, "Patient", "p1")
    eid = local_id(PARTNER, "Encounter", "e1")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in local.resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    assert by_type["Patient"][0]["id"] == pid
    assert by_type["Encounter"][0]["subject"] == {"reference": f"Patient/{pid}"}
    assert {o["subject"]["reference"] for o in by_type["Observation"]} == {f"Patient/{pid}"}
    assert all(r["meta"]["source"] == PARTNER for r in local.resources)
    assert local.focus == (f"Encounter/{eid}",)
    assert data == before  # the partner's message is not changed in place


def test_full_url_references_and_ids_from_full_urls_resolve_to_the_same_resource() -> None:
    data = transfer("m1")
    person = data["entry"][1]
    del person["resource"]["id"]
    person["fullUrl"] = "urn:uuid:5b1a2f7e-0000-4000-8000-000000000001"
    for entry in data["entry"][2:]:
        entry["resource"]["subject"] = {"reference": person["fullUrl"]}
    local = localize(parse(data))
    pid = local_id(PARTNER, "Patient", person["fullUrl"])
    assert local.resources[0]["id"] == pid
    assert {r["subject"]["reference"] for r in local.resources[1:]} == {f"Patient/{pid}"}
    assert localize(parse(data)).resources == local.resources  # a resend lands the same


def test_references_to_resources_sent_earlier_map_into_the_partners_space() -> None:
    data = transfer("m1")
    data["entry"][3]["resource"]["subject"] = {"reference": "Patient/older"}
    data["entry"][3]["resource"]["performer"] = [{"reference": "https://third.example/x/1"}]
    local = localize(parse(data))
    observation = local.resources[2]
    assert observation["subject"]["reference"] == f"Patient/{local_id(PARTNER, 'Patient', 'older')}"
    assert observation["performer"] == [{"reference": "https://third.example/x/1"}]
