"""Key-encryption keys (KEKs) and the sources they come from.

A KEK never encrypts data. It only wraps the data keys of the key ring, so rotating it
means rewrapping a few hundred small blobs, not re-encrypting the database. The KEK must
never be stored beside the data: it comes from a passphrase, a key file kept elsewhere,
or a KMS/HSM.

Two protocols, so that the KEK itself can live outside this process:

- `Kek`: `key_id`, `wrap(key, aad)`, `unwrap(blob, aad)`. `LocalKek` does it here with
  AES-256-GCM. A KMS or HSM implementation sends the data key to the service instead
  and never holds the KEK.
- `KeySource`: `name` and `open_kek(params) -> (Kek, KekParams)`. `params` is None
  the first time (the source picks fresh, non-secret parameters such as a salt) and is
  the stored `KekParams` afterwards. `KekParams` go into the data directory; they must
  hold nothing secret.

Sources are plug-ins. The built-in `passphrase` and `key-file` sources register through
`register_key_source` exactly as a third-party package would. A package can also declare
an entry point in the group `phivault.key_sources`, which is loaded the first time its
name is asked for. A KMS source looks like this::

    class VaultTransitKek:
        key_id = "vault-transit:phivault"
        def wrap(self, key: bytes, aad: bytes) -> bytes:
            return client.encrypt("phivault", key, context=aad)   # KEK stays in Vault
        def unwrap(self, blob: bytes, aad: bytes) -> bytes:
            try:
                return client.decrypt("phivault", blob, context=aad)
            except client.InvalidCiphertext:
                raise DecryptionError() from None                 # the one opaque error

    class VaultTransitSource:
        name = "vault-transit"
        def open_kek(self, params):
            return VaultTransitKek(), params or KekParams("vault-transit", {"key": "phivault"})

    register_key_source("vault-transit", lambda **options: VaultTransitSource(**options))

`unwrap` must raise `DecryptionError` when the blob does not open (a wrong key is then
reported by `verify_key_check` as `KeyMaterialError`); `aad` must be bound (encryption
context), or a wrapped key could be moved to another key id.

A key check value (`make_key_check`) is stored with the parameters so that a wrong
passphrase or key file is reported at startup, before anything is read or written.

Online KEK rotation hands the new KEK to servers that still hold the old one (see
crypto/keystate.py). A KEK that supports this has `transfer_kind` and `transfer_state()`:
what another process needs to rebuild it, which the rotation wraps under the old KEK. For
`LocalKek` that is the key itself; a KMS KEK would return its key reference (the process
authenticates to the KMS by itself) and register a loader for its kind with
`register_kek_loader`. A KEK without them can still be rotated with the servers stopped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from phivault.crypto import primitives
from phivault.errors import ConfigError, DecryptionError, KeyMaterialError

__all__ = [
    "DEFAULT_MEMORY_COST_KIB",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "Kek",
    "KekParams",
    "KeyFileKeySource",
    "KeySource",
    "KeySourceFactory",
    "LocalKek",
    "PassphraseKeySource",
    "create_key_file",
    "get_key_source",
    "initialize_kek",
    "kek_from_transfer",
    "kek_transfer_state",
    "key_source_names",
    "make_key_check",
    "read_key_file",
    "register_kek_loader",
    "register_key_source",
    "unlock_kek",
    "verify_key_check",
]

# Close to RFC 9106's second recommended option (t=3, 64 MiB). Lowering these makes each
# offline guess at a stolen data directory's passphrase proportionally cheaper.
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST_KIB = 64 * 1024
DEFAULT_PARALLELISM = 1
SALT_LEN = 16

WRONG_KEY_MESSAGE = "the passphrase or key file does not open this data directory"


@dataclass(frozen=True)
class KekParams:
    """Non-secret parameters of a KEK source, stored in the data directory."""

    source: str
    settings: Mapping[str, str | int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "settings": dict(self.settings)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KekParams:
        try:
            data: Any = json.loads(text)
            source = data["source"]
            settings = data.get("settings", {})
            ok = isinstance(source, str) and isinstance(settings, dict)
            ok = ok and all(
                isinstance(k, str) and isinstance(v, str | int) for k, v in settings.items()
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise KeyMaterialError("the stored key parameters are damaged")
        return cls(source, settings)


class Kek(Protocol):
    """A key-encryption key; wraps and unwraps data keys, possibly remotely."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """Raises `DecryptionError` if the blob does not open under this KEK and `aad`."""
        ...


class KeySource(Protocol):
    """Where a KEK comes from (passphrase, key file, KMS, ...)."""

    @property
    def name(self) -> str: ...

    def open_kek(self, params: KekParams | None) -> tuple[Kek, KekParams]: ...


KeySourceFactory = Callable[..., KeySource]

# --- LocalKek -------------------------------------------------------------------------------

_WRAP_V1 = b"\x01"
# Domain prefix of every wrap AAD: keeps a wrapped key from ever verifying as a body or a
# key check, even if the same 32 bytes were (wrongly) used as a data key elsewhere.
_WRAP_AAD_PREFIX = b"phivault/kek-wrap/v1\x00"


class LocalKek:
    """A KEK held in this process; wraps with AES-256-GCM."""

    __slots__ = ("_cipher", "_key", "key_id")
    transfer_kind = "local"

    def __init__(self, key: bytes) -> None:
        if len(key) != primitives.KEY_LEN:
            raise ValueError("a KEK must be 32 bytes")
        self._key = key
        self._cipher = primitives.AeadCipher(key)  # every new patient's key is wrapped
        # A short public fingerprint, to tell KEKs apart in logs and key listings. It is an
        # HMAC, not a hash of the key, so it gives no shortcut for guessing the key.
        self.key_id = "local:" + primitives.hmac_sha256(key, b"phivault/kek-id/v1")[:8].hex()

    def __repr__(self) -> str:  # never print key material
        return f"LocalKek(key_id={self.key_id!r})"

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        return _WRAP_V1 + self._cipher.encrypt(key, _WRAP_AAD_PREFIX + aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if blob[:1] != _WRAP_V1:
            raise DecryptionError()
        return self._cipher.decrypt(blob[1:], _WRAP_AAD_PREFIX + aad)

    def transfer_state(self) -> bytes:
        # The raw KEK, for an online rotation only: the caller wraps it under the old KEK
        # at once (keystate.seal_transition) and the record is deleted when the rotation
        # ends. Any other use would put the KEK beside the data.
        return self._key


# --- handing a KEK to another process (online rotation) --------------------------------------

_KEK_LOADERS: dict[str, Callable[[bytes], Kek]] = {"local": LocalKek}


def register_kek_loader(kind: str, loader: Callable[[bytes], Kek]) -> None:
    """Make KEKs of `kind` transferable: `loader(transfer_state)` rebuilds one."""
    if kind in _KEK_LOADERS:
        raise ConfigError(f"a KEK loader named {kind!r} is already registered")
    _KEK_LOADERS[kind] = loader


def kek_transfer_state(kek: Kek) -> tuple[str, bytes]:
    """(kind, state) of a KEK that can be handed to running servers during a rotation."""
    kind = getattr(kek, "transfer_kind", None)
    export = getattr(kek, "transfer_state", None)
    if not isinstance(kind, str) or kind not in _KEK_LOADERS or not callable(export):
        raise ConfigError(
            "this key source cannot be handed to running servers: "
            "stop the servers, rotate, and start them with the new key"
        )
    state = export()
    if not isinstance(state, bytes):
        raise ConfigError("the key source returned an invalid transfer state")
    return kind, state


def kek_from_transfer(kind: str, state: bytes) -> Kek:
    loader = _KEK_LOADERS.get(kind)
    key: Kek | None = None
    if loader is not None:
        try:
            key = loader(state)
        except ValueError:
            key = None
    if key is None:
        raise KeyMaterialError("the key rotation record names an unknown kind of key")
    return key


# --- key check ------------------------------------------------------------------------------

_CHECK_AAD = b"phivault/key-check/v1"
_CHECK_VALUE = b"phivault key check value, v1...."  # 32 bytes, not secret


def make_key_check(kek: Kek) -> bytes:
    """A blob stored beside `KekParams`; only the right KEK opens it."""
    return kek.wrap(_CHECK_VALUE, _CHECK_AAD)


def verify_key_check(kek: Kek, blob: bytes) -> None:
    """Raise `KeyMaterialError` unless `kek` is the KEK that made `blob`."""
    value: bytes | None
    try:
        value = kek.unwrap(blob, _CHECK_AAD)
    except DecryptionError:
        value = None
    # Raised outside the except block: the cause (a failed tag) says nothing useful and
    # must not look like data corruption in a traceback.
    if value is None or not primitives.constant_time_equal(value, _CHECK_VALUE):
        raise KeyMaterialError(WRONG_KEY_MESSAGE)


def initialize_kek(source: KeySource) -> tuple[Kek, KekParams, bytes]:
    """First use of a source: returns the KEK, the params and the key check to store."""
    kek, params = source.open_kek(None)
    return kek, params, make_key_check(kek)


def unlock_kek(source: KeySource, params: KekParams, key_check: bytes) -> Kek:
    """Reopen a KEK from stored params and prove it is the right one."""
    if params.source != source.name:
        raise KeyMaterialError(
            f"this data directory is locked with a {params.source!r} key source, "
            f"not {source.name!r}"
        )
    kek, _ = source.open_kek(params)
    verify_key_check(kek, key_check)
    return kek


# --- registry -------------------------------------------------------------------------------

ENTRY_POINT_GROUP = "phivault.key_sources"
_REGISTRY: dict[str, KeySourceFactory] = {}


def register_key_source(name: str, factory: KeySourceFactory, *, replace: bool = False) -> None:
    """Make a key source available by name. `factory(**options)` returns a `KeySource`."""
    # Refusing silent replacement keeps a plug-in from hijacking the built-in passphrase
    # source (it would see every passphrase).
    if name in _REGISTRY and not replace:
        raise ConfigError(f"a key source named {name!r} is already registered")
    _REGISTRY[name] = factory


def get_key_source(name: str) -> KeySourceFactory:
    if name not in _REGISTRY:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                register_key_source(name, ep.load())
                break
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown key source {name!r} (known: {known})") from None


def key_source_names() -> list[str]:
    return sorted(_REGISTRY)


# --- passphrase -----------------------------------------------------------------------------


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        # NFC so that the same passphrase typed on a macOS (NFD) and a Linux terminal gives
        # the same key. Changing this normalization would lock out existing installations.
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not passphrase:
        raise KeyMaterialError("the passphrase is empty")
    return passphrase


class PassphraseKeySource:
    """KEK = argon2id(passphrase, random salt) with parameters stored in the data dir."""

    name = "passphrase"

    def __init__(
        self,
        passphrase: str | bytes,
        *,
        time_cost: int = DEFAULT_TIME_COST,
        memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> None:
        self._passphrase = _passphrase_bytes(passphrase)
        self._costs = (time_cost, memory_cost_kib, parallelism)

    def __repr__(self) -> str:
        return "PassphraseKeySource(<hidden>)"

    def open_kek(self, params: KekParams | None) -> tuple[Kek, KekParams]:
        if params is None:
            time_cost, memory_cost_kib, parallelism = self._costs
            params = KekParams(
                self.name,
                {
                    "kdf": "argon2id",
                    "version": 0x13,
                    # A fresh salt per data directory: a shared salt would let one
                    # dictionary precomputation attack every clinic at once.
                    "salt": base64.b64encode(secrets.token_bytes(SALT_LEN)).decode("ascii"),
                    "time_cost": time_cost,
                    "memory_cost_kib": memory_cost_kib,
                    "parallelism": parallelism,
                },
            )
        salt, time_cost, memory_cost_kib, parallelism = self._parse(params)
        try:
            key = primitives.argon2id_kdf(
                self._passphrase, salt, time_cost, memory_cost_kib, parallelism
            )
        except ValueError:
            key = None
        if key is None:
            raise KeyMaterialError("the stored passphrase parameters are invalid")
        return LocalKek(key), params

    def _parse(self, params: KekParams) -> tuple[bytes, int, int, int]:
        s = params.settings
        try:
            if params.source != self.name or s["kdf"] != "argon2id" or s["version"] != 0x13:
                raise ValueError
            salt = base64.b64decode(str(s["salt"]), validate=True)
            costs = (s["time_cost"], s["memory_cost_kib"], s["parallelism"])
            if not all(isinstance(c, int) for c in costs):
                raise ValueError
        except (KeyError, ValueError, binascii.Error):
            raise KeyMaterialError("the stored passphrase parameters are damaged") from None
        time_cost, memory_cost_kib, parallelism = (int(c) for c in costs)
        return salt, time_cost, memory_cost_kib, parallelism


# --- key file -------------------------------------------------------------------------------

_KEY_FILE_MAX = 1024


def create_key_file(path: str | os.PathLike[str]) -> None:
    """Write a new key file (32 random bytes, hex) with mode 0600. Never overwrites."""
    try:
        # O_EXCL: overwriting an existing key file would make its data unreadable forever;
        # it also refuses to follow a planted symlink. 0o600 is applied at creation, so the
        # key is never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("refusing to overwrite an existing key file") from None
    try:
        os.write(fd, primitives.random_key().hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The 32 key bytes of a key file (hex or base64), refusing loose permissions."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyMaterialError(f"cannot open the key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # fstat of the opened file: no race with a swapped path
        if not stat.S_ISREG(info.st_mode):
            raise KeyMaterialError("the key file is not a regular file")
        # Group/other bits: any of them lets another local account read (or replace) the
        # KEK, which defeats the point of keeping it out of the data directory.
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyMaterialError(
                "the key file is accessible to group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); allow its owner only (chmod 600)"
            )
        raw = os.read(fd, _KEY_FILE_MAX + 1)
    finally:
        os.close(fd)
    return _decode_key_text(raw)


def _decode_key_text(raw: bytes) -> bytes:
    text = raw.strip()
    key: bytes | None = None
    if len(raw) <= _KEY_FILE_MAX:
        if len(text) == 2 * primitives.KEY_LEN:
            try:
                key = bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                key = None
        if key is None:
            try:
                alt = b"-_" if b"-" in text or b"_" in text else None
                key = base64.b64decode(text, altchars=alt, validate=True)
            except (binascii.Error, ValueError):
                key = None
    if key is None or len(key) != primitives.KEY_LEN:
        raise KeyMaterialError("the key file must hold exactly 32 bytes, in hex or base64")
    return key


class KeyFileKeySource:
    """KEK from a key file kept outside the data directory (USB stick, secrets mount)."""

    name = "key-file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = path

    def open_kek(self, params: KekParams | None) -> tuple[Kek, KekParams]:
        raw = read_key_file(self._path)
        # HKDF rather than the raw bytes: the file's key is then never used directly as an
        # AES key, so the same file reused for another purpose cannot collide with this one.
        kek = LocalKek(primitives.hkdf_sha256(raw, b"phivault/kek/key-file/v1"))
        return kek, params or KekParams(self.name, {"format": 1})


register_key_source(PassphraseKeySource.name, PassphraseKeySource)
register_key_source(KeyFileKeySource.name, KeyFileKeySource)
