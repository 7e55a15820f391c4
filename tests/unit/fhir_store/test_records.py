"""JSON text and content hashes of the store: orjson's speed, json's meaning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_store.records import content_hash, dumps, legacy_content_hash, loads
from tests.unit.fhir_store.samples import SAMPLES


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: r["id"])
def test_hash_is_the_legacy_hash_for_ordinary_resources(resource: dict[str, Any]) -> None:
    assert content_hash(resource) == legacy_content_hash(resource)
    versioned = {**resource, "meta": {"versionId": "7", "lastUpdated": "2020-01-01T00:00:00Z"}}
    assert content_hash(versioned) == content_hash(
        {k: v for k, v in resource.items() if k != "meta"}
    )


def test_hash_ignores_key_order_and_sees_every_value() -> None:
    a = {"resourceType": "Patient", "id": "p", "name": [{"given": ["Ä"], "family": "B"}]}
    b = {"name": [{"family": "B", "given": ["Ä"]}], "id": "p", "resourceType": "Patient"}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "id": "q"})
    assert content_hash({"v": 1}) != content_hash({"v": 1.0})


def test_big_integers_keep_their_digits() -> None:
    big = 123456789012345678901234567890
    assert loads(json.dumps({"v": big})) == {"v": big}
    assert dumps({"v": big}) == '{"v":123456789012345678901234567890}'
    assert content_hash({"v": big}) == legacy_content_hash({"v": big})


def test_loads_reads_what_json_reads() -> None:
    for text in ['{"a":[1,2.5,"é",null,true]}', "[NaN]", '"\\u00e9"', "1e400", b'{"a":1}']:
        assert repr(loads(text)) == repr(json.loads(text))
    with pytest.raises(json.JSONDecodeError):
        loads(b"{not json")


def test_dumps_is_compact_json() -> None:
    value = {"a": [1, 2.5, "é", None, True], "b": {"c": "x"}}
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(dumps({"f": 1e-05})) == {"f": 1e-05}
