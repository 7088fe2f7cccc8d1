"""What a thief gets: load the demo clinic, then read every byte the store wrote (the data
directory: database, WAL, journals, temp files, logs; and a pg_dump of the PostgreSQL
schema) looking for any patient's identity in any encoding the store uses.

The same scan over a directory made with encryption off must find them, or it proves
nothing."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from phivault.crypto.blind import normalize_string
from phivault.crypto.kek import KeyFileKeySource
from phivault.types import Resource
from phivault.vault import Vault, init_data_dir
from tests.keys_support import CTX, clinic, load_clinic, open_with, patients_of, raw_sql

PATIENTS = 30
CATEGORIES = ("family", "given", "mrn", "ssn", "phone", "email", "street", "birthdate")


def identities(patient: Resource) -> list[tuple[str, str]]:
    """(category, value) of everything that identifies this patient."""
    found: list[tuple[str, str]] = []
    for name in patient.get("name", []):
        found.append(("family", name["family"]))
        found.extend(("given", g) for g in name.get("given", []))
    for ident in patient.get("identifier", []):
        found.append(("ssn" if ident["system"].endswith("us-ssn") else "mrn", ident["value"]))
    for telecom in patient.get("telecom", []):
        found.append((telecom["system"], telecom["value"]))
    for address in patient.get("address", []):
        found.extend(("street", line) for line in address.get("line", []))
    found.append(("birthdate", patient["birthDate"]))
    return found


def b64_inner(data: bytes) -> list[bytes]:
    """The base64 characters that encode `data` whatever its alignment in a larger blob."""
    out = []
    for offset in range(3):
        encoded = base64.b64encode(b"\x00" * offset + data)
        out.append(encoded[-(-8 * offset // 6) : 8 * (offset + len(data)) // 6])
    return out


def encodings(value: str) -> list[bytes]:
    """How the store could hold `value`: raw UTF-8, normalized (the blind index's input),
    JSON-quoted and JSON-escaped, hex (pg_dump's bytea), base64. Matching is done on a
    lower-cased haystack; raw needles shorter than 6 bytes are only looked for with their
    JSON quotes (a 4-byte needle matches random ciphertext too often)."""
    raw = value.encode()
    forms = {raw, normalize_string(value).encode(), json.dumps(value).encode()}
    forms.add(json.dumps(value, ensure_ascii=False).encode())
    needles = {f.lower() for f in forms if len(f) >= 6}
    # Hex: blind-index tokens are hex too, so a short needle would match them by chance.
    hexed = {raw.hex().encode(), json.dumps(value).encode().hex().encode()}
    needles |= {h for h in hexed if len(h) >= 12}
    for form in forms:
        if len(form) >= 9:
            needles |= {n.lower() for n in b64_inner(form)}
    return sorted(needles)


def haystacks(vault: Vault, data_dir: Path, db_url: str | None) -> dict[str, bytes]:
    found = {
        str(path.relative_to(data_dir)): path.read_bytes().lower()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }
    assert found, "nothing to scan"
    if db_url is not None:
        url = urlsplit(db_url)
        schema = dict(p.split("=", 1) for p in url.query.split("&"))["schema"]
        dump = subprocess.run(
            ["pg_dump", "-h", url.hostname or "127.0.0.1", "-U", url.username or "postgres",
             "-n", schema, url.path.lstrip("/")],
            check=True, capture_output=True, timeout=120,
        ).stdout  # fmt: skip
        assert b"COPY " in dump and b"versions" in dump
        found["pg_dump"] = dump.lower()
    return found


def scan(
    vault: Vault, data_dir: Path, db_url: str | None, patients: list[Resource]
) -> dict[str, set[str]]:
    """category -> where a value of that category was found in clear."""
    stacks = haystacks(vault, data_dir, db_url)
    # Whole resources as stored, base64-encoded (as a careless export or log would).
    bodies = [vault.service.read(CTX, "Patient", p["id"]).body or b"" for p in patients]
    hits: dict[str, set[str]] = {}
    for patient, body in zip(patients, bodies, strict=True):
        checks = [(c, n) for c, v in identities(patient) for n in encodings(v)]
        checks.append(("resource", base64.b64encode(body).lower()))
        for category, needle in checks:
            for where, stack in stacks.items():
                if needle in stack:
                    hits.setdefault(category, set()).add(where)
    # Exact values in the index and version tables (no length limit: exact cell match).
    cells: set[str] = set()
    for table in ["idx_token", "idx_string", "idx_reference", "idx_uri", "idx_composite"]:
        for row in raw_sql(vault, f"SELECT * FROM {table}"):
            cells.update(str(c).lower() for c in row if isinstance(c, str))
    for patient in patients:
        for category, value in identities(patient):
            if {value.lower(), normalize_string(value)} & cells:
                hits.setdefault(category, set()).add("index table")
    return hits


def test_the_needles_find_what_they_look_for() -> None:
    value = "Quentina O'Hara-Müller"
    blob = json.dumps({"resourceType": "Patient", "name": [{"family": value}]}).encode()
    for prefix in (b"", b"x", b"xy"):
        for haystack in (prefix + blob, base64.b64encode(prefix + blob), (prefix + blob).hex()):
            stack = haystack if isinstance(haystack, bytes) else haystack.encode()
            assert any(n in stack.lower() for n in encodings(value)), haystack


@pytest.mark.parametrize("encryption", [True, False], ids=["encrypted", "plaintext"])
def test_no_patient_identity_at_rest(
    tmp_path: Path, key_file: Path, db_url: str | None, encryption: bool
) -> None:
    data_dir = tmp_path / "scan"
    init_data_dir(data_dir, KeyFileKeySource(key_file), db_url=db_url, encryption=encryption)
    vault = open_with(data_dir, key_file, encryption=encryption)
    resources = clinic(PATIENTS)
    patients = patients_of(resources)
    try:
        load_clinic(vault, resources)
        hits = scan(vault, data_dir, db_url, patients)
    finally:
        vault.close()
    if encryption:
        assert hits == {}, f"identities found in clear: {hits}"
    else:
        # The scan can fail: every category is found in clear.
        assert set(CATEGORIES) <= set(hits), hits
        assert hits["family"] & ({"pg_dump"} if db_url else {"phivault.db", "phivault.db-wal"})


def test_plaintext_directories_are_never_served(tmp_path: Path, key_file: Path) -> None:
    from phivault.errors import ConfigError

    plain, secret = tmp_path / "plain", tmp_path / "secret"
    init_data_dir(plain, KeyFileKeySource(key_file), encryption=False)
    init_data_dir(secret, KeyFileKeySource(key_file))
    with pytest.raises(ConfigError, match="encryption off"):
        open_with(plain, key_file)  # what `serve` does
    with pytest.raises(ConfigError, match="encrypted"):
        open_with(secret, key_file, encryption=False)
