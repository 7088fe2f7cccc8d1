"""Rotation and shredding while a real server (uvicorn, in a thread, with its own key ring
and store connections) keeps creating and reading patients, on both backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from phivault.crypto.kek import create_key_file
from phivault.errors import KeyMaterialError
from phivault.vault import Vault
from tests.keys_support import CTX, clinic, load_clinic, open_with, patients_of, raw_sql, run_cli
from tests.keys_support import serving as serve_in_thread

NEW_PATIENT = {"resourceType": "Patient", "name": [{"family": "Rotationtest", "given": ["Ana"]}]}


class Load:
    """Creates new patients (each one a new data key) and reads known ones, non-stop."""

    def __init__(self, base: str, known: list[str]) -> None:
        self.base, self.known = base, known
        self.created: list[str] = []
        self.failures: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                res = client.post(f"{self.base}/Patient", json=NEW_PATIENT)
                if res.status_code == 201:
                    self.created.append(res.json()["id"])
                else:
                    self.failures.append(res.status_code)
                res = client.get(f"{self.base}/Patient/{self.known[i % len(self.known)]}")
                if res.status_code != 200:
                    self.failures.append(res.status_code)
                i += 1


@contextmanager
def load_while_serving(vault: Vault, known: list[str]) -> Iterator[Load]:
    vault.keyring.refresh_interval = 0.05  # how soon the server notices another process
    with serve_in_thread(vault) as base:
        load = Load(base, known)
        load.thread.start()
        time.sleep(0.3)
        try:
            yield load
            time.sleep(0.3)  # keep serving after the command returned
        finally:
            load.stop.set()
            load.thread.join(timeout=30)


@pytest.fixture
def served(data_dir: Path, key_file: Path) -> Iterator[tuple[Vault, list[str]]]:
    vault = open_with(data_dir, key_file)
    resources = clinic(4)
    load_clinic(vault, resources)
    try:
        yield vault, [p["id"] for p in patients_of(resources)]
    finally:
        vault.close()


def test_kek_rotation_while_serving_loses_nothing(
    served: tuple[Vault, list[str]], data_dir: Path, key_file: Path, tmp_path: Path
) -> None:
    vault, known = served
    new_key = tmp_path / "new.key"
    create_key_file(new_key)
    with load_while_serving(vault, known) as load:
        out = run_cli(
            "keys", "rotate", "--data", str(data_dir), "--key-file", str(key_file),
            "--new-key-file", str(new_key), "--grace", "0.5",
        )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert load.failures == []
    assert len(load.created) >= 5
    vault.close()
    # A restart with the new key opens every record, including the patients (and data
    # keys) created by the server during the rotation; the old key opens nothing.
    with pytest.raises(KeyMaterialError):
        open_with(data_dir, key_file)
    restarted = open_with(data_dir, new_key)
    try:
        for rid in known + load.created:
            assert restarted.service.read(CTX, "Patient", rid).body
    finally:
        restarted.close()


def test_data_key_rotation_while_serving(
    served: tuple[Vault, list[str]], data_dir: Path, key_file: Path
) -> None:
    vault, known = served
    with load_while_serving(vault, known) as load:
        out = run_cli(
            "keys", "rotate", "--data", str(data_dir), "--key-file", str(key_file),
            "--data-keys", "--grace", "0.3",
        )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "generation 2" in out.output
    assert load.failures == []
    # Every stored version, old or written during the run, is under generation 2 now.
    headers = {
        bytes(r[0])[:1] for r in raw_sql(vault, "SELECT body FROM versions WHERE body IS NOT NULL")
    }
    assert headers == {b"\x02"}
    for rid in known + load.created:
        assert vault.service.read(CTX, "Patient", rid).body


def test_a_running_server_notices_a_shred_by_the_cli(
    served: tuple[Vault, list[str]], data_dir: Path, key_file: Path
) -> None:
    vault, known = served
    victim, other = known[0], known[1]
    vault.keyring.refresh_interval = 0.05
    with serve_in_thread(vault) as base, httpx.Client(timeout=30) as client:
        assert client.get(f"{base}/Patient/{victim}").status_code == 200  # its key is cached
        out = run_cli(
            "keys", "shred", "--data", str(data_dir), "--key-file", str(key_file),
            "--patient", victim, "--yes",
        )  # fmt: skip
        assert out.exit_code == 0, out.output
        time.sleep(0.2)
        res = client.get(f"{base}/Patient/{victim}")
        assert res.status_code == 410
        assert res.json()["issue"][0]["code"] == "deleted"
        assert "crypto-shredded" in res.json()["issue"][0]["diagnostics"]
        assert client.get(f"{base}/Patient/{other}").status_code == 200
        # A write into the shredded compartment is refused too: no new key under its id.
        res = client.put(f"{base}/Patient/{victim}", json={**NEW_PATIENT, "id": victim})
        assert res.status_code == 410
