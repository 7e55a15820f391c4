from __future__ import annotations

from typing import Any

import pytest

from fhir_store.errors import InvalidResource
from fhir_store.patch import apply_json_patch

DOC: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "A", "given": ["x"]}]}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "add", "path": "/gender", "value": "male"}], {**DOC, "gender": "male"}),
        (
            [{"op": "add", "path": "/name/0/given/-", "value": "y"}],
            {**DOC, "name": [{"family": "A", "given": ["x", "y"]}]},
        ),
        (
            [{"op": "add", "path": "/name/0/given/0", "value": "w"}],
            {**DOC, "name": [{"family": "A", "given": ["w", "x"]}]},
        ),
        ([{"op": "remove", "path": "/name/0/given"}], {**DOC, "name": [{"family": "A"}]}),
        (
            [{"op": "replace", "path": "/name/0/family", "value": "B"}],
            {**DOC, "name": [{"family": "B", "given": ["x"]}]},
        ),
        (
            [{"op": "copy", "from": "/name/0/family", "path": "/name/0/text"}],
            {**DOC, "name": [{"family": "A", "given": ["x"], "text": "A"}]},
        ),
        (
            [{"op": "move", "from": "/name/0/family", "path": "/name/0/text"}],
            {**DOC, "name": [{"given": ["x"], "text": "A"}]},
        ),
        ([{"op": "test", "path": "/name/0/family", "value": "A"}], DOC),
        ([{"op": "add", "path": "/a~1b", "value": 1}], {**DOC, "a/b": 1}),
    ],
)
def test_operations(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert apply_json_patch(DOC, ops) == expected
    assert DOC == {"resourceType": "Patient", "name": [{"family": "A", "given": ["x"]}]}


@pytest.mark.parametrize(
    ("ops", "needle"),
    [
        ({"op": "add"}, "array of operations"),
        ([{"op": "test", "path": "/name/0/family", "value": "Z"}], "test failed"),
        ([{"op": "replace", "path": "/gender", "value": "x"}], "to replace"),
        ([{"op": "remove", "path": "/name/5"}], "no element"),
        ([{"op": "remove", "path": ""}], "whole resource"),
        ([{"op": "add", "path": "name", "value": 1}], "JSON Pointer"),
        ([{"op": "jump", "path": "/x"}], "unknown op"),
        ([{"op": "add", "path": "/x"}], "needs a value"),
        (["add"], "not an operation"),
    ],
)
def test_failures_name_the_operation(ops: Any, needle: str) -> None:
    with pytest.raises(InvalidResource, match=needle):
        apply_json_patch(DOC, ops)


def test_merge_patch() -> None:
    from fhir_store.patch import apply_merge_patch

    doc = {"resourceType": "Patient", "gender": "male", "name": [{"family": "A"}], "x": {"a": 1}}
    patched = apply_merge_patch(doc, {"gender": None, "x": {"b": 2}, "name": [{"family": "B"}]})
    assert patched == {"resourceType": "Patient", "name": [{"family": "B"}], "x": {"a": 1, "b": 2}}
    assert doc["gender"] == "male"
