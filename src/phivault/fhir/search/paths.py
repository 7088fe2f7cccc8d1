"""Compile the FHIRPath shapes that search parameters use into plain Python callables.

fhirpathpy interprets an expression tree for every call; indexing runs every parameter of a
resource on each write, so the common shapes are compiled once per (resource type,
parameter) into closures over dict lookups:

- dotted paths ``Patient.name.family``, relative paths, ``%resource.x``, unions ``A | B``;
- choice elements, resolved with the R4 model: ``Observation.value`` reads
  ``valueQuantity``, ``valueString``...; ``(X as T)``, ``X.as(T)`` and ``X.ofType(T)``
  keep the one choice ``T``;
- filters ``.where(resolve() is Patient)`` (on the literal reference's type) and
  ``.where(system='phone')``; indexers ``[n]`` and ``first()``;
- ``X.exists() and X != false`` (Patient.deceased).

Anything else raises `Unsupported` and the caller falls back to fhirpathpy. The R4 type
model (choice types, element types) is the one fhirpathpy ships, so both engines agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from phivault.fhir.search.convert import reference_type
from phivault.fhir.search.registry import COMMON_BASES, split_union

Step = Callable[[list[Any]], list[Any]]
Getter = Callable[[Any, dict[str, Any]], list[Any]]
"""(focus element, root resource) -> the selected elements."""

_IDENT = r"[A-Za-z][A-Za-z0-9]*"
_AS = re.compile(rf"(.+?)\s+as\s+({_IDENT})", re.DOTALL)
_CALL = re.compile(rf"(as|ofType)\(\s*({_IDENT})\s*\)")
_RESOLVE = re.compile(rf"where\(\s*resolve\(\)\s+is\s+({_IDENT})\s*\)")
_WHERE_EQ = re.compile(rf"where\(\s*({_IDENT})\s*=\s*'([^'\\]*)'\s*\)")
_INDEXED = re.compile(rf"({_IDENT})\[(\d+)\]")
_EXISTS_NOT_FALSE = re.compile(r"(?P<x>[^|()]+)\.exists\(\) and (?P=x) != false")


class Unsupported(Exception):
    """The expression is outside the compiled subset; evaluate it with fhirpathpy."""


@dataclass(frozen=True, slots=True)
class Branch:
    getter: Getter
    context: str | None  # FHIR type (or backbone path) of the selected elements


class _Model:
    """The R4 element model fhirpathpy uses: element types and choice types by path."""

    def __init__(self) -> None:
        from fhirpathpy.models import models  # only needed while compiling

        r4 = models["r4"]
        self.path2type: dict[str, str] = r4["path2Type"]
        self.choices: dict[str, list[str]] = r4["choiceTypePaths"]
        self.parent: dict[str, str] = r4["type2Parent"]
        self.elsewhere: dict[str, str] = r4["pathsDefinedElsewhere"]
        self.backbones: set[str] = set()
        for path in [*self.path2type, *self.choices]:
            parts = path.split(".")
            for end in range(2, len(parts)):
                self.backbones.add(".".join(parts[:end]))

    def child(self, context: str, name: str) -> tuple[str, list[str] | None]:
        """(type of context.name, its choice types when it is a choice element)."""
        owner: str | None = context
        while owner:
            path = self.elsewhere.get(f"{owner}.{name}", f"{owner}.{name}")
            if path in self.choices:
                return path, self.choices[path]
            if path in self.path2type:
                return self.path2type[path], None
            if path in self.backbones:
                return path, None
            owner = self.parent.get(owner)
        raise Unsupported(f"{context}.{name}")

    def is_a(self, type_name: str, wanted: str) -> bool:
        current: str | None = type_name
        while current:
            if current == wanted:
                return True
            current = self.parent.get(current)
        return False


@cache
def _model() -> _Model:
    return _Model()


def _matching_paren(text: str, open_at: int) -> int:
    depth, quoted = 0, False
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise Unsupported(text)


def _split_dots(path: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(path):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "." and depth == 0:
            parts.append(path[start:i].strip())
            start = i + 1
    parts.append(path[start:].strip())
    return parts


def _tokens(path: str) -> list[tuple[str, ...]]:
    tokens: list[tuple[str, ...]] = []
    for part in _split_dots(path):
        if re.fullmatch(_IDENT, part) or (part == "%resource" and not tokens):
            tokens.append(("child", part))
        elif m := _INDEXED.fullmatch(part):
            tokens += [("child", m.group(1)), ("index", m.group(2))]
        elif m := _CALL.fullmatch(part):
            tokens.append(("as", m.group(2)))
        elif m := _RESOLVE.fullmatch(part):
            tokens.append(("resolve", m.group(1)))
        elif m := _WHERE_EQ.fullmatch(part):
            tokens.append(("eq", m.group(1), m.group(2)))
        elif part == "first()":
            tokens.append(("index", "0"))
        else:
            raise Unsupported(part)
    return tokens


def parse_branch(branch: str) -> list[tuple[str, ...]]:
    """One union branch as tokens: ("child", name) ("as", T) ("index", n) ("resolve", T)
    ("eq", field, literal)."""
    branch = branch.strip()
    if not branch.startswith("("):
        return _tokens(branch)
    close = _matching_paren(branch, 0)
    inner, rest = branch[1:close].strip(), branch[close + 1 :].strip()
    match = _AS.fullmatch(inner)
    if match is None:
        raise Unsupported(branch)
    tokens = [*_tokens(match.group(1)), ("as", match.group(2))]
    if rest:
        if not rest.startswith("."):
            raise Unsupported(branch)
        tokens += _tokens(rest[1:])
    return tokens


# --- steps ------------------------------------------------------------------------------


def _child(keys: tuple[str, ...]) -> Step:
    if len(keys) == 1:
        key = keys[0]

        def one(nodes: list[Any]) -> list[Any]:
            out: list[Any] = []
            for node in nodes:
                if isinstance(node, dict) and (value := node.get(key)) is not None:
                    if type(value) is list:
                        out.extend(value)
                    else:
                        out.append(value)
            return out

        return one

    def many(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if isinstance(node, dict):
                for key in keys:
                    if (value := node.get(key)) is not None:
                        if type(value) is list:
                            out.extend(value)
                        else:
                            out.append(value)
        return out

    return many


def _index(n: int) -> Step:
    return lambda nodes: nodes[n : n + 1]


def _resolve_is(type_name: str) -> Step:
    def keep(node: Any) -> bool:
        ref = node.get("reference") if isinstance(node, dict) else None
        return isinstance(ref, str) and reference_type(ref) == type_name

    return lambda nodes: [node for node in nodes if keep(node)]


def _where_eq(field: str, literal: str) -> Step:
    return lambda nodes: [n for n in nodes if isinstance(n, dict) and n.get(field) == literal]


def _nothing(nodes: list[Any]) -> list[Any]:
    return []


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _chain(from_root: bool, keys: tuple[str, ...] | None, steps: tuple[Step, ...]) -> Getter:
    if from_root and keys is not None and len(keys) == 1:
        # Fast path for the usual `Type.element...`: the first step is one dict lookup.
        first = keys[0]

        def from_key(focus: Any, root: dict[str, Any]) -> list[Any]:
            value = root.get(first)
            if value is None:
                return []
            nodes = value if type(value) is list else [value]
            for step in steps:
                nodes = step(nodes)
                if not nodes:
                    break
            return nodes

        return from_key

    def run(focus: Any, root: dict[str, Any]) -> list[Any]:
        nodes = [root if from_root else focus]
        for step in steps:
            nodes = step(nodes)
            if not nodes:
                break
        return nodes

    if keys is not None:
        steps = (_child(keys), *steps)
    return run


def compile_branch(
    branch: str, context: str, resource_type: str, is_resource_type: Callable[[str], bool]
) -> Branch | None:
    """Compile one union branch evaluated on `context` (a type or backbone path) inside a
    `resource_type` resource; None when the branch belongs to another resource type."""
    model = _model()
    tokens = parse_branch(branch)
    from_root = False
    head = tokens[0]
    if head[0] == "child" and head[1] in (resource_type, "%resource", *COMMON_BASES):
        from_root, context, tokens = True, resource_type, tokens[1:]
    elif head[0] == "child" and is_resource_type(head[1]):
        return None
    state: str | None = context
    choice: tuple[str, list[str]] | None = None
    first_keys: tuple[str, ...] | None = None
    steps: list[Step] = []

    def push_child(keys: tuple[str, ...]) -> None:
        nonlocal first_keys
        if first_keys is None and not steps:
            first_keys = keys
        else:
            steps.append(_child(keys))

    def flush_choice() -> None:
        nonlocal choice, state
        if choice is not None:
            push_child(tuple(choice[0] + t for t in choice[1]))
            choice, state = None, None

    for token in tokens:
        if token[0] == "as" and choice is not None:
            wanted = _cap(token[1])
            push_child(tuple(choice[0] + t for t in choice[1] if t == wanted))
            choice, state = None, token[1]
            continue
        flush_choice()
        if token[0] == "child":
            if state is None:
                raise Unsupported(branch)  # into an unresolved choice
            state, choices = model.child(state, token[1])
            if choices is not None:
                choice = (token[1], choices)
            else:
                push_child((token[1],))
        elif token[0] == "as":
            if state is None or not model.is_a(state, token[1]):
                steps.append(_nothing)
        elif token[0] == "index":
            steps.append(_index(int(token[1])))
        elif token[0] == "resolve":
            steps.append(_resolve_is(token[1]))
        else:
            steps.append(_where_eq(token[1], token[2]))
    flush_choice()
    return Branch(_chain(from_root, first_keys, tuple(steps)), state)


def compile_expression(
    expression: str, context: str, resource_type: str, is_resource_type: Callable[[str], bool]
) -> list[Branch]:
    """Compile every branch of `expression` that applies to `resource_type`."""
    special = _EXISTS_NOT_FALSE.fullmatch(expression.strip())
    if special is not None:
        inner = compile_expression(special["x"], context, resource_type, is_resource_type)
        return [Branch(_exists_not_false(inner), "boolean")]
    branches = []
    for text in split_union(expression):
        branch = compile_branch(text, context, resource_type, is_resource_type)
        if branch is not None:
            branches.append(branch)
    return branches


def _exists_not_false(inner: list[Branch]) -> Getter:
    def get(focus: Any, root: dict[str, Any]) -> list[Any]:
        found = [node for b in inner for node in b.getter(focus, root)]
        # FHIRPath: `{} and ...` is false; `x != false` is true for any non-boolean x.
        return [bool(found) and found[0] is not False]

    return get


def union(branches: list[Branch]) -> Getter:
    if len(branches) == 1:
        return branches[0].getter
    getters = tuple(b.getter for b in branches)

    def get(focus: Any, root: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for getter in getters:
            out.extend(getter(focus, root))
        return out

    return get
