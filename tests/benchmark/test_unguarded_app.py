"""The safeguards-off bench app: only for unencrypted bench directories, never reachable
from `serve`, and really without audit and access control (else the comparison lies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from phivault.benchmark.unguarded_app import create_unguarded_bench_app
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import ConfigError
from phivault.store.factory import open_store
from phivault.vault import init_data_dir


def _use(monkeypatch: pytest.MonkeyPatch, data: Path, key: Path) -> None:
    monkeypatch.setenv("PHIVAULT_BENCH_DATA", str(data))
    monkeypatch.setenv("PHIVAULT_BENCH_KEY_FILE", str(key))


def test_refuses_an_encrypted_data_directory(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, key_file: Path
) -> None:
    _use(monkeypatch, data_dir, key_file)  # data_dir is initialised as `phivault init` does
    with pytest.raises(ConfigError):
        create_unguarded_bench_app()


def test_needs_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHIVAULT_BENCH_DATA", raising=False)
    with pytest.raises(ConfigError):
        create_unguarded_bench_app()


def test_serves_without_token_and_records_no_audit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_file: Path, db_url: str | None
) -> None:
    data = tmp_path / "bench-data"
    init_data_dir(data, KeyFileKeySource(key_file), db_url=db_url, encryption=False)
    store = open_store(data, db_url)
    before = store.audit_size()
    _use(monkeypatch, data, key_file)
    with TestClient(create_unguarded_bench_app()) as client:
        created = client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Bench"}]},
            headers={"Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 201
        rid = created.json()["id"]
        assert client.get(f"/fhir/Patient/{rid}").json()["name"][0]["family"] == "Bench"
    assert store.audit_size() == before
    store.close()


def test_serve_never_loads_the_bench_package() -> None:
    """The served app's module graph has no path to the unguarded app."""
    probe = (
        "import sys, phivault.api.asgi, phivault.cli.serve_cmd; "
        "print(any(m.startswith('phivault.benchmark') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
