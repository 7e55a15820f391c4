"""A small FHIRPath evaluator: exactly the subset the spec's search-parameter expressions use.

Why not a library: the one maintained Python FHIRPath engine pulls in an ANTLR runtime and
evaluates through a generic tree walk per call, which costs more than the whole hot-path
budget for an Observation. The search parameters of the resource types caregraph serves
use only: paths, unions (``|``), ``as``/``is`` on choice types, ``where(...)`` with
``resolve() is T`` or ``name='literal'``, ``exists()``, ``and``, ``=``/``!=`` and literals.
``compile_expression`` parses once into closures; anything outside the subset is refused at
compile time (a test compiles every shipped expression), never silently mis-evaluated.

Speed (indexing evaluates a dozen expressions per resource on the write path): a run of
member steps (``Observation.subject.reference``) compiles to one closure that walks plain
JSON values and makes ``Node`` objects only for its result, and a choice step looks up the
keys that start with its name instead of parsing every key. The first, one-closure-per-step
evaluator is kept in the tests as the oracle this one is compared against over every
shipped expression (``tests/unit/fhir_store/test_fhirpath_differential.py``).

Values are JSON (dicts, lists, scalars). Each item carries its FHIR type when the JSON tells
it (a choice element ``valueQuantity`` is a ``Quantity``; ``resolve()`` of a reference is the
referenced resource type), which is what ``as``/``is`` test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    """One item of a FHIRPath collection: a JSON value and its FHIR type when known."""

    value: Any
    type: str | None = None


Collection = list[Node]
Evaluator = Callable[[Collection, Node], Collection]


class FhirPathError(ValueError):
    """An expression outside the supported subset, or malformed."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_]\w*)"
    r"|(?P<op>!=|[.()|=,]))"
)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FhirPathError(f"cannot read FHIRPath at {text[pos:]!r}")
        tokens.append(match.group().strip())
        pos = match.end()
    return tokens


def _type_matches(node_type: str | None, wanted: str) -> bool:
    # Spec expressions write both ``as dateTime`` and ``.as(DateTime)``; FHIR type names
    # differ only in the case of the first letter between primitive and complex spellings.
    return node_type is not None and node_type.lower() == wanted.lower()


_LOWER = re.compile(r"[a-z][a-z0-9]*")


def _choice_items(value: dict[str, Any], name: str, out: list[Any]) -> None:
    """Append ``(item, type)`` for the choice element ``name`` (``valueQuantity`` under
    ``value``, typed ``Quantity``): keys that are ``name`` followed by an upper-case letter."""
    size = len(name)
    for key in value:
        if len(key) > size and key.startswith(name) and key[size].isupper():
            suffix = key[size:]
            kind = _PRIMITIVE_CAPS.get(suffix, suffix)
            found = value[key]
            if isinstance(found, list):
                out.extend((item, kind) for item in found)
            else:
                out.append((found, kind))


