"""Validation of resources that come from outside (REST, partners) with the fhir.resources models.

Checks that pydantic cannot express are done here first: the type is one the server serves,
nesting is bounded (so a hostile body cannot exhaust the stack), and every literal reference
has a form the store can resolve. Every problem is reported with the element it sits at.

Speed: ``model_validate`` costs some 100 microseconds for a small Observation, most of it in
the models' Python validators run once per element, which alone would cap REST ingest below
10,000 resources/s on one core. What decides validity in those models is (a) the shape of
the JSON (which keys, nested how, lists of what length, which JSON type at each leaf: the
models' own validators only test the presence of elements, never their values) and (b) each
primitive value against the type of its field. :class:`ShapeCache` remembers the shapes
that passed a full validation, with the field type of each of their leaves; a resource of a
known shape is then valid exactly when each of its leaves is valid for its field, which is
checked with pydantic on the field's own annotation (the same core validator the model runs
for that field). Anything else (a new shape, or a leaf that fails) goes through the full
``model_validate``, which also words the errors. A differential test compares the two on
mutated resources.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import TypeAdapter, ValidationError

from fhir_store.errors import InvalidResource, NotSupported

MAX_DEPTH = 64
_REFERENCE = re.compile(
    r"(?:[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?)"
    r"|(?:#[A-Za-z0-9\-.]*)|(?:urn:(?:uuid|oid):\S+)|(?:https?://\S+)"
    r"|(?:[A-Z][A-Za-z]+\?\S*)"  # a conditional reference, resolved inside a transaction
)


def check_depth(value: Any, limit: int = MAX_DEPTH, *, skip: str | None = None) -> None:
    """Refuse JSON nested deeper than ``limit`` (iteratively: no recursion to exhaust).

    The root is at depth 0, a value inside it at 1, and so on; scalars count as well.
    Level by level, holding only containers: a 1,000-entry Bundle costs a few ms. Values
    under the key ``skip`` are not looked into (a Bundle's resources, which
    :func:`validate_resource` bounds one by one, before anything walks them).
    """
    level = [value]
    depth = 0
    while level:
        found: list[Any] = []
        filled = False
        for item in level:
            if isinstance(item, dict):
                children: Any = (
                    item.values() if skip is None else [v for k, v in item.items() if k != skip]
                )
            elif isinstance(item, list):
                children = item
            else:
                continue
            if children:
                filled = True
                found.extend([v for v in children if isinstance(v, dict | list)])
        if filled and depth + 1 > limit:
            raise InvalidResource(f"JSON nested deeper than {limit} levels", status=400)
        level = found
        depth += 1


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


_LEAF_TAGS: dict[type, str] = {str: "s", bool: "b", int: "i", float: "f", type(None): "n"}
Leaf = Callable[[Any], Any]


def shape(
    value: dict[str, Any],
    leaves: list[Any],
    references: list[Any] | None = None,
    depth: int = 0,
) -> Hashable | None:
    """The shape of a JSON object (see the module docstring); its leaves appended in order.

    A leaf is a scalar, or a list of scalars (a primitive list is one field's value). None
    for JSON no known-valid shape can have (a list that mixes objects and scalars, nesting
    near ``MAX_DEPTH``). ``references`` collects the ``reference`` strings outside
    ``contained`` (what ``_references`` checks), so one walk serves both.
    """
    if depth > MAX_DEPTH - 4:
        return None  # the full path refuses it with its own message
    parts: list[Any] = []
    for key, item in value.items():
        kind = type(item)
        inner_refs = None if key == "contained" else references
        if kind is dict:
            inner = shape(item, leaves, inner_refs, depth + 1)
            if inner is None:
                return None
            parts.append((key, inner))
        elif kind is list:
            if item and all(type(i) is dict for i in item):
                shapes = []
                for i in item:
                    inner = shape(i, leaves, inner_refs, depth + 2)
                    if inner is None:
                        return None
                    shapes.append(inner)
                parts.append((key, ("L", *shapes)))
            else:
                tags = tuple(_LEAF_TAGS.get(type(i), "?") for i in item)
                if "?" in tags:
                    return None
                leaves.append(item)
                parts.append((key, ("l", *tags)))
        elif key == "resourceType":
            parts.append((key, ("r", item)))  # picks the model class; not a field
        else:
            tag = _LEAF_TAGS.get(kind)
            if tag is None:
                return None
            if key == "reference" and references is not None and kind is str:
                references.append(item)
            leaves.append(item)
            parts.append((key, tag))
    return tuple(parts)


class ShapeCache:
    """Shapes that passed a full validation, each with the validators of its leaves.

    Bounded: when ``limit`` shapes (or 16 times as many passed leaves) are held, that
    part starts over (shapes of one feed are few; an attacker sending ever new shapes only
    gets full validation, as without it).
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._shapes: dict[Hashable, list[Leaf]] = {}
        self._adapters: dict[tuple[type, str], Leaf] = {}
        # (id of a leaf's check, type, value) that passed; checks live as long as the cache
        self._passed: set[tuple[int, type, Any]] = set()
        self._lock = threading.Lock()

    def valid(self, data: dict[str, Any]) -> bool | None:
        """True: valid (a known shape, every leaf and reference valid, nesting bounded).
        None: validate in full."""
        leaves: list[Any] = []
        references: list[Any] = []
        key = shape(data, leaves, references)
        if key is None:
            return None
        if not all(_REFERENCE.fullmatch(ref) for ref in references):
            return None
        checks = self._shapes.get(key)
        if checks is None:
            return None
        passed = self._passed
        try:
            for check, leaf in zip(checks, leaves, strict=True):
                kind = type(leaf)
                if kind is list:
                    check(leaf)
                    continue
                # A leaf's validity is a function of its field's type and its value, and
                # codes, systems and units repeat: each pair is checked once.
                seen = (id(check), kind, leaf)
                if seen not in passed:
                    check(leaf)
                    if len(passed) >= self.limit * 16:
                        passed.clear()
                    passed.add(seen)
        except ValidationError:
            return None
        return True

    def learn(self, data: dict[str, Any], model: FHIRAbstractModel) -> None:
        """Remember the shape of ``data``, which ``model`` is the full validation of."""
        leaves: list[Any] = []
        key = shape(data, leaves)
        if key is None:
            return
        checks: list[Leaf] = []
        try:
            self._leaf_checks(data, model, checks)
        except (KeyError, AttributeError, TypeError, ValueError):
            return  # a model that does not mirror the JSON: validate such shapes in full
        if len(checks) != len(leaves):  # not the walk ``shape`` made: do not guess
            return
        with self._lock:
            if len(self._shapes) >= self.limit:
                self._shapes.clear()
            self._shapes[key] = checks

    def _leaf_checks(self, value: dict[str, Any], model: Any, out: list[Leaf]) -> None:
        """The validators of the leaves of ``value``, in ``shape``'s order."""
        fields = _field_names(type(model))
        for key, item in value.items():
            if key == "resourceType" and type(item) is not dict and type(item) is not list:
                continue
            name = fields[key]
            if type(item) is dict:
                self._leaf_checks(item, getattr(model, name), out)
            elif type(item) is list and item and all(type(i) is dict for i in item):
                for sub, part in zip(item, getattr(model, name), strict=True):
                    self._leaf_checks(sub, part, out)
            else:
                out.append(self._adapter(type(model), name))

    def _adapter(self, model_class: type, name: str) -> Leaf:
        found = self._adapters.get((model_class, name))
        if found is None:
            annotation = model_class.model_fields[name].annotation  # type: ignore[attr-defined]
            found = TypeAdapter(annotation).validate_python
            self._adapters[(model_class, name)] = found
        return found


_FIELD_NAMES: dict[type, dict[str, str]] = {}


def _field_names(model_class: Any) -> dict[str, str]:
    """JSON key -> field name of a model class (aliases, and names as pydantic allows)."""
    names = _FIELD_NAMES.get(model_class)
    if names is None:
        names = {}
        for name, info in model_class.model_fields.items():
            names[name] = name
            if info.alias:
                names[info.alias] = name
        _FIELD_NAMES[model_class] = names
    return names


_SHAPES = ShapeCache()


def validate_resource(
    data: Any,
    served: tuple[str, ...],
    expected_type: str | None = None,
    *,
    shapes: ShapeCache | None = _SHAPES,
) -> dict[str, Any]:
    """The resource as a dict if it is valid FHIR R4 of a served type.

    Raises:
        InvalidResource: not an object, wrong or missing resourceType, or invalid content;
            ``issues`` lists each element at fault and why.
        NotSupported: a resourceType this server does not serve.
    """
    if not isinstance(data, dict):
        raise InvalidResource("the body must be a JSON object (a FHIR resource)")
    # A known shape is valid FHIR of its type: only the type's place here is left to check.
    known = shapes is not None and shapes.valid(data)
    if not known:
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
    if known:
        return data
    issues: list[tuple[str | None, str]] = []
    _references(data, kind, issues)
    try:
        model = get_fhir_model_class(kind).model_validate(data)
        if not issues and shapes is not None:
            shapes.learn(data, model)
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
