"""JSON Patch (RFC 6902) over JSON Pointers (RFC 6901), for FHIR's PATCH interaction.

Small enough to own: six operations on plain dicts and lists; every failure names the
operation index and the path, as the OperationOutcome must.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_store.errors import InvalidResource


def _fail(index: int, message: str) -> InvalidResource:
    return InvalidResource(
        f"patch operation {index}: {message}", expression=f"patch[{index}]", status=422
    )


def _tokens(pointer: Any, index: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise _fail(index, f"path {pointer!r} is not a JSON Pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _parent(doc: Any, tokens: list[str], index: int) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, index)
    return node, tokens[-1]


def _child(node: Any, token: str, index: int) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise _fail(index, f"no element at {token!r}")


def _get(doc: Any, tokens: list[str], index: int) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token, index)
    return node


def _remove(doc: Any, tokens: list[str], index: int) -> Any:
    if not tokens:
        raise _fail(index, "cannot remove the whole resource")
    parent, last = _parent(doc, tokens, index)
    value = _child(parent, last, index)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return value


def _add(doc: Any, tokens: list[str], value: Any, index: int, replace: bool = False) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, index)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _fail(index, f"no element at {last!r} to replace")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise _fail(index, f"index {last!r} is out of range")
    else:
        raise _fail(index, "the parent is not an object or array")
    return doc


def apply_json_patch(document: dict[str, Any], operations: Any) -> Any:
    """A patched deep copy of ``document``.

    Raises:
        InvalidResource: (422) malformed patch, missing path, or a failed ``test``.
    """
    if not isinstance(operations, list):
        raise InvalidResource("a JSON Patch body is an array of operations", status=400)
    doc: Any = copy.deepcopy(document)
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op:
            raise _fail(index, "not an operation object")
        kind = op["op"]
        tokens = _tokens(op.get("path"), index)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise _fail(index, f"{kind} needs a value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), index)
        elif kind == "remove":
            _remove(doc, tokens, index)
        elif kind == "replace":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), index, replace=True)
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"), index)
            value = (
                _remove(doc, source, index)
                if kind == "move"
                else copy.deepcopy(_get(doc, source, index))
            )
            doc = _add(doc, tokens, value, index)
        elif kind == "test":
            if _get(doc, tokens, index) != op["value"]:
                raise _fail(index, f"test failed at {op['path']!r}")
        else:
            raise _fail(index, f"unknown op {kind!r}")
    return doc


def apply_merge_patch(document: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386): objects merge, ``null`` removes, anything else replaces.

    FHIR R4 names JSON Patch; merge patch is accepted too because common clients (fhirpy's
    ``patch(field=value)``) send it.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
