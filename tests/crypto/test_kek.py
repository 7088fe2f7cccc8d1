"""Key-encryption keys: passphrase and key-file sources, key check, plug-in registry."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from phivault.crypto import kek as kek_mod
from phivault.crypto.kek import (
    Kek,
    KekParams,
    KeyFileKeySource,
    LocalKek,
    PassphraseKeySource,
    create_key_file,
    get_key_source,
    initialize_kek,
    key_source_names,
    make_key_check,
    read_key_file,
    register_key_source,
    unlock_kek,
    verify_key_check,
)
from phivault.crypto.keyring import KeyRing, MemoryWrappedKeyStore
from phivault.errors import ConfigError, DecryptionError, KeyMaterialError

CHEAP = {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1}


def _passphrase(p: str) -> PassphraseKeySource:
    return PassphraseKeySource(p, **CHEAP)


def test_passphrase_first_open_makes_fresh_params() -> None:
    kek1, params1 = _passphrase("correct horse").open_kek(None)
    kek2, params2 = _passphrase("correct horse").open_kek(None)
    assert params1.source == "passphrase"
    assert params1.settings["salt"] != params2.settings["salt"]
    assert len(base64.b64decode(str(params1.settings["salt"]))) == 16
    assert params1.settings["time_cost"] == 1
    assert kek1.key_id != kek2.key_id  # different salt, different KEK


def test_passphrase_derive_is_deterministic_with_stored_params() -> None:
    kek1, params = _passphrase("correct horse").open_kek(None)
    stored = KekParams.from_json(params.to_json())
    # Costs given to the constructor do not matter once params are stored.
    kek2, params2 = PassphraseKeySource("correct horse").open_kek(stored)
    assert params2 == stored
    assert kek1.key_id == kek2.key_id
    assert kek2.unwrap(kek1.wrap(b"k" * 32, b"aad"), b"aad") == b"k" * 32


def test_passphrase_is_nfc_normalized() -> None:
    _, params = _passphrase("Jos\u00e9").open_kek(None)
    a, _ = _passphrase("Jos\u00e9").open_kek(params)
    b, _ = _passphrase("Jose\u0301").open_kek(params)
    assert a.key_id == b.key_id


def test_default_costs() -> None:
    assert kek_mod.DEFAULT_TIME_COST == 3
    assert kek_mod.DEFAULT_MEMORY_COST_KIB == 64 * 1024
    assert kek_mod.DEFAULT_PARALLELISM == 1


def test_wrong_passphrase_fails_key_check() -> None:
    kek, params, check = initialize_kek(_passphrase("correct horse"))
    assert unlock_kek(_passphrase("correct horse"), params, check).key_id == kek.key_id
    with pytest.raises(KeyMaterialError) as excinfo:
        unlock_kek(_passphrase("wrong horse"), params, check)
    assert "does not open this data directory" in excinfo.value.message
    assert excinfo.value.__context__ is None and excinfo.value.__cause__ is None


def test_empty_passphrase_refused() -> None:
    with pytest.raises(KeyMaterialError):
        PassphraseKeySource("")


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "kdf": "scrypt",
            "version": 19,
            "salt": "AAAAAAAAAAAAAAAAAAAAAA==",
            "time_cost": 1,
            "memory_cost_kib": 64,
            "parallelism": 1,
        },
        {
            "kdf": "argon2id",
            "version": 19,
            "salt": "not base64!",
            "time_cost": 1,
            "memory_cost_kib": 64,
            "parallelism": 1,
        },
        {
            "kdf": "argon2id",
            "version": 19,
            "salt": "AAAA",
            "time_cost": 1,
            "memory_cost_kib": 64,
            "parallelism": 1,
        },
        {
            "kdf": "argon2id",
            "version": 19,
            "salt": "AAAAAAAAAAAAAAAAAAAAAA==",
            "time_cost": "1",
            "memory_cost_kib": 64,
            "parallelism": 1,
        },
    ],
)
def test_damaged_passphrase_params(settings: dict[str, Any]) -> None:
    with pytest.raises(KeyMaterialError):
        _passphrase("x").open_kek(KekParams("passphrase", settings))


@pytest.mark.parametrize("text", ["", "{", '{"source": 1}', '{"source": "x", "settings": []}'])
def test_damaged_params_json(text: str) -> None:
    with pytest.raises(KeyMaterialError):
        KekParams.from_json(text)


def test_unlock_with_other_source_refused(tmp_path: Path) -> None:
    _, params, check = initialize_kek(_passphrase("correct horse"))
    create_key_file(tmp_path / "k")
    with pytest.raises(KeyMaterialError):
        unlock_kek(KeyFileKeySource(tmp_path / "k"), params, check)


def test_local_kek_binds_aad_and_hides_key() -> None:
    kek = LocalKek(bytes(32))
    blob = kek.wrap(b"k" * 32, b"patient:1")
    with pytest.raises(DecryptionError):
        kek.unwrap(blob, b"patient:2")
    with pytest.raises(DecryptionError):
        kek.unwrap(b"\x02" + blob[1:], b"patient:1")
    assert "00000000" not in repr(kek) and kek.key_id.startswith("local:")
    with pytest.raises(ValueError):
        LocalKek(bytes(16))


def test_key_check_wrong_kek() -> None:
    check = make_key_check(LocalKek(bytes(32)))
    verify_key_check(LocalKek(bytes(32)), check)
    with pytest.raises(KeyMaterialError):
        verify_key_check(LocalKek(b"\x01" * 32), check)
    with pytest.raises(KeyMaterialError):
        verify_key_check(LocalKek(bytes(32)), check[:-1])


# --- key file -------------------------------------------------------------------------------


def test_create_key_file_mode_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "phivault.key"
    old_umask = os.umask(0)  # even a permissive umask must not loosen the file
    try:
        create_key_file(path)
    finally:
        os.umask(old_umask)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert len(read_key_file(path)) == 32
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        create_key_file(path)
    assert path.read_bytes() == before


def test_key_file_source_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "k"
    create_key_file(path)
    kek, params, check = initialize_kek(KeyFileKeySource(path))
    assert params.source == "key-file"
    assert unlock_kek(KeyFileKeySource(path), params, check).key_id == kek.key_id
    other = tmp_path / "other"
    create_key_file(other)
    with pytest.raises(KeyMaterialError, match="does not open this data directory"):
        unlock_kek(KeyFileKeySource(other), params, check)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_key_file_loose_permissions_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeyMaterialError, match="group or others"):
        read_key_file(path)
    path.chmod(0o400)
    assert len(read_key_file(path)) == 32


@pytest.mark.parametrize(
    "encode",
    [
        lambda k: k.hex(),
        lambda k: k.hex().upper() + "\n",
        lambda k: base64.b64encode(k).decode(),
        lambda k: base64.urlsafe_b64encode(k).decode() + "\n",
    ],
)
def test_key_file_formats(tmp_path: Path, encode: Any) -> None:
    key = secrets.token_bytes(32)
    path = tmp_path / "k"
    path.write_text(encode(key))
    path.chmod(0o600)
    assert read_key_file(path) == key


@pytest.mark.parametrize(
    "text", ["", "00" * 31, "00" * 33, "zz" * 32, base64.b64encode(b"x" * 31).decode()]
)
def test_key_file_bad_content(tmp_path: Path, text: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        read_key_file(path)


def test_key_file_missing_or_not_regular(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError):
        read_key_file(tmp_path / "absent")
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyMaterialError):
        read_key_file(tmp_path / "d")


# --- registry and a third-party source ------------------------------------------------------


class ToyHsm:
    """Stands in for a remote HSM: keys never leave it; wrap returns an opaque handle."""

    def __init__(self) -> None:
        self.vault: dict[bytes, tuple[bytes, bytes]] = {}

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        handle = secrets.token_bytes(16)
        self.vault[handle] = (key, aad)
        return handle

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        entry = self.vault.get(blob)
        if entry is None or entry[1] != aad:
            raise DecryptionError()
        return entry[0]


class ToyHsmKek:
    def __init__(self, hsm: ToyHsm, label: str) -> None:
        self.hsm = hsm
        self.key_id = "toy-hsm:" + label

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        return self.hsm.wrap(key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return self.hsm.unwrap(blob, aad)


class ToyHsmSource:
    name = "toy-hsm"

    def __init__(self, hsm: ToyHsm, label: str = "default") -> None:
        self.hsm = hsm
        self.label = label

    def open_kek(self, params: KekParams | None) -> tuple[Kek, KekParams]:
        label = str(params.settings["label"]) if params else self.label
        return ToyHsmKek(self.hsm, label), params or KekParams(self.name, {"label": label})


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kek_mod, "_REGISTRY", dict(kek_mod._REGISTRY))


def test_builtins_are_registered() -> None:
    assert {"passphrase", "key-file"} <= set(key_source_names())
    source = get_key_source("passphrase")("pw", **CHEAP)
    assert source.name == "passphrase"


@pytest.mark.usefixtures("clean_registry")
def test_third_party_source_plugs_in_and_drives_a_key_ring() -> None:
    hsm = ToyHsm()
    register_key_source("toy-hsm", ToyHsmSource)
    source = get_key_source("toy-hsm")(hsm=hsm)
    kek, params, check = initialize_kek(source)
    kek = unlock_kek(get_key_source(params.source)(hsm=hsm), params, check)
    ring = KeyRing(kek, MemoryWrappedKeyStore())
    blob = ring.encrypt_body("patient:1", b"{}", b"Patient/1/1")
    assert ring.decrypt_body("patient:1", blob, b"Patient/1/1") == b"{}"
    with pytest.raises(KeyMaterialError):
        unlock_kek(source, params, b"not a handle")


@pytest.mark.usefixtures("clean_registry")
def test_registry_refuses_silent_replacement_and_unknown_names() -> None:
    with pytest.raises(ConfigError):
        register_key_source("passphrase", ToyHsmSource)
    register_key_source("passphrase", ToyHsmSource, replace=True)
    assert get_key_source("passphrase") is ToyHsmSource
    with pytest.raises(ConfigError, match="unknown key source"):
        get_key_source("no-such-source")


@pytest.mark.usefixtures("clean_registry")
def test_entry_point_sources_load_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = SimpleNamespace(name="toy-hsm", load=lambda: ToyHsmSource)
    seen: list[str] = []

    def fake_entry_points(*, group: str) -> list[SimpleNamespace]:
        seen.append(group)
        return [ep]

    monkeypatch.setattr(kek_mod, "entry_points", fake_entry_points)
    assert get_key_source("toy-hsm") is ToyHsmSource
    assert seen == ["phivault.key_sources"]
    assert "toy-hsm" in key_source_names()