_PRIMITIVES = [
    "boolean",
    "integer",
    "string",
    "decimal",
    "uri",
    "url",
    "canonical",
    "base64Binary",
    "instant",
    "date",
    "dateTime",
    "time",
    "code",
    "oid",
    "id",
    "markdown",
    "unsignedInt",
    "positiveInt",
    "uuid",
]
_PRIMITIVE_CAPS = {p[0].upper() + p[1:]: p for p in _PRIMITIVES}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise FhirPathError(f"expected {expected or 'more'} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> Evaluator:
        result = self.and_expr()
        if self.peek() is not None:
            raise FhirPathError(f"unexpected {self.peek()!r} in {self.text!r}")
        return result

    def and_expr(self) -> Evaluator:
        left = self.equality()
        while self.peek() == "and":
            self.take()
            right = self.equality()
            left = _and(left, right)
        return left

    def equality(self) -> Evaluator:
        left = self.union()
        while self.peek() in ("=", "!="):
            negate = self.take() == "!="
            right = self.union()
            left = _equals(left, right, negate)
        return left

    def union(self) -> Evaluator:
        left = self.type_expr()
        while self.peek() == "|":
            self.take()
            right = self.type_expr()
            left = _union(left, right)
        return left

    def type_expr(self) -> Evaluator:
        left = self.invocation()
        while self.peek() in ("as", "is"):
            op = self.take()
            wanted = self.take()
            left = _as_type(left, wanted) if op == "as" else _is_type(left, wanted)
        return left

    def invocation(self) -> Evaluator:
        current = self.term()
        while self.peek() == ".":
            names = self.member_run()
            if names:
                current = _Path(current, names)
                continue
            if (
                self.pos + 2 < len(self.tokens)
                and self.tokens[self.pos + 1] in ("as", "ofType")
                and self.tokens[self.pos + 2] == "("
            ):
                # ``.as(T)`` filters what comes before it: the same as ``as T``
                self.take()
                self.take()
                self.take("(")
                wanted = self.take()
                self.take(")")
                current = _as_type(current, wanted)
                continue
            self.take()
            current = _then(current, self.step())
        return current

    def member_run(self) -> list[str]:
        """Names of the member steps that follow (``.a.b.c``), none of them a function."""
        names: list[str] = []
        while (
            self.peek() == "."
            and self.pos + 1 < len(self.tokens)
            and re.fullmatch(r"[A-Za-z_]\w*", self.tokens[self.pos + 1])
            and self.tokens[self.pos + 1] not in ("as", "is", "and")
            and (self.pos + 2 >= len(self.tokens) or self.tokens[self.pos + 2] != "(")
        ):
            self.take()
            names.append(self.take())
        return names

    def term(self) -> Evaluator:
        token = self.peek()
        if token == "(":
            self.take()
            inner = self.and_expr()
            self.take(")")
            return inner
        if token is not None and token.startswith("'"):
            self.take()
            literal = token[1:-1].replace("\\'", "'")
            return lambda focus, root: [Node(literal, "string")]
        if token in ("true", "false"):
            self.take()
            flag = token == "true"
            return lambda focus, root: [Node(flag, "boolean")]
        return self.step(first=True)

    def step(self, first: bool = False) -> Evaluator:
        name = self.take()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise FhirPathError(f"expected a name, got {name!r} in {self.text!r}")
        if self.peek() == "(":
            return self.function(name)
        if first and name[0].isupper():
            return _root(name)
        return _Path(_this, [name, *self.member_run()])

    def function(self, name: str) -> Evaluator:
        self.take("(")
        if name == "where":
            if self.tokens[self.pos : self.pos + 4] == ["resolve", "(", ")", "is"] and (
                self.tokens[self.pos + 5 : self.pos + 6] == [")"]
            ):
                wanted = self.tokens[self.pos + 4]
                self.pos += 6
                return _where_resolves_to(wanted)
            criterion = self.and_expr()
            self.take(")")
            return _where(criterion)
        if name in ("as", "ofType"):
            wanted = self.take()
            self.take(")")
            return _as_type(_this, wanted)
        self.take(")")
        if name == "exists":
            return lambda focus, root: [Node(bool(focus), "boolean")]
        if name == "resolve":
            return _resolve
        raise FhirPathError(f"function {name}() is outside the supported subset")


def _this(focus: Collection, root: Node) -> Collection:
    return focus


def _root(type_name: str) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        kind = root.value.get("resourceType") if isinstance(root.value, dict) else None
        if type_name in ("Resource", "DomainResource") or kind == type_name:
            return [root]
        return []

    return run


class _Path:
    """Member steps ``.a.b.c`` after ``inner``, as one closure over plain JSON values.

    Only the last step's items become ``Node`` objects: a type (from a choice element) is
    what ``as``/``is`` test, and only the last step's type survives a path anyway. With
    ``wanted`` (the path was followed by ``as T``), a last step that is a choice element
    looks up the one key of that type (``value as Quantity``: ``valueQuantity``) instead
    of every key that starts with the stem; for valid FHIR (one spelling per type) that is
    the same collection.
    """

    __slots__ = ("inner", "key", "last", "last_choice", "names", "steps", "wanted")

    def __init__(self, inner: Evaluator, names: list[str], wanted: str | None = None) -> None:
        self.inner = inner
        self.names = names
        steps = [(name, bool(_LOWER.fullmatch(name))) for name in names]
        self.steps = steps[:-1]
        self.last, self.last_choice = steps[-1]
        self.wanted = wanted
        self.key = self.last + wanted[0].upper() + wanted[1:] if wanted else ""

    def typed(self, wanted: str) -> Evaluator:
        """The path followed by ``as wanted``."""
        if self.wanted is None and self.last_choice:
            return _Path(self.inner, self.names, wanted)
        return _as_filter(self, wanted)

    def __call__(self, focus: Collection, root: Node) -> Collection:
        values = [node.value for node in self.inner(focus, root)]
        for name, choice in self.steps:
            found: list[Any] = []
            for value in values:
                if not isinstance(value, dict):
                    continue
                if name in value:
                    item = value[name]
                    if isinstance(item, list):
                        found.extend(item)
                    else:
                        found.append(item)
                elif choice:
                    pairs: list[Any] = []
                    _choice_items(value, name, pairs)
                    found.extend(item for item, _ in pairs)
            values = found
        last = self.last
        out: Collection = []
        if self.wanted is not None:
            key = self.key
            kind = _PRIMITIVE_CAPS.get(key[len(last) :], key[len(last) :])
            for value in values:
                if isinstance(value, dict) and last not in value and key in value:
                    item = value[key]
                    if isinstance(item, list):
                        out.extend([Node(i, kind) for i in item])
                    else:
                        out.append(Node(item, kind))
            return out
        for value in values:
            if not isinstance(value, dict):
                continue
            if last in value:
                item = value[last]
                if isinstance(item, list):
                    out.extend([Node(i) for i in item])
                else:
                    out.append(Node(item))
            elif self.last_choice:
                pairs = []
                _choice_items(value, last, pairs)
                out.extend([Node(i, kind) for i, kind in pairs])
        return out


def _then(first: Evaluator, second: Evaluator) -> Evaluator:
    return lambda focus, root: second(first(focus, root), root)


def _union(left: Evaluator, right: Evaluator) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        out = left(focus, root)
        for node in right(focus, root):
            if node not in out:
                out.append(node)
        return out

    return run


def _as_type(inner: Evaluator, wanted: str) -> Evaluator:
    if isinstance(inner, _Path):
        return inner.typed(wanted)
    return _as_filter(inner, wanted)


def _as_filter(inner: Evaluator, wanted: str) -> Evaluator:
    return lambda focus, root: [n for n in inner(focus, root) if _type_matches(n.type, wanted)]


def _is_type(inner: Evaluator, wanted: str) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        items = inner(focus, root)
        if len(items) != 1:
            return []
        return [Node(_type_matches(items[0].type, wanted), "boolean")]

    return run


def _where(criterion: Evaluator) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        return [n for n in focus if _truthy(criterion([n], root))]

    return run


def _truthy(items: Collection) -> bool:
    return len(items) == 1 and items[0].value is True


def _resolve(focus: Collection, root: Node) -> Collection:
    out: Collection = []
    for node in focus:
        kind = _resolved_type(node.value)
        if kind is not None:
            out.append(Node(node.value, kind))
    return out


def _resolved_type(value: Any) -> str | None:
    # Without a database at hand, a reference resolves to its type as written:
    # "Patient/1", "http://x/fhir/Patient/1" and "Patient/1/_history/2" are all Patients.
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    kind = _type_in(ref) if isinstance(ref, str) else None
    if kind is None:
        kind = value.get("type")
    return kind if isinstance(kind, str) else None


@lru_cache(maxsize=8192)  # a feed's references repeat: its patient, device, bed
def _type_in(ref: str) -> str | None:
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


def _where_resolves_to(wanted: str) -> Evaluator:
    """``where(resolve() is T)`` (how the spec picks a reference's target type) in one
    pass over the references, not one evaluation of the criterion per reference: a
    Provenance of a device message lists some thirty targets."""

    def run(focus: Collection, root: Node) -> Collection:
        return [n for n in focus if _type_matches(_resolved_type(n.value), wanted)]

    return run


def _equals(left: Evaluator, right: Evaluator, negate: bool) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        a, b = left(focus, root), right(focus, root)
        if len(a) != 1 or len(b) != 1:
            return []
        return [Node((a[0].value == b[0].value) != negate, "boolean")]

    return run


def _and(left: Evaluator, right: Evaluator) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        a, b = left(focus, root), right(focus, root)
        av = a[0].value if len(a) == 1 else None
        bv = b[0].value if len(b) == 1 else None
        if av is False or bv is False:
            return [Node(False, "boolean")]
        if av is True and bv is True:
            return [Node(True, "boolean")]
        return []

    return run


def compile_expression(text: str) -> Callable[..., Collection]:
    """Parse ``text`` once; the result evaluates it against a resource (or element) dict.

    Raises:
        FhirPathError: the expression uses something outside the supported subset.
    """
    evaluator = _Parser(text).parse()

    def evaluate(resource: Any, start: Node | None = None) -> Collection:
        root = Node(resource)
        return evaluator([start or root], root)

    return evaluate
