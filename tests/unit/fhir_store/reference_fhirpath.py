"""The FHIRPath subset evaluator as first written: a closure per syntax node, over ``Node`` lists.

Kept in the tests as the oracle that ``fhir_store.fhirpath`` (compiled, specialized paths) is
compared against: every shipped expression, over every sample and its variants, must give
the same collection in both (``test_fhirpath_differential.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_store.fhirpath import FhirPathError, Node

Collection = list[Node]
Evaluator = Callable[[Collection, Node], Collection]


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


_STEM = re.compile(r"[a-z][a-z0-9]*")


def _choices(value: dict[str, Any]) -> dict[str, list[str]]:
    """Choice stem -> keys of a dict (``valueQuantity`` under ``value``)."""
    stems: dict[str, list[str]] = {}
    for key in value:
        match = _STEM.match(key)
        if match and match.end() < len(key) and key[match.end()].isupper():
            stems.setdefault(match.group(), []).append(key)
    return stems


def _choice_keys(value: dict[str, Any], name: str) -> list[str]:
    return _choices(value).get(name, [])


def _children(node: Node, name: str) -> Collection:
    value = node.value
    if not isinstance(value, dict):
        return []
    if name in value:
        found = value[name]
        if isinstance(found, list):
            return [Node(item) for item in found]
        return [Node(found)]
    # A choice element: ``value`` matches ``valueQuantity``, typed ``Quantity``.
    out: Collection = []
    for key in _choice_keys(value, name):
        suffix = key[len(name) :]
        kind = _PRIMITIVE_CAPS.get(suffix, suffix)
        found = value[key]
        items = found if isinstance(found, list) else [found]
        out.extend(Node(item, kind) for item in items)
    return out


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
            self.take()
            current = _then(current, self.step())
        return current

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
        return _member(name)

    def function(self, name: str) -> Evaluator:
        self.take("(")
        if name == "where":
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


def _member(name: str) -> Evaluator:
    def run(focus: Collection, root: Node) -> Collection:
        out: Collection = []
        for node in focus:
            out.extend(_children(node, name))
        return out

    return run


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
    # Without a database at hand, a reference resolves to its type as written:
    # "Patient/1", "http://x/fhir/Patient/1" and "Patient/1/_history/2" are all Patients.
    out: Collection = []
    for node in focus:
        ref = node.value.get("reference") if isinstance(node.value, dict) else None
        kind = node.value.get("type") if isinstance(node.value, dict) else None
        if isinstance(ref, str):
            parts = ref.split("/_history/")[0].split("/")
            if len(parts) >= 2:
                kind = parts[-2]
        if isinstance(kind, str):
            out.append(Node(node.value, kind))
    return out


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
