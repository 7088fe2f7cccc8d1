"""A witness: remembers the checkpoints it has seen and refuses any that does not extend
them consistently.

Whoever controls the server (or stole its signing key) can sign any tree head. What they
cannot do is produce a consistency proof from a tree head the witness already holds to a
rewritten history: so a rollback (smaller tree), a fork (another root at a size already
seen) or a rewrite (no valid consistency proof) raises `WitnessAlarm`, even when every
signature is good. The state file is only ever advanced to a checkpoint that verified.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from phivault.audit.checkpoint import (
    Checkpoint,
    decode_public_key,
    parse_checkpoint,
    verify_checkpoint,
)
from phivault.audit.proofs import verify_consistency
from phivault.audit.reader import LogReader
from phivault.errors import (
    CheckpointError,
    ConfigError,
    ProofError,
    StoreError,
    WitnessAlarm,
)
from phivault.store.base import ReadView

STATE_FORMAT = 1
MAX_SEEN = 1000
HTTP_TIMEOUT_S = 10.0


class LogSource(Protocol):
    def latest_checkpoint(self) -> bytes | None: ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    def public_key(self) -> bytes | None:
        """The key the log says it signs with (only trusted on first use)."""
        ...


class StoreSource:
    """The log of a data directory, read from its store."""

    def __init__(self, view: ReadView, public_key: bytes | None = None) -> None:
        self._reader = LogReader(view)
        self._public_key = public_key

    def latest_checkpoint(self) -> bytes | None:
        return self._reader.latest_checkpoint()

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._reader.consistency_nodes(first, second)

    def public_key(self) -> bytes | None:
        return self._public_key


class HttpSource:
    """The log of a running server, through its /audit/ endpoints."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("the witness URL must be http(s)://host[:port]")
        self._base = base_url.rstrip("/")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(  # noqa: S310 (scheme checked above)
                self._base + path, timeout=HTTP_TIMEOUT_S
            ) as response:
                body: bytes = response.read(1 << 20)
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise StoreError("the audit log server refused the request") from None
        except (urllib.error.URLError, OSError):
            raise StoreError("cannot reach the audit log server") from None

    def _json(self, path: str) -> Any:
        body = self._get(path)
        if body is None:
            raise StoreError("the audit log server does not answer this request")
        try:
            return json.loads(body)
        except ValueError:
            raise StoreError("the audit log server answered with invalid JSON") from None

    def latest_checkpoint(self) -> bytes | None:
        return self._get("/audit/checkpoint")

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        data = self._json(f"/audit/proof/consistency?first={first}&second={second}")
        try:
            return [base64.b64decode(n, validate=True) for n in data["proof"]]
        except (KeyError, TypeError, ValueError):
            raise ProofError("the consistency proof is malformed") from None

    def public_key(self) -> bytes | None:
        data = self._json("/audit/public-key")
        try:
            return decode_public_key(str(data["public_key"]))
        except (KeyError, TypeError):
            raise CheckpointError("the published public key is malformed") from None


@dataclass(slots=True)
class WitnessState:
    public_key: bytes | None = None
    seen: list[bytes] = field(default_factory=list)  # checkpoint blobs, oldest first

    @property
    def latest(self) -> Checkpoint | None:
        return parse_checkpoint(self.seen[-1])[0] if self.seen else None


def load_state(path: Path) -> WitnessState:
    if not path.exists():
        return WitnessState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != STATE_FORMAT:
            raise ValueError
        key = data.get("public_key")
        return WitnessState(
            public_key=decode_public_key(key) if key else None,
            seen=[str(blob).encode("utf-8") for blob in data["seen"]],
        )
    except (ValueError, KeyError, TypeError, AttributeError, CheckpointError):
        raise ConfigError("the witness state file is damaged") from None


def save_state(path: Path, state: WitnessState) -> None:
    content = json.dumps(
        {
            "format": STATE_FORMAT,
            "public_key": base64.b64encode(state.public_key).decode() if state.public_key else None,
            # Kept byte for byte: a checkpoint is only valid as the exact bytes signed.
            "seen": [blob.decode("utf-8") for blob in state.seen[-MAX_SEEN:]],
        },
        indent=1,
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class WitnessResult:
    status: str  # "first", "unchanged", "extended" or "empty" (no checkpoint yet)
    checkpoint: Checkpoint | None
    previous: Checkpoint | None
    pinned_now: bool  # the public key was pinned on this run (trust on first use)


def check_extension(old: Checkpoint, new: Checkpoint, source: LogSource) -> str:
    """ "unchanged" or "extended" if `new` consistently extends `old`; WitnessAlarm else."""
    if new.size < old.size:
        raise WitnessAlarm(
            f"rollback: the log shrank from {old.size} to {new.size} entries since last seen"
        )
    if new.size == old.size:
        if new.root != old.root:
            raise WitnessAlarm(f"fork: another tree with the same size ({new.size}) was signed")
        return "unchanged"
    try:
        proof = source.consistency_proof(old.size, new.size)
        verify_consistency(old.size, new.size, proof, old.root, new.root)
    except (ProofError, StoreError) as exc:
        raise WitnessAlarm(
            f"the tree of {new.size} entries is not a consistent extension of the one of "
            f"{old.size} entries seen before: history was rewritten"
        ) from exc
    return "extended"


def witness(source: LogSource, state_path: Path, public_key: bytes | None = None) -> WitnessResult:
    """Fetch the latest checkpoint, check it against the state file, then record it."""
    state = load_state(state_path)
    pinned_now = False
    if state.public_key is None:
        key = public_key or source.public_key()
        if key is None:
            raise ConfigError(
                "no public key to pin: pass --public-key (from `phivault audit public-key`)"
            )
        state.public_key, pinned_now = key, True
    elif public_key is not None and public_key != state.public_key:
        raise WitnessAlarm("the given public key is not the one this witness pinned")
    blob = source.latest_checkpoint()
    if blob is None:
        if state.seen:
            raise WitnessAlarm("rollback: the log has no checkpoint any more")
        save_state(state_path, state)
        return WitnessResult("empty", None, None, pinned_now)
    try:
        new = verify_checkpoint(state.public_key, blob)
    except CheckpointError:
        raise WitnessAlarm(
            "the latest checkpoint is not signed by the pinned key (or is malformed)"
        ) from None
    old = state.latest
    status = "first" if old is None else check_extension(old, new, source)
    if status != "unchanged":
        state.seen.append(new.blob)
    save_state(state_path, state)
    return WitnessResult(status, new, old, pinned_now)
