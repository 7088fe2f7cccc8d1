"""SQL of the detection tables (migration 006) and the few index reads detectors need.

Like store/access_sql.py it uses the store's own connections (its read connection, its
write transactions), so both backends and the SQLite group commit apply unchanged, and it
adds no method to the `Store` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from phivault.store.base import Store, WriteTx

ALERT_COLUMNS = (
    "alert_id",
    "detector",
    "kind",
    "severity",
    "title",
    "group_key",
    "actor",
    "patient",
    "status",
    "first_seen",
    "last_seen",
    "created",
    "updated",
    "occurrences",
    "evidence",
    "details",
    "note",
    "reviewer",
)
_CHUNK = 200
_PAGE = 2000


class DetectSql:
    """Raw rows of `detect_alerts`, `detect_state`, `detect_canaries` and index lookups."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The SQL stores share SqlReadView: `_conn` reads, `_q.render` sets the paramstyle.
        self._reader: Any = getattr(store, "_conn")  # noqa: B009
        self._render: Any = getattr(store, "_q").render  # noqa: B009

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._reader.execute(self._render(sql), tuple(params)).fetchall()]

    def execute(self, tx: WriteTx, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = getattr(tx, "_conn").execute(self._render(sql), tuple(params))  # noqa: B009
        return [tuple(r) for r in cur.fetchall()] if "RETURNING" in sql else []

    # -- alerts ------------------------------------------------------------------------------
    def alerts(self, where: str, params: Sequence[Any], limit: int) -> list[tuple[Any, ...]]:
        sql = (
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM detect_alerts WHERE {where} "
            "ORDER BY created DESC, alert_id LIMIT ?"
        )
        return self.read(sql, (*params, limit))

    def alerts_in(self, tx: WriteTx, where: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(ALERT_COLUMNS)} FROM detect_alerts WHERE {where}"
        cur = getattr(tx, "_conn").execute(self._render(sql), tuple(params))  # noqa: B009
        return [tuple(r) for r in cur.fetchall()]

    def insert_alert(self, tx: WriteTx, row: Sequence[Any]) -> None:
        marks = ", ".join("?" for _ in ALERT_COLUMNS)
        sql = f"INSERT INTO detect_alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({marks})"
        self.execute(tx, sql, row)

    def update_alert(self, tx: WriteTx, alert_id: str, **values: Any) -> None:
        sets = ", ".join(f"{c} = ?" for c in values)
        self.execute(
            tx, f"UPDATE detect_alerts SET {sets} WHERE alert_id = ?", (*values.values(), alert_id)
        )

    # -- engine state (cursor, lease, last verified tree head) --------------------------------
    def state(self, name: str) -> str | None:
        rows = self.read("SELECT value FROM detect_state WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def put_state(self, tx: WriteTx, name: str, value: str) -> None:
        self.execute(
            tx,
            "INSERT INTO detect_state (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def take_lease(self, holder: str, now: float, ttl: float) -> bool:
        """One engine per data directory: the holder of an unexpired lease scans."""
        with self.store.write() as tx:
            rows = self.execute(
                tx,
                "INSERT INTO detect_state (name, value) VALUES ('lease', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value "
                "WHERE detect_state.value LIKE ? OR CAST(substr(detect_state.value, 1, 20) AS "
                "DOUBLE PRECISION) < ? RETURNING value",
                (f"{now + ttl:020.3f}{holder}", f"%{holder}", now),
            )
        return bool(rows)

    def release_lease(self, holder: str) -> None:
        with self.store.write() as tx:
            self.execute(
                tx,
                "DELETE FROM detect_state WHERE name = 'lease' AND value LIKE ?",
                (f"%{holder}",),
            )

    # -- canaries -------------------------------------------------------------------------------
    def canaries(self) -> set[str]:
        return {str(r[0]) for r in self.read("SELECT pseudonym FROM detect_canaries", ())}

    def add_canary(self, tx: WriteTx, pseudonym: str, created: float) -> None:
        self.execute(
            tx,
            "INSERT INTO detect_canaries (pseudonym, created) VALUES (?, ?)",
            (pseudonym, created),
        )

    # -- what detectors read from the store's own tables -----------------------------------
    def patient_ids(self) -> list[str]:
        rows = self.read(
            "SELECT rid FROM resources WHERE rtype = 'Patient' AND deleted = ?", (False,)
        )
        return [str(r[0]) for r in rows]

    def patient_rows(self) -> Iterator[tuple[str, str]]:
        """(id, last updated) of every live Patient, a page at a time in id order (a
        clinic's Patients are never all held at once)."""
        after = ""
        while True:
            rows = self.read(
                "SELECT rid, last_updated FROM resources WHERE rtype = 'Patient' AND rid > ? "
                "AND deleted = ? ORDER BY rid LIMIT ?",
                (after, False, _PAGE),
            )
            for rid, updated in rows:
                yield str(rid), str(updated)
            if len(rows) < _PAGE:
                return
            after = str(rows[-1][0])

    def patient_rows_since(self, since: str) -> list[tuple[str, str]]:
        """(id, last updated) of the live Patients last updated at or after `since` (an
        instant as the store writes them), through the (rtype, last_updated) index."""
        rows = self.read(
            "SELECT rid, last_updated FROM resources WHERE rtype = 'Patient' "
            "AND last_updated >= ? AND deleted = ?",
            (since, False),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def exact_tokens(
        self, rtype: str, params: Sequence[str], rids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, str, str]]:
        """(rid, param, blind token) of the whole-value rows of string index rows: the
        exact token and the token of the normalized value. Never a value in clear.
        With `rids`, of those resources only (through the (rtype, rid) index)."""
        marks = ", ".join("?" for _ in params)
        sql = (
            f"SELECT rid, param, text, value FROM idx_string WHERE rtype = ? "
            f"AND param IN ({marks}) AND text IS NOT NULL"
        )
        for rid, param, text, value in self._rows_of(sql, (rtype, *params), rids):
            yield from string_tokens(str(rid), str(param), text, value)

    def string_holders(
        self, rtype: str, param: str, values: Sequence[str]
    ) -> Iterator[tuple[str, str, str]]:
        """(rid, param, blind token) of the whole-value rows whose `value` (the token of
        the normalized value's longest indexed prefix) is one of `values`, through the
        (rtype, param, value) index: every resource sharing a whole value with a row of
        those values has its row here, so the holders of one exact token are all found."""
        for chunk in chunks(sorted(set(values))):
            marks = ", ".join("?" for _ in chunk)
            sql = (
                "SELECT rid, param, text, value FROM idx_string WHERE rtype = ? AND param = ? "
                f"AND value IN ({marks}) AND text IS NOT NULL"
            )
            for rid, found, text, value in self.read(sql, (rtype, param, *chunk)):
                yield from string_tokens(str(rid), str(found), text, value)

    def string_values(
        self, rtype: str, params: Sequence[str]
    ) -> list[tuple[str, str, str, str | None]]:
        """(rid, param, text, value) of the whole-value rows of `params` (small types only:
        the staff's Practitioners)."""
        marks = ", ".join("?" for _ in params)
        sql = (
            f"SELECT rid, param, text, value FROM idx_string WHERE rtype = ? "
            f"AND param IN ({marks}) AND text IS NOT NULL"
        )
        return [
            (str(rid), str(param), str(text), None if value is None else str(value))
            for rid, param, text, value in self.read(sql, (rtype, *params))
        ]

    def tokens(
        self, rtype: str, params: Sequence[str], rids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, str, str]]:
        """(rid, param, token) of token index rows (blinded for identifying params).
        With `rids`, of those resources only (through the (rtype, rid) index)."""
        marks = ", ".join("?" for _ in params)
        sql = (
            f"SELECT rid, param, value FROM idx_token WHERE rtype = ? AND param IN ({marks}) "
            "AND value IS NOT NULL"
        )
        for rid, param, value in self._rows_of(sql, (rtype, *params), rids):
            yield str(rid), str(param), str(value)

    def _rows_of(
        self, sql: str, params: Sequence[Any], rids: Sequence[str] | None
    ) -> Iterator[tuple[Any, ...]]:
        if rids is None:
            yield from self.read(sql, params)
            return
        for chunk in chunks(sorted(set(rids))):
            marks = ", ".join("?" for _ in chunk)
            yield from self.read(f"{sql} AND rid IN ({marks})", (*params, *chunk))

    def security_labelled(self, codes: Sequence[str]) -> list[tuple[str, str]]:
        """(patient id, code) of Patients whose meta.security carries one of `codes`."""
        marks = ", ".join("?" for _ in codes)
        sql = (
            "SELECT rid, value FROM idx_token WHERE rtype = 'Patient' AND param = '_security' "
            f"AND value IN ({marks})"
        )
        return [(str(r[0]), str(r[1])) for r in self.read(sql, tuple(codes))]


def string_tokens(rid: str, param: str, text: Any, value: Any) -> Iterator[tuple[str, str, str]]:
    """The kinship tokens of one whole-value string row: "x:" its exact token and, for
    names, "n:" the token of its normalized form."""
    yield rid, param, "x:" + str(text)
    if value is not None and param != "address":
        # Names also match on their normalized form (case, accents); address parts only
        # exactly, so that one part counts once.
        yield rid, param, "n:" + str(value)


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
