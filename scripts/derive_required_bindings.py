"""Derive phivault's compact table of FHIR R4 required value-set bindings.

Source: the npm package ``fhir`` (FHIR.js) 4.12.0, whose ``profiles/types.json`` and
``profiles/valuesets.json`` are generated from the FHIR R4 (4.0.1) specification's
``profiles-types.json``, ``profiles-resources.json`` and ``valuesets.json`` (CC0): every
element of every R4 type with its type, its binding strength and value set, and each value
set's codes, expanded. (The official ``hl7.fhir.r4.core`` package is not on the npm
registry this project can reach.) Get it with::

    npm pack fhir@4.12.0 && tar xzf fhir-4.12.0.tgz    # into a scratch folder

then run ``python scripts/derive_required_bindings.py --package DIR/package``. The output,
``src/phivault/data/required-bindings.json``, is deterministic and records the source files'
sha256; ``--check`` exits 1 when the shipped file is stale.

What it keeps (besides ``extension``/``modifierExtension``, an Extension everywhere, and
``_name`` siblings of primitives, an Element everywhere): for each type (resource, data
type, or backbone element named ``#Path.to.element``), the elements that lead to a
required binding, either directly (a ``code``: ``{"codes": value set}``; a Coding or
CodeableConcept: ``{"concepts": value set}``) or through their type (``{"type": name}``;
``Resource`` for contained and nested resources); each such value set's codes
(``valueSets``) or ``system|code`` pairs (``conceptSets``). Value sets the source cannot
enumerate (mime types, currencies, UCUM units, a LOINC answer list) are listed under
``notEnumerable`` and not checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "phivault" / "data" / "required-bindings.json"
GENERATOR = "scripts/derive_required_bindings.py"
SOURCE = "npm package fhir 4.12.0 (FHIR.js): profiles/types.json, profiles/valuesets.json"
RESOURCE = "Resource"
# Elements every type has with the same type; the checker applies them everywhere:
# extensions, and a primitive's "_name" sibling (an Element: id and extensions).
GENERIC = frozenset({"extension", "modifierExtension"})
CONCEPT_TYPES = frozenset({"Coding", "CodeableConcept"})

Node = dict[str, dict[str, str]]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _children(
    key: str, props: list[dict[str, Any]], table: dict[str, Node], bindings: set[str]
) -> None:
    """Every element of `key` that names a binding or a type, before pruning."""
    node: Node = {}
    for prop in props:
        name, kind = prop["_name"], prop["_type"]
        if name.startswith("_") or name in GENERIC:
            continue  # the same in every type: the checker knows these itself
        if prop.get("_valueSetStrength") == "required" and kind == "code":
            node[name] = {"codes": prop["_valueSet"]}
            bindings.add(prop["_valueSet"])
        elif prop.get("_valueSetStrength") == "required" and kind in CONCEPT_TYPES:
            node[name] = {"concepts": prop["_valueSet"]}
            bindings.add(prop["_valueSet"])
        elif kind in ("BackboneElement", "Element") and prop.get("_properties"):
            inner = f"#{key.lstrip('#')}.{name}"
            _children(inner, prop["_properties"], table, bindings)
            node[name] = {"type": inner}
        elif kind.startswith("#"):
            node[name] = {"type": kind}
        elif kind in ("Resource", "DomainResource"):
            node[name] = {"type": RESOURCE}
        elif kind[:1].isupper():
            node[name] = {"type": kind}
    table[key] = node


def _checks(child: dict[str, str]) -> bool:
    return "codes" in child or "concepts" in child


def _prune(table: dict[str, Node], resources: set[str]) -> dict[str, Node]:
    """Only what leads to a checked binding; `Resource` leads to every resource type."""
    useful: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key, node in table.items():
            if key in useful:
                continue
            for child in node.values():
                target = child.get("type")
                if (
                    _checks(child)
                    or target in useful
                    or (target == RESOURCE and useful & resources)
                ):
                    useful.add(key)
                    changed = True
                    break
    kept: dict[str, Node] = {}
    for key in sorted(useful):
        node = {}
        for name, child in sorted(table[key].items()):
            target = child.get("type")
            if _checks(child) or target in useful or target == RESOURCE:
                node[name] = child
        kept[key] = node
    return kept


def derive(package: Path) -> dict[str, Any]:
    types_path = package / "profiles" / "types.json"
    valuesets_path = package / "profiles" / "valuesets.json"
    types = json.loads(types_path.read_text(encoding="utf-8"))
    valuesets = json.loads(valuesets_path.read_text(encoding="utf-8"))
    table: dict[str, Node] = {}
    bindings: set[str] = set()
    resources: set[str] = set()
    for name, definition in types.items():
        if definition.get("_kind") == "resource":
            resources.add(name)
        _children(name, definition.get("_properties", []), table, bindings)
    children = [c for node in table.values() for c in node.values()]
    code_sets = {c["codes"] for c in children if "codes" in c}
    concept_sets = {c["concepts"] for c in children if "concepts" in c}
    codes: dict[str, list[str]] = {}
    concepts: dict[str, list[str]] = {}
    missing: list[str] = []
    for url in sorted(bindings):
        found = valuesets.get(url.split("|")[0])
        systems = (found or {}).get("systems", [])
        pairs = {(s["uri"], c["code"]) for s in systems for c in s.get("codes", [])}
        if not pairs:
            missing.append(url)
            continue
        if url in code_sets:
            codes[url] = sorted({code for _, code in pairs})
        if url in concept_sets:
            concepts[url] = sorted(f"{system}|{code}" for system, code in pairs)
    for node in table.values():  # an element bound to a value set we cannot list: unchecked
        unlisted = [n for n, c in node.items() if (c.get("codes") or c.get("concepts")) in missing]
        for name in unlisted:
            del node[name]
    return {
        "source": {
            "name": SOURCE,
            "fhirVersion": "4.0.1",
            "generatedFrom": "FHIR R4 profiles-types.json, profiles-resources.json, valuesets.json",
            "license": "CC0-1.0 (the FHIR definitions); the FHIR.js package is ISC",
            "sha256": {
                "types.json": _sha256(types_path),
                "valuesets.json": _sha256(valuesets_path),
            },
            "generator": GENERATOR,
        },
        "resourceTypes": sorted(resources),
        "notEnumerable": missing,
        "valueSets": codes,
        "conceptSets": concepts,
        "types": _prune(table, resources),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--package", type=Path, required=True, help="the unpacked fhir package")
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs")
    args = parser.parse_args(argv)
    text = render(derive(args.package))
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{OUT.name} is stale")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
