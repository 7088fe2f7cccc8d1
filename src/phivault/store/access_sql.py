"""Storage of identities and sessions (tables `access_*`, migration 005) and the access
cache epochs (`access_epochs`, migration 007: bumped by triggers, read here).

Uses the store's own connections (its read view and its write transactions), so both
backends and the SQLite group commit apply unchanged; it adds no method to the `Store`
protocol. Rows are plain records: what they mean (hashes, sealed secrets, policy) is the
access layer's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from phivault.store.base import ReadAhead, Store
from phivault.store.sql import VERSION_COLUMNS, row_to_version
from phivault.store.sqlite import SqliteStore

_EPOCHS = (
    "SELECT (SELECT value FROM access_epochs WHERE name = 'care'), "
    "(SELECT value FROM access_epochs WHERE name = 'auth')"
)


# The epochs, the current version of one resource and the wrapped row of its data key, in
# one statement: the round trip a read by id on PostgreSQL costs besides its audit entry.
# The key id is key_id_for's (crypto/codec.py) for the stored compartment, plus the row
# suffix of the current generation; it is only a hint: the key ring takes the row only if
# it is the very row that opens the body, and reads the key itself otherwise.
_READ_AHEAD = (
    f"SELECT e.care, e.auth, {', '.join('c.' + c.strip() for c in VERSION_COLUMNS.split(','))}, "
    "k.key_id, k.blob FROM (SELECT (SELECT value FROM access_epochs WHERE name = 'care') AS care, "
    "(SELECT value FROM access_epochs WHERE name = 'auth') AS auth) e "
    "LEFT JOIN (SELECT v.* FROM resources r JOIN versions v ON v.seq = r.seq "
    "WHERE r.rtype = ? AND r.rid = ?) c ON TRUE "
    "LEFT JOIN wrapped_keys k ON k.key_id = (CASE WHEN substr(c.compartment, 1, 8) = 'Patient/' "
    "THEN 'patient:' || substr(c.compartment, 9) ELSE 'system' END) || ?"
)


def _epoch(value: Any) -> int:
    return -1 if value is None else int(value)


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    roles: str
    practitioner: str | None
    password_hash: str
    totp_secret: bytes | None
    totp_last_step: int
    mfa_required: int
    recovery_codes: str
    disabled: int
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    name: str
    kind: str
    redirect_uris: str
    scope: str
    jwks: str | None
    disabled: int
    created: float


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    user_id: str
    client_id: str | None
    scope: str
    patient: str | None
    created: float
    last_seen: float
    expires: float
    idle_timeout: float
    revoked: int
    break_glass_until: float | None
    break_glass_reason: str | None


@dataclass(frozen=True, slots=True)
class RefreshRow:
    token_hash: str
    session_id: str
    scope: str
    expires: float
    used: int


@dataclass(frozen=True, slots=True)
class CodeRow:
    code_hash: str
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    patient: str | None
    code_challenge: str
    expires: float
    used: int


@dataclass(frozen=True, slots=True)
class ThrottleRow:
    throttle_key: str
    failures: int
    last_failure: float
    locked_until: float


_TABLES: dict[type, tuple[str, str]] = {
    UserRow: ("access_users", "user_id"),
    ClientRow: ("access_clients", "client_id"),
    SessionRow: ("access_sessions", "session_id"),
    RefreshRow: ("access_refresh_tokens", "token_hash"),
    CodeRow: ("access_auth_codes", "code_hash"),
    ThrottleRow: ("access_throttle", "throttle_key"),
}


def _columns(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


def _make(row_type: type[Any], row: Sequence[Any]) -> Any:
    values = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    return row_type(*values)


class AccessStore:
    """The `access_*` tables over a phivault store (SQLite or PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # The SQL stores share SqlReadView: `_conn` reads, `_q.render` sets the paramstyle.
        self._reader: Any = getattr(store, "_conn")  # noqa: B009
        self._render: Any = getattr(store, "_q").render  # noqa: B009
        self._epochs_sql: str = self._render(_EPOCHS)
        self._read_ahead_sql: str = self._render(_READ_AHEAD)

    # -- generic ------------------------------------------------------------------------------
    def _select(self, row_type: type[Any], where: str, params: Sequence[Any]) -> list[Any]:
        table, key = _TABLES[row_type]
        sql = f"SELECT {', '.join(_columns(row_type))} FROM {table} WHERE {where} ORDER BY {key}"
        rows = self._reader.execute(self._render(sql), tuple(params)).fetchall()
        return [_make(row_type, r) for r in rows]

    def _get(self, row_type: type[Any], key_value: str) -> Any:
        _, key = _TABLES[row_type]
        found = self._select(row_type, f"{key} = ?", (key_value,))
        return found[0] if found else None

    def _write(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._store.write() as tx:
            cur = getattr(tx, "_conn").execute(self._render(sql), tuple(params))  # noqa: B009
            return list(cur.fetchall()) if "RETURNING" in sql else []

    def _insert(self, row: Any, *, upsert: bool = False) -> None:
        table, key = _TABLES[type(row)]
        cols = _columns(type(row))
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        if upsert:
            sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
            sql += f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
        self._write(sql, astuple(row))

    def _update(self, row_type: type, key_value: str, **values: Any) -> bool:
        table, key = _TABLES[row_type]
        sets = ", ".join(f"{c} = ?" for c in values)
        sql = f"UPDATE {table} SET {sets} WHERE {key} = ? RETURNING {key}"
        return bool(self._write(sql, (*values.values(), key_value)))

    # -- users ---------------------------------------------------------------------------------
    def user(self, user_id: str) -> UserRow | None:
        found: UserRow | None = self._get(UserRow, user_id)
        return found

    def user_by_name(self, username: str) -> UserRow | None:
        found = self._select(UserRow, "username = ?", (username,))
        return found[0] if found else None

    def users(self) -> list[UserRow]:
        return self._select(UserRow, "1 = 1", ())

    def add_user(self, row: UserRow) -> None:
        self._insert(row)

    def update_user(self, user_id: str, **values: Any) -> bool:
        return self._update(UserRow, user_id, **values)

    def claim_totp_step(self, user_id: str, step: int) -> bool:
        """Record `step` as used; False if it (or a later one) was used already (replay)."""
        sql = (
            "UPDATE access_users SET totp_last_step = ? "
            "WHERE user_id = ? AND totp_last_step < ? RETURNING user_id"
        )
        return bool(self._write(sql, (step, user_id, step)))

    # -- clients -------------------------------------------------------------------------------
    def client(self, client_id: str) -> ClientRow | None:
        found: ClientRow | None = self._get(ClientRow, client_id)
        return found

    def client_by_name(self, name: str) -> ClientRow | None:
        found = self._select(ClientRow, "name = ?", (name,))
        return found[0] if found else None

    def clients(self) -> list[ClientRow]:
        return self._select(ClientRow, "1 = 1", ())

    def put_client(self, row: ClientRow) -> None:
        self._insert(row, upsert=True)

    # -- sessions ------------------------------------------------------------------------------
    def session(self, session_id: str) -> SessionRow | None:
        found: SessionRow | None = self._get(SessionRow, session_id)
        return found

    def add_session(self, row: SessionRow) -> None:
        self._insert(row)

    def update_session(self, session_id: str, **values: Any) -> bool:
        return self._update(SessionRow, session_id, **values)

    def revoke_user_sessions(self, user_id: str) -> int:
        sql = (
            "UPDATE access_sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0 "
            "RETURNING session_id"
        )
        return len(self._write(sql, (user_id,)))

    # -- refresh tokens and authorization codes ------------------------------------------------
    def add_refresh(self, row: RefreshRow) -> None:
        self._insert(row)

    def use_refresh(self, token_hash: str) -> tuple[RefreshRow | None, bool]:
        """(the token, whether this call consumed it). Consuming is atomic: of two
        concurrent uses of one refresh token exactly one wins."""
        row: RefreshRow | None = self._get(RefreshRow, token_hash)
        if row is None:
            return None, False
        sql = (
            "UPDATE access_refresh_tokens SET used = 1 WHERE token_hash = ? AND used = 0 "
            "RETURNING token_hash"
        )
        return row, bool(self._write(sql, (token_hash,)))

    def add_code(self, row: CodeRow) -> None:
        self._insert(row)

    def use_code(self, code_hash: str) -> tuple[CodeRow | None, bool]:
        row: CodeRow | None = self._get(CodeRow, code_hash)
        if row is None:
            return None, False
        sql = (
            "UPDATE access_auth_codes SET used = 1 WHERE code_hash = ? AND used = 0 "
            "RETURNING code_hash"
        )
        return row, bool(self._write(sql, (code_hash,)))

    # -- throttling and replay -----------------------------------------------------------------
    def throttle(self, key: str) -> ThrottleRow | None:
        found: ThrottleRow | None = self._get(ThrottleRow, key)
        return found

    def put_throttle(self, row: ThrottleRow) -> None:
        self._insert(row, upsert=True)

    def clear_throttle(self, key: str) -> None:
        self._write("DELETE FROM access_throttle WHERE throttle_key = ?", (key,))

    def remember_jti(self, jti: str, expires: float, now: float) -> bool:
        """False if `jti` was seen before (a replayed client assertion)."""
        self._write("DELETE FROM access_seen_jti WHERE expires < ?", (now,))
        sql = (
            "INSERT INTO access_seen_jti (jti, expires) VALUES (?, ?) "
            "ON CONFLICT (jti) DO NOTHING RETURNING jti"
        )
        return bool(self._write(sql, (jti, expires)))

    # -- cache epochs ----------------------------------------------------------------------------
    def epochs(self) -> dict[str, int]:
        """{"care": n, "auth": m}: counters that triggers bump in every transaction that
        changes a care relationship or consent ("care") or who a token stands for ("auth").
        One statement reading both rows of a two-row table by primary key."""
        care, auth = self._reader.execute(self._epochs_sql, ()).fetchone()
        return {"care": _epoch(care), "auth": _epoch(auth)}

    def read_ahead(self, rtype: str, rid: str, key_suffix: str | None) -> ReadAhead:
        """The epochs (as `epochs`), the current version of rtype/rid and, unless
        `key_suffix` is None, the wrapped row of its data key (`_READ_AHEAD`): one
        statement, where a read by id took three."""
        row = self._reader.execute(self._read_ahead_sql, (rtype, rid, key_suffix or "")).fetchone()
        epochs = {"care": _epoch(row[0]), "auth": _epoch(row[1])}
        record = row_to_version(row[2:11]) if row[2] is not None else None
        wrapped: dict[str, bytes] = {}
        if record is not None and key_suffix is not None and row[11] is not None:
            wrapped[str(row[11])] = bytes(row[12])
        return ReadAhead(rtype, rid, epochs, record, wrapped)

    @property
    def local_reads(self) -> bool:
        """Whether a read is an in-process file read (SQLite), cheap enough to make on the
        event loop; PostgreSQL reads are network round trips and belong in a worker thread."""
        return isinstance(self._store, SqliteStore)

    def purge_expired(self, now: float) -> None:
        self._write("DELETE FROM access_auth_codes WHERE expires < ?", (now,))
        self._write("DELETE FROM access_refresh_tokens WHERE expires < ?", (now,))
