"""Validation of resources that come from outside (REST, partners) with the fhir.resources models.

Checks that pydantic cannot express are done here first: the type is one the server serves,
nesting is bounded (so a hostile body cannot exhaust the stack), and every literal reference
has a form the store can resolve. Every problem is reported with the element it sits at.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_store.errors import InvalidResource, NotSupported

MAX_DEPTH = 64
_REFERENCE = re.compile(
    r"(?:[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?)"
    r"|(?:#[A-Za-z0-9\-.]*)|(?:urn:(?:uuid|oid):\S+)|(?:https?://\S+)"
    r"|(?:[A-Z][A-Za-z]+\?\S*)"  # a conditional reference, resolved inside a transaction
)


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (iteratively: no recursion to exhaust)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InvalidResource(f"JSON nested deeper than {limit} levels", status=400)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _references(value: Any, path: str, out: list[tuple[str | None, str]]) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and not _REFERENCE.fullmatch(ref):
            out.append((f"{path}.reference", f"reference {ref!r} is not Type/id, a URL or urn"))
        for key, item in value.items():
            if key != "contained":
                _references(item, f"{path}.{key}", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _references(item, f"{path}[{i}]", out)


def validate_resource(
    data: Any, served: tuple[str, ...], expected_type: str | None = None
) -> dict[str, Any]:
    """The resource as a dict if it is valid FHIR R4 of a served type.

    Raises:
        InvalidResource: not an object, wrong or missing resourceType, or invalid content;
            ``issues`` lists each element at fault and why.
        NotSupported: a resourceType this server does not serve.
    """
    if not isinstance(data, dict):
        raise InvalidResource("the body must be a JSON object (a FHIR resource)")
    check_depth(data)
    kind = data.get("resourceType")
    if not isinstance(kind, str):
        raise InvalidResource("resourceType is missing", expression="resourceType")
    if expected_type is not None and kind != expected_type:
        raise InvalidResource(
            f"resourceType {kind!r} does not match the URL's {expected_type!r}",
            expression="resourceType",
        )
    if kind not in served:
        raise NotSupported(f"resource type {kind!r} is not served here", expression="resourceType")
    issues: list[tuple[str | None, str]] = []
    _references(data, kind, issues)
    try:
        get_fhir_model_class(kind).model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = kind + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]
            )
            issues.append((where, error["msg"]))
    if issues:
        first = issues[0]
        raise InvalidResource(
            f"invalid {kind}: {first[0]}: {first[1]}", expression=first[0], issues=issues
        )
    return data
