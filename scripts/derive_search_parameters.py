"""Derive phivault's compact search-parameter registry from the official FHIR R4 definitions.

Reads, from the shared data directory (``--shared``, else ``$PHIVAULT_SHARED``, else
``shared/`` beside the repository):

- ``fhir/r4/search-parameters.json``: the FHIR R4 (4.0.1) SearchParameter bundle, CC0;
- ``fhir/r4/compartmentdefinition-patient.json``: the R4 Patient CompartmentDefinition, CC0;

and writes ``src/phivault/data/search-parameters.json`` and
``src/phivault/data/compartment-patient.json``. The output is deterministic (sorted, one
definition per line) and records where it came from: source name, FHIR version, the sha256
of each source file and the licence. ``--check`` exits 1 when the shipped files are stale.

Two definitions in the published R4 bundle are known to be wrong; the corrections applied
are listed in the output file under ``corrections`` so the derivation stays auditable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "phivault" / "data"
FHIR_VERSION = "4.0.1"
LICENCE = "CC0-1.0"
GENERATOR = "scripts/derive_search_parameters.py"
# R4 resource types that neither source names: Parameters has no search parameter of its
# own and is in no compartment, but it is an R4 resource and has the common parameters.
EXTRA_RESOURCE_TYPES = ("Parameters",)

# (definition url, component index, field, published value, corrected value, reason)
CORRECTIONS: tuple[tuple[str, int, str, str, str, str], ...] = (
    (
        "http://hl7.org/fhir/SearchParameter/Observation-code-value-date",
        1,
        "expression",
        "value.as(DateTime) | value.as(Period)",
        "value.as(dateTime) | value.as(Period)",
        "FHIRPath type names are case-sensitive; the FHIR type is dateTime",
    ),
    (
        "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship",
        0,
        "expression",
        "code",
        "target",
        "components swapped in R4: relatesto is the reference in relatesTo.target",
    ),
    (
        "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship",
        1,
        "expression",
        "target",
        "code",
        "components swapped in R4: relation is the token in relatesTo.code",
    ),
)


def default_shared() -> Path:
    configured = os.environ.get("PHIVAULT_SHARED")
    return Path(configured) if configured else REPO.parent / "shared"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compact_definition(res: dict[str, Any], by_url: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": res["url"],
        "code": res["code"],
        "base": list(res["base"]),
        "type": res["type"],
    }
    if res.get("expression"):
        out["expression"] = res["expression"]
    if res.get("target"):
        out["target"] = sorted(res["target"])
    for key in ("modifier", "comparator"):
        if res.get(key):
            out[key] = list(res[key])
    for key in ("multipleOr", "multipleAnd"):
        if key in res:
            out[key] = bool(res[key])
    if res.get("component"):
        components = []
        for comp in res["component"]:
            target = by_url.get(comp["definition"])
            if target is None:
                raise SystemExit(f"{res['url']}: unknown component {comp['definition']}")
            components.append(
                {
                    "definition": comp["definition"],
                    "code": target["code"],
                    "type": target["type"],
                    "expression": comp["expression"],
                }
            )
        out["component"] = components
    return out


def apply_corrections(params: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    applied = []
    for url, index, field, published, corrected, reason in CORRECTIONS:
        comp = params[url]["component"][index]
        if comp[field] != published:
            raise SystemExit(f"{url}: correction no longer matches the source; review it")
        comp[field] = corrected
        applied.append(
            {
                "url": url,
                "path": f"component[{index}].{field}",
                "published": published,
                "corrected": corrected,
                "reason": reason,
            }
        )
    return applied


def derive_search_parameters(source: Path, compartment: Path) -> str:
    bundle = json.loads(source.read_text(encoding="utf-8"))
    resources = [entry["resource"] for entry in bundle["entry"]]
    # The published 4.0.1 bundle labels one definition (DeviceDefinition-classification)
    # 5.0.0-snapshot1; everything else must be 4.0.1 or this is not the R4 bundle.
    if sum(res.get("version") != FHIR_VERSION for res in resources) > 1:
        raise SystemExit(f"{source.name}: not the FHIR {FHIR_VERSION} bundle")
    by_url = {res["url"]: res for res in resources}
    params = {res["url"]: compact_definition(res, by_url) for res in resources}
    corrections = apply_corrections(params)
    members = json.loads(compartment.read_text(encoding="utf-8"))["resource"]
    resource_types = sorted(
        ({b for p in params.values() for b in p["base"]} - {"Resource", "DomainResource"})
        | {r["code"] for r in members}
        | set(EXTRA_RESOURCE_TYPES)
    )
    header = {
        "source": {
            "name": "FHIR R4 SearchParameter definitions (search-parameters.json)",
            "publisher": "HL7 International",
            "url": "http://hl7.org/fhir/R4/search-parameters.json",
            "fhirVersion": FHIR_VERSION,
            "sha256": sha256_of(source),
            "license": LICENCE,
            "lastUpdated": bundle.get("meta", {}).get("lastUpdated"),
            "count": len(resources),
        },
        "generator": GENERATOR,
        "corrections": corrections,
        # Every R4 resource type: the definitions' bases, the Patient compartment's
        # members and EXTRA_RESOURCE_TYPES.
        "resourceTypes": resource_types,
    }
    ordered = sorted(params.values(), key=lambda p: p["url"])
    lines = [json.dumps(p, sort_keys=True, separators=(",", ":")) for p in ordered]
    head = json.dumps(header, sort_keys=True, indent=1)
    # One definition per line keeps diffs of a re-derivation readable.
    return head[:-2] + ',\n "parameters": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def derive_compartment(source: Path) -> str:
    definition = json.loads(source.read_text(encoding="utf-8"))
    if definition.get("code") != "Patient" or definition.get("version") != FHIR_VERSION:
        raise SystemExit("expected the FHIR R4 Patient CompartmentDefinition")
    members = {r["code"]: list(r.get("param", [])) for r in definition["resource"]}
    doc = {
        "source": {
            "name": "FHIR R4 Patient CompartmentDefinition (compartmentdefinition-patient.json)",
            "publisher": "HL7 International",
            "url": definition["url"],
            "fhirVersion": FHIR_VERSION,
            "sha256": sha256_of(source),
            "license": LICENCE,
        },
        "generator": GENERATOR,
        # Every R4 resource type, with the search parameters that put it in a patient's
        # compartment (empty: the type is never in the compartment).
        "resourceTypes": dict(sorted(members.items())),
    }
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=None, help="shared data directory")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument("--check", action="store_true", help="fail if the output is stale")
    args = parser.parse_args(argv)
    r4 = (args.shared or default_shared()) / "fhir" / "r4"
    outputs = {
        "search-parameters.json": derive_search_parameters(
            r4 / "search-parameters.json", r4 / "compartmentdefinition-patient.json"
        ),
        "compartment-patient.json": derive_compartment(r4 / "compartmentdefinition-patient.json"),
    }
    stale = []
    for name, text in outputs.items():
        target = args.out / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
    if stale:
        print("stale: " + ", ".join(stale) + f" (run {GENERATOR})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
